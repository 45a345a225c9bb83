// Command otel runs the quickstart's flow with OpenTelemetry installed, so
// you see what the SDK records: a span per call to the worker with a child
// per attempt (the rate limiter's wait, 429 and 503 answers, the retry
// reason and backoff), the balance served from the cache, the build
// followed phase by phase, the download that broke and resumed, the 402.
//
//	go run ./examples/otel
//
// needs no environment: it starts the in-process fake worker (sheentest)
// and tells it to misbehave once on purpose (a 429, then a 503 on the
// balance; a connection dropped mid-download). Spans go to the stdout
// exporter, as JSON lines (-json=false leaves them out); the same spans
// are then drawn as a tree, followed by the metrics the run recorded.
//
// The SDK itself imports only the OpenTelemetry API: install any tracer
// and meter provider (here the SDK's, as the global ones) and every
// WorkerClient records into it, or give one with sheen.WithTelemetry.
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

func main() {
	jsonOut := flag.Bool("json", true, "print the spans as the stdout exporter writes them")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout, *jsonOut); err != nil {
		fmt.Fprintln(os.Stderr, "otel:", err)
		cancel()
		os.Exit(1)
	}
}

// user is the fake worker's user the flow acts for.
const user = "7d1f7e52-5b0e-4c7a-9a59-2f2d0f0a6b11"

func run(ctx context.Context, out io.Writer, jsonOut bool) error {
	tel, err := setup(out, jsonOut)
	if err != nil {
		return err
	}
	fake := sheentest.NewServer(sheentest.WithSigning(sheen.SigningDual), sheentest.WithUser(user, time.Hour),
		sheentest.WithBuildPace(sheentest.PaceTimed, 50*time.Millisecond), sheentest.WithArtifactPadding(256<<10))
	defer fake.Close()
	misbehave(fake)
	fmt.Fprintf(out, "Started the fake worker at %s; it answers the first balance request 429 and the second 503,\n"+
		"and drops the first download after 64 KiB.\n\n", fake.URL)
	// The client records into the global providers installed by setup.
	client, err := fake.Client()
	if err != nil {
		return err
	}
	tracer := otel.Tracer("examples/otel")
	flowCtx, root := tracer.Start(ctx, "quickstart")
	err = flow(flowCtx, client, fake)
	root.End()
	if err != nil {
		return err
	}
	if err := tel.tp.Shutdown(ctx); err != nil { // flushes the exporter
		return err
	}
	fmt.Fprintln(out, "\nThe trace as a tree:")
	tel.spans.printTree(out)
	fmt.Fprintln(out, "\nMetrics:")
	return printMetrics(ctx, out, tel.reader)
}

// telemetry is what setup installed.
type telemetry struct {
	tp     *sdktrace.TracerProvider
	spans  *collector
	reader *sdkmetric.ManualReader
}

// setup installs the SDK as the global tracer and meter providers: spans
// go to the stdout exporter (when jsonOut) and to a collector that draws
// the tree; metrics to a reader printed at the end.
func setup(out io.Writer, jsonOut bool) (*telemetry, error) {
	w := io.Discard
	if jsonOut {
		fmt.Fprintln(out, "Spans, as the stdout exporter writes them, one JSON object each:")
		w = out
	}
	exp, err := stdouttrace.New(stdouttrace.WithWriter(w))
	if err != nil {
		return nil, err
	}
	tel := &telemetry{spans: &collector{}, reader: sdkmetric.NewManualReader()}
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSpanProcessor(tel.spans))
	otel.SetTracerProvider(tel.tp)
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader)))
	return tel, nil
}

// misbehave tells the fake worker what to get wrong, once each.
func misbehave(fake *sheentest.Server) {
	json := http.Header{"Content-Type": {"application/json"}}
	fake.AddFault(sheentest.Fault{Route: sheen.RouteBalance, Calls: []int{1}, Status: http.StatusTooManyRequests,
		Header: http.Header{"Retry-After": {"0.2"}, "Content-Type": {"application/json"}}, Body: `{"error":"Too many requests","code":"RATE_LIMITED"}`})
	fake.AddFault(sheentest.Fault{Route: sheen.RouteBalance, Calls: []int{2}, Status: http.StatusServiceUnavailable,
		Header: json, Body: `{"error":"Service unavailable","code":"SERVICE_UNAVAILABLE"}`})
	fake.AddFault(sheentest.Fault{Route: sheentest.RouteStore, Calls: []int{1}, ResetAfterBytes: 64 << 10})
}

// flow is the quickstart's flow: balance (twice: the second from the
// cache), an affordability check, a build followed to its end, an export
// downloaded, and a build refused for want of AI time.
func flow(ctx context.Context, client *sheen.WorkerClient, fake *sheentest.Server) error {
	for range 2 {
		if _, err := client.Billing.Balance(ctx, user); err != nil {
			return fmt.Errorf("balance: %w", err)
		}
	}
	if _, err := client.Billing.CheckSufficient(ctx, sheen.CheckSufficientRequest{
		UserID: user, OperationType: sheen.OperationMainBuild, ProjectSize: sheen.EstimateProjectSize(3),
	}); err != nil {
		return fmt.Errorf("check: %w", err)
	}
	b, err := client.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: user, Prompt: "A landing page for a bakery"})
	if err != nil {
		return fmt.Errorf("create build: %w", err)
	}
	if _, err := client.Builds.Wait(ctx, b.ID, user, &sheen.FollowOptions{MetadataWait: -1}); err != nil {
		return fmt.Errorf("follow build: %w", err)
	}
	link, err := client.Exports.ProjectLink(ctx, b.ProjectID, user)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if _, err := client.Exports.Download(ctx, link, sha256.New(), nil); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	const poor = "0b6f3a10-0000-4000-8000-000000000001"
	fake.SetBalance(poor, 30*time.Second)
	_, err = client.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: poor, Prompt: "A portfolio site"})
	if !errors.Is(err, sheen.ErrInsufficientBalance) {
		return fmt.Errorf("expected an insufficient balance, got %v", err)
	}
	return nil
}
