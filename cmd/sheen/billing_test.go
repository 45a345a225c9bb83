package main

import (
	"net/http"
	"testing"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

func TestBalance(t *testing.T) {
	_, c := worker(t, sheentest.WithUser("u-paid", 10*time.Minute))
	r := c.run(t, "balance", "u-paid")
	wantCode(t, r, exitOK)
	wantIn(t, "balance", r.stdout, "u-paid has 10m0s of AI time (10m0s paid, 0s bonus)", "SOURCE", "paid", "10m0s")

	r = c.run(t, "--json", "balance", "u-paid")
	wantCode(t, r, exitOK)
	doc := decode[jsonBalance](t, r)
	if doc.UserID != "u-paid" || doc.TotalSeconds != 600 || doc.PaidSeconds != 600 {
		t.Errorf("balance document: %+v", doc)
	}
	// sheentest's worker sends three buckets: welcome, daily, paid.
	if n := len(doc.Buckets); n != 3 || doc.Buckets[2] != (jsonBucket{Source: "paid", RemainingSeconds: 600}) {
		t.Errorf("balance document's buckets: %+v; want 3, the last 600 s paid", doc.Buckets)
	}
}

func TestCheck(t *testing.T) {
	_, c := worker(t, sheentest.WithUser("poor", 30*time.Second), sheentest.WithUser("rich", 2*time.Hour))

	r := c.run(t, "check", "rich", "--op", "update", "--size", "medium")
	wantCode(t, r, exitOK)
	wantIn(t, "affordable check", r.stdout, "rich can afford update (medium)", "has 2h0m0s")
	doc := decode[jsonCheck](t, c.run(t, "check", "rich", "--json"))
	if !doc.Sufficient || doc.Operation != "main_build" || doc.Size != "small" {
		t.Errorf("affordable check document: %+v", doc)
	}

	// Not affordable is an answer with its own exit code, for scripts.
	r = c.run(t, "check", "poor")
	wantCode(t, r, exitInsufficient)
	wantIn(t, "short check", r.stdout, "poor cannot afford main_build (small): has 30s", "suggestion: package mini (+1h0m0s)", "suggestion: upgrade to the starter plan")
	if r.stderr != "" {
		t.Errorf("a short balance is an answer, not an error; stderr: %s", r.stderr)
	}
	r = c.run(t, "check", "poor", "--json")
	wantCode(t, r, exitInsufficient)
	doc = decode[jsonCheck](t, r)
	if doc.Sufficient || doc.AvailableSeconds == nil || *doc.AvailableSeconds != 30 || len(doc.Suggestions) != 2 {
		t.Errorf("short check document: %+v", doc)
	}

	r = c.run(t, "check", "rich", "--op", "deploy")
	wantCode(t, r, exitUsage)
	wantIn(t, "bad --op", r.stderr, "--op must be main_build, metadata_generation, update")
}

func TestUsageAndHistory(t *testing.T) {
	srv, c := worker(t)
	b, _ := deployed(t, srv, "u1")

	r := c.run(t, "usage", "u1", "--period", "day")
	wantCode(t, r, exitOK)
	wantIn(t, "usage", r.stdout, "u1 used 2m0s of AI time over the last day", "build", "2m0s")
	u := decode[jsonUsage](t, c.run(t, "--json", "usage", "u1"))
	if u.TotalSecs != 120 || u.ByOperation["build"] != 120 || len(u.Daily) != 1 {
		t.Errorf("usage document: %+v", u)
	}
	wantCode(t, c.run(t, "usage", "u1", "--period", "year"), exitUsage)

	r = c.run(t, "history", "u1")
	wantCode(t, r, exitOK)
	wantIn(t, "history", r.stdout, "WHEN", "consumption", "2m0s", "build "+b.ID)
	h := decode[struct {
		UserID string             `json:"userId"`
		Events []jsonBillingEvent `json:"events"`
	}](t, c.run(t, "history", "u1", "--json", "--limit", "5"))
	if h.UserID != "u1" || len(h.Events) != 1 || h.Events[0].Seconds != 120 || h.Events[0].Reason != "build "+b.ID {
		t.Errorf("history document: %+v", h)
	}
	wantCode(t, c.run(t, "history", "u1", "--limit", "500"), exitUsage)
}

// A build the balance does not cover says the balance, the need and what
// would cover it, and exits 4.
func TestInsufficientBalance(t *testing.T) {
	srv, c := worker(t, sheentest.WithUser("poor", 30*time.Second))
	r := c.run(t, "build", "poor", "--prompt", "A portfolio")
	wantCode(t, r, exitInsufficient)
	wantIn(t, "402", r.stderr,
		"not enough AI time: the balance is 30s, the operation needs 2m0s (short 1m30s)",
		"402 insufficient_ai_time", "suggestion: package mini (+1h0m0s)", "suggestion: upgrade to the starter plan")
	if r.stdout != "" {
		t.Errorf("stdout: %q", r.stdout)
	}
	if n := len(srv.BuildIDs()); n != 0 {
		t.Errorf("%d builds started", n)
	}

	r = c.run(t, "build", "poor", "--prompt", "A portfolio", "--json")
	wantCode(t, r, exitInsufficient)
	doc := decode[errorDoc](t, r)
	e := doc.Error
	if e.Kind != "insufficient_balance" || e.ExitCode != exitInsufficient || e.Status != http.StatusPaymentRequired ||
		e.AvailableSeconds == nil || *e.AvailableSeconds != 30 || e.RequiredSeconds == nil || *e.RequiredSeconds != 120 ||
		len(e.Suggestions) != 2 || e.Suggestions[0].Key != "mini" {
		t.Errorf("402 document: %+v", e)
	}
}

// A 429 whose Retry-After fits is waited out, and the wait is announced;
// one that asks for longer than the client waits says when to try again.
func TestRateLimited(t *testing.T) {
	srv, c := worker(t)
	srv.AddFault(sheentest.Fault{
		Route: sheen.RouteBalance, Calls: []int{1}, Status: http.StatusTooManyRequests,
		Header: http.Header{"Retry-After": {"1"}}, Body: `{"error":"Too many requests"}`,
	})
	r := c.run(t, "balance", "u1")
	wantCode(t, r, exitOK)
	wantIn(t, "waited 429", r.stderr, "rate limited by the worker: trying again in 1s (at ")
	wantIn(t, "balance after the wait", r.stdout, "u1 has 1h5m0s of AI time")
	if n := srv.Calls(sheen.RouteBalance); n != 2 {
		t.Errorf("the worker saw %d balance calls, want 2", n)
	}

	srv.ClearFaults()
	srv.AddFault(sheentest.Fault{
		Route: sheen.RouteBalance, Status: http.StatusTooManyRequests,
		Header: http.Header{"Retry-After": {"3600"}}, Body: `{"error":"Too many requests"}`,
	})
	r = c.run(t, "balance", "u1")
	wantCode(t, r, exitRateLimited)
	wantIn(t, "long 429", r.stderr, "sheen: rate limited by the worker: try again in 1h0m0s (at ")
	doc := decode[errorDoc](t, c.run(t, "balance", "u1", "--json"))
	if doc.Error.Kind != "rate_limited" || doc.Error.RetryAfterSeconds == nil || *doc.Error.RetryAfterSeconds != 3600 || doc.Error.RetryAt == "" {
		t.Errorf("429 document: %+v", doc.Error)
	}
}
