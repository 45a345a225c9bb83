// Command faults drives the SDK's three kinds of call through the faults a
// worker or an object store can show, against the in-process fake worker,
// and prints the fault matrix of the README: for each fault and each kind
// of call (a GET, a billed POST that starts a build, a download), the
// outcome the caller gets, how many requests reached the server, and how
// long the call took to return.
//
// Run it with: go run ./bench/faults
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

const user = "7d1f7e52-5b0e-4c7a-9a59-2f2d0f0a6b11"

// fault is one row: what the server does on the route under test.
type fault struct {
	name  string
	fault sheentest.Fault
}

var faults = []fault{
	{"500", sheentest.Fault{Status: 500, Body: `{"error":"boom"}`}},
	{"502 (gateway page)", sheentest.Fault{Status: 502, Body: "<html>Bad Gateway</html>"}},
	{"503", sheentest.Fault{Status: 503, Body: "<html>Service Unavailable</html>"}},
	{"504", sheentest.Fault{Status: 504, Body: "<html>Gateway Timeout</html>"}},
	{"429, Retry-After 1", sheentest.Fault{Calls: []int{1}, Status: 429, Body: `{"error":"Rate limit exceeded"}`, Header: http.Header{"Retry-After": {"1"}}}},
	{"reset before headers", sheentest.Fault{ResetBeforeResponse: true}},
	{"reset mid-body", sheentest.Fault{ResetAfterBytes: 16}},
	{"body cut short", sheentest.Fault{TruncateAfterBytes: 16}},
	{"hung (no answer)", sheentest.Fault{Delay: time.Hour}},
	{"HTML 200", sheentest.Fault{Status: 200, Body: "<html>maintenance</html>", Header: http.Header{"Content-Type": {"text/html"}}}},
}

// kind is one column: a kind of call and the route its faults go on.
type kind struct {
	name  string
	route string
	run   func(ctx context.Context, c *sheen.WorkerClient, srv *sheentest.Server) error
}

var kinds = []kind{
	{"GET (Balance)", sheen.RouteBalance, func(ctx context.Context, c *sheen.WorkerClient, _ *sheentest.Server) error {
		_, err := c.Billing.Balance(ctx, user)
		return err
	}},
	{"billed POST (CreatePreview)", sheen.RouteCreatePreview, func(ctx context.Context, c *sheen.WorkerClient, _ *sheentest.Server) error {
		_, err := c.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: user, Prompt: "A bakery site"})
		return err
	}},
	{"download", sheentest.RouteStore, download},
}

func main() {
	log.SetFlags(0)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "fault\tcall\toutcome\trequests\ttook")
	for _, f := range faults {
		for _, k := range kinds {
			outcome, requests, took := measure(f, k)
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", f.name, k.name, outcome, requests, took.Round(10*time.Millisecond))
		}
	}
	w.Flush()
	fmt.Println("\nClient: 4 attempts, backoff from 50 ms, attempt timeout 500 ms; downloads: 5 retries without progress, backoff from 50 ms, stall timeout 500 ms.")
}

// measure runs one kind of call against a fresh fake worker with one fault.
func measure(f fault, k kind) (outcome string, requests int, took time.Duration) {
	srv := sheentest.NewServer(sheentest.WithUser(user, time.Hour))
	defer srv.Close()
	c, err := srv.Client(sheen.WithRetry(sheen.RetryConfig{BackoffBase: 50 * time.Millisecond}), sheen.WithRetry(sheen.RetryConfig{AttemptTimeout: 500 * time.Millisecond}),
		sheen.WithDownloadBackoff(50*time.Millisecond, time.Second))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rule := f.fault
	rule.Route = k.route
	srv.AddFault(rule)
	start := time.Now()
	err = k.run(ctx, c, srv)
	took = time.Since(start)
	return describe(err), srv.Calls(k.route), took
}

// describe names an outcome the way a caller branches on it.
func describe(err error) string {
	if err == nil {
		return "success"
	}
	var parts []string
	var (
		ou *sheen.OutcomeUnknownError
		ae *sheen.APIError
		re *sheen.ResponseError
		de *sheen.DownloadError
		te *sheen.AttemptTimeoutError
	)
	switch {
	case errors.As(err, &ou):
		parts = append(parts, "*OutcomeUnknownError")
	case errors.As(err, &de):
		parts = append(parts, "*DownloadError")
	}
	switch {
	case errors.As(err, &te):
		parts = append(parts, "*AttemptTimeoutError")
	case errors.As(err, &re):
		parts = append(parts, "*ResponseError")
	case errors.As(err, &ae):
		parts = append(parts, fmt.Sprintf("*APIError %d", ae.StatusCode))
	}
	if len(parts) == 0 {
		parts = append(parts, "network error")
	}
	return strings.Join(parts, " > ")
}
