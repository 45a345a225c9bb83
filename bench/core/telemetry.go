package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	sheen "github.com/sheenapps/sheen-go"
)

// telemetryCost measures what OpenTelemetry costs a Do call, in the same
// run: a client with telemetry off (the global providers, none installed:
// a program that never sets up OpenTelemetry) against the same client given
// the API's no-op providers explicitly, and given the SDK recording every
// span and metric in memory. Over loopback (the request path as a service
// sees it) and over a transport that answers from memory (the SDK's own
// work alone). Rounds alternate the clients; the median ratio is reported.
func telemetryCost(rounds int) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"balance":{"welcomeBonus":3000,"dailyGift":900,"paid":0,"total":3900}}`)
	}))
	defer srv.Close()
	sdkTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
	defer sdkTP.Shutdown(context.Background())
	sdkMP := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer sdkMP.Shutdown(context.Background())
	variants := []struct {
		name string
		opts []sheen.Option
	}{
		{"telemetry off (no provider installed)", nil},
		{"no-op providers given", []sheen.Option{sheen.WithTelemetry(sheen.TelemetryConfig{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider()})}},
		{"SDK recording in memory", []sheen.Option{sheen.WithTelemetry(sheen.TelemetryConfig{TracerProvider: sdkTP, MeterProvider: sdkMP})}},
	}
	fmt.Println("1b. OpenTelemetry's cost per Do call, against the same client with telemetry off (same run)")
	for _, where := range []struct {
		name string
		opts []sheen.Option
	}{
		{"loopback", []sheen.Option{sheen.WithBaseURL(srv.URL)}},
		{"in memory", []sheen.Option{sheen.WithBaseURL("https://worker.invalid"), sheen.WithHTTPClient(&http.Client{Transport: cannedTransport{}})}},
	} {
		bench := make([]func(*testing.B), len(variants))
		for i, v := range variants {
			bench[i] = doBench(append(append([]sheen.Option{sheen.WithSecret(secret), sheen.WithRateLimit(1_000_000_000)}, where.opts...), v.opts...))
		}
		ratios := make([][]float64, len(variants))
		last := make([]testing.BenchmarkResult, len(variants))
		for range rounds {
			for i := range variants {
				last[i] = testing.Benchmark(bench[i])
			}
			for i := range variants {
				ratios[i] = append(ratios[i], float64(last[i].NsPerOp())/float64(last[0].NsPerOp()))
			}
		}
		for i, v := range variants {
			sort.Float64s(ratios[i])
			fmt.Printf("   %-9s %-38s %7d ns/op %4d allocs/op   time vs off: median %.3f", where.name, v.name, last[i].NsPerOp(), last[i].AllocsPerOp(), ratios[i][len(ratios[i])/2])
			if i == 1 {
				fmt.Printf(" (goal <= 1.02; %+d allocs, goal <= +2)", last[i].AllocsPerOp()-last[0].AllocsPerOp())
			}
			fmt.Println()
		}
	}
}

// doBench benchmarks Do on a client made with opts.
func doBench(opts []sheen.Option) func(*testing.B) {
	client, err := sheen.NewWorkerClient(opts...)
	if err != nil {
		log.Fatal(err)
	}
	return func(b *testing.B) {
		b.ReportAllocs()
		ctx := context.Background()
		var out struct {
			Balance struct{ Total int } `json:"balance"`
		}
		for b.Loop() {
			if err := client.Do(ctx, "GET", "/v1/billing/balance/u1", nil, &out); err != nil {
				b.Fatal(err)
			}
		}
	}
}
