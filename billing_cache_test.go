package sheen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jarcoal/httpmock"
)

func TestBillingBalanceCache(t *testing.T) {
	ctx := context.Background()
	c, mock, clock := newBillingClient(t)
	var calls atomic.Int32
	mock.RegisterResponder("GET", "https://worker.test/base/v1/billing/balance/u1",
		billingSequence(&calls, billingTotalBody(60), billingTotalBody(120), billingTotalBody(180), billingTotalBody(240), billingTotalBody(300), billingTotalBody(360), billingTotalBody(420)))
	mock.RegisterResponder("GET", "https://worker.test/base/v1/billing/balance/u2", httpmock.NewStringResponder(200, billingTotalBody(1)))
	mock.RegisterResponder("POST", "https://worker.test/base/v1/billing/check-sufficient", func(r *http.Request) (*http.Response, error) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), `"u1"`) {
			return httpmock.NewStringResponse(402, ``), nil
		}
		return httpmock.NewStringResponse(402, `{"error":"INSUFFICIENT_AI_TIME"}`), nil
	})

	// The rate limiter runs on the fake clock too: tick lets its burst
	// refill between steps that send requests.
	tick := func() { clock.Advance(time.Second) }
	total := func(step string, want time.Duration) {
		t.Helper()
		b, err := c.Billing.Balance(ctx, "u1")
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if b.Total != want {
			t.Errorf("%s: total %s, want %s (requests so far: %d)", step, b.Total, want, calls.Load())
		}
	}
	total("first call asks the worker", time.Minute)
	got, _ := c.Billing.Balance(ctx, "u1")
	got.Total = 0
	got = got.WithBuckets(BalanceBucket{Source: "mine"})
	total("second call is cached; a caller's changes do not leak into the cache", time.Minute)
	clock.Advance(DefaultBalanceCacheTTL - time.Second)
	total("still cached just before 5 minutes", time.Minute)
	clock.Advance(time.Second)
	total("expired after 5 minutes", 2*time.Minute)

	tick()
	c.Billing.InvalidateBalance("u1")
	total("explicit invalidation", 3*time.Minute)

	tick()
	if _, err := c.Billing.Balance(ctx, "u2"); err != nil {
		t.Fatal(err)
	}
	if chk, err := c.Billing.CheckSufficient(ctx, CheckSufficientRequest{UserID: "u2", OperationType: OperationMainBuild, ProjectSize: ProjectSizeSmall}); err != nil || chk.Sufficient {
		t.Fatalf("402 for u2: %+v, %v", chk, err)
	}
	// The global epoch may have made u1's next load uncached, but u1's
	// stored value stays.
	total("a 402 for another user keeps u1's value", 3*time.Minute)

	tick()
	if _, err := c.Billing.CheckSufficient(ctx, CheckSufficientRequest{UserID: "u1", OperationType: OperationMainBuild, ProjectSize: ProjectSizeSmall}); err != nil {
		t.Fatal(err)
	}
	total("a 402 for u1 drops its value", 4*time.Minute)

	tick()
	c.Billing.InvalidateBalance("u1") // what Builds does when a build starts
	total("a build started drops the value", 5*time.Minute)

	tick()
	b, err := c.Billing.RefreshBalance(ctx, "u1")
	if err != nil || b.Total != 6*time.Minute {
		t.Fatalf("RefreshBalance: %v, %v", b, err)
	}
	total("RefreshBalance's answer is cached", 6*time.Minute)

	if n := calls.Load(); n != 6 {
		t.Errorf("the worker saw %d balance requests for u1, want 6", n)
	}
}

func TestBillingBalanceCacheTTLOption(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		ttl       time.Duration
		advance   time.Duration
		wantCalls int32
	}{
		{"one minute, within", time.Minute, 59 * time.Second, 1},
		{"one minute, past", time.Minute, time.Minute, 2},
		{"off", -1, 0, 2},
		{"default (5 minutes), within", 0, 4 * time.Minute, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, mock, clock := newBillingClient(t, WithCache(CacheConfig{BalanceTTL: tc.ttl}))
			var calls atomic.Int32
			mock.RegisterNoResponder(billingSequence(&calls, billingTotalBody(60)))
			for range 2 {
				if _, err := c.Billing.Balance(ctx, "u1"); err != nil {
					t.Fatal(err)
				}
				clock.Advance(tc.advance)
			}
			if n := calls.Load(); n != tc.wantCalls {
				t.Errorf("%d requests, want %d", n, tc.wantCalls)
			}
		})
	}
}

func TestBillingBalanceConcurrentMissesShareOneRequest(t *testing.T) {
	c, mock := newMockClient(t) // the real clock: the TTL is far off
	const callers = 100
	var started sync.WaitGroup
	started.Add(callers)
	var calls atomic.Int32
	mock.RegisterNoResponder(func(r *http.Request) (*http.Response, error) {
		calls.Add(1)
		started.Wait() // hold the answer until every caller is on its way
		return httpmock.NewStringResponse(200, billingTotalBody(600)), nil
	})
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			started.Done()
			b, err := c.Billing.Balance(context.Background(), "u1")
			if err == nil && b.Total != 10*time.Minute {
				err = fmt.Errorf("total %s", b.Total)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the worker saw %d requests, want 1", n)
	}
}

// TestBillingBalanceHitAllocations is issue #13's bound: a hit hands the
// caller a value, sharing the cache's buckets (read through Buckets(), a
// copy), so it allocates nothing, whatever the shape.
func TestBillingBalanceHitAllocations(t *testing.T) {
	fixture, err := os.ReadFile("sheentest/fixtures/balance.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, body string
		allocs     float64
	}{
		{"bucketed, 2 buckets", billingBucketedBody, 0},
		{"bucketed, the fixture's 3 buckets", string(fixture), 0},
		{"bucketed, no buckets", billingTotalBody(60), 0},
		{"v2.1 with usage", billingV21Body, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, mock, _ := newBillingClient(t)
			mock.RegisterNoResponder(httpmock.NewStringResponder(200, tc.body))
			ctx := context.Background()
			if _, err := c.Billing.Balance(ctx, "u1"); err != nil {
				t.Fatal(err)
			}
			hit := func(opts ...CallOption) func() {
				return func() {
					if _, err := c.Billing.Balance(ctx, "u1", opts...); err != nil {
						t.Fatal(err)
					}
				}
			}
			n := testing.AllocsPerRun(1000, hit())
			t.Logf("a hit: %v allocations", n)
			if n > tc.allocs {
				t.Errorf("a hit: %v allocations, want at most %v", n, tc.allocs)
			}
			// An option is applied to a callConfig on the heap: one more.
			var resp Response
			n = testing.AllocsPerRun(1000, hit(WithResponse(&resp)))
			t.Logf("a hit with WithResponse: %v allocations", n)
			if n > tc.allocs+1 {
				t.Errorf("a hit with WithResponse: %v allocations, want at most %v", n, tc.allocs+1)
			}
			if n := mock.GetTotalCallCount(); n != 1 {
				t.Errorf("%d requests, want the 1 that filled the cache", n)
			}
		})
	}
}

// TestBillingBalanceCallerOwnsWhatItGets: a caller that changes every part
// of a Balance it was handed (each field; each bucket of what Buckets
// returned, then a bucket appended to it; then the Balance given buckets of
// its own) changes nothing that any later call returns, Buckets included,
// whether the balance came from a miss, a hit or a refresh, from the
// client's cache or a shared one.
func TestBillingBalanceCallerOwnsWhatItGets(t *testing.T) {
	ctx := context.Background()
	bodies := map[string]string{
		"bucketed":      billingBucketedBody,
		"v2.1":          billingV21Body,
		"five buckets":  `{"totals":{},"buckets":[{},{},{},{},{"source":"fifth"}],"bonus":{}}`,
		"empty buckets": billingTotalBody(60),
	}
	for name, body := range bodies {
		var w balanceWire
		if err := json.Unmarshal([]byte(body), &w); err != nil {
			t.Fatal(err)
		}
		want := w.toBalance()
		for _, shared := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/shared=%v", name, shared), func(t *testing.T) {
				var opts []Option
				if shared {
					opts = append(opts, WithCache(CacheConfig{Shared: &memShared{values: map[string][]byte{}}}))
				}
				c, mock, _ := newBillingClient(t, opts...)
				mock.RegisterNoResponder(httpmock.NewStringResponder(200, body))
				steps := []struct {
					name string
					get  func(context.Context, string, ...CallOption) (Balance, error)
				}{
					{"miss", c.Billing.Balance},
					{"hit", c.Billing.Balance},
					{"refresh", c.Billing.RefreshBalance},
					{"hit after the refresh", c.Billing.Balance},
					{"last hit", c.Billing.Balance},
				}
				for _, step := range steps {
					got, err := step.get(ctx, "u1")
					if err != nil {
						t.Fatal(err)
					}
					if d := cmp.Diff(want, got); d != "" {
						t.Fatalf("%s: an earlier caller's changes came back (-want +got):\n%s", step.name, d)
					}
					mine := got.Buckets()
					if d := cmp.Diff(want.Buckets(), mine); d != "" {
						t.Fatalf("%s: an earlier caller's changes to its Buckets() came back (-want +got):\n%s", step.name, d)
					}
					scribble(t, reflect.ValueOf(&mine).Elem())
					mine = append(mine, BalanceBucket{Source: "mine"})
					if cmp.Equal(want.Buckets(), mine) {
						t.Fatalf("%s: scribbling the buckets changed nothing", step.name)
					}
					scribble(t, reflect.ValueOf(&got).Elem())
					got = got.WithBuckets(mine...)
					if cmp.Equal(want, got) {
						t.Fatalf("%s: scribbling changed nothing", step.name)
					}
				}
				if n := mock.GetTotalCallCount(); n != 2 {
					t.Errorf("%d requests, want 2 (the miss and the refresh)", n)
				}
			})
		}
	}
}

func TestBillingBalanceResponse(t *testing.T) {
	ctx := context.Background()
	c, mock, _ := newBillingClient(t)
	mock.RegisterNoResponder(httpmock.NewStringResponder(200, billingTotalBody(60)))
	var miss, hit Response
	if _, err := c.Billing.Balance(ctx, "u1", WithResponse(&miss)); err != nil {
		t.Fatal(err)
	}
	if miss.Cached || miss.StatusCode != 200 || miss.Attempts != 1 || miss.CorrelationID == "" {
		t.Errorf("miss: Response %+v; want the worker's answer", miss)
	}
	if _, err := c.Billing.Balance(ctx, "u1", WithResponse(&hit)); err != nil {
		t.Fatal(err)
	}
	if !hit.Cached || hit.StatusCode != 0 || hit.Attempts != 0 {
		t.Errorf("hit: Response %+v; want Cached and no request", hit)
	}
	var ve *ValidationError
	if _, err := c.Billing.Balance(ctx, "u1", nil); !errors.As(err, &ve) {
		t.Errorf("a nil CallOption on a hit: want *ValidationError, got %v", err)
	}
	refreshed := Response{Cached: true}
	if _, err := c.Billing.RefreshBalance(ctx, "u1", WithResponse(&refreshed)); err != nil {
		t.Fatal(err)
	}
	if refreshed.Cached || refreshed.StatusCode != 200 {
		t.Errorf("RefreshBalance: Response %+v; want the worker's answer", refreshed)
	}
	if n := mock.GetTotalCallCount(); n != 2 {
		t.Errorf("%d requests, want 2 (the miss and the refresh)", n)
	}
}

func TestBillingBalanceSharedLoadResponses(t *testing.T) {
	c, mock := newMockClient(t) // the real clock: the TTL is far off
	const callers = 20
	var started sync.WaitGroup
	started.Add(callers)
	mock.RegisterNoResponder(func(r *http.Request) (*http.Response, error) {
		started.Wait() // hold the answer until every caller is on its way
		return httpmock.NewStringResponse(200, billingTotalBody(600)), nil
	})
	resps := make([]Response, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			started.Done()
			if _, err := c.Billing.Balance(context.Background(), "u1", WithResponse(&resps[i])); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	requested := 0
	for i, r := range resps {
		switch {
		case !r.Cached && r.StatusCode == 200:
			requested++
		case !r.Cached:
			t.Errorf("caller %d: Response %+v; want the request's or Cached", i, r)
		}
	}
	if requested != 1 || mock.GetTotalCallCount() != 1 {
		t.Errorf("%d callers report the request (%d requests made); want 1, the others Cached", requested, mock.GetTotalCallCount())
	}
}

// slowWorker answers every request after d, or fails it when its context
// ends first; started hears of each request.
func slowWorker(d time.Duration, body func() string, started chan<- struct{}) httpmock.Responder {
	return func(r *http.Request) (*http.Response, error) {
		started <- struct{}{}
		select {
		case <-time.After(d):
			return httpmock.NewStringResponse(200, body()), nil
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
}

// TestBillingBalanceSharedLoadOutlivesFirstCallersTimeout is issue #11's
// rule: the caller that starts a shared load gives it no deadline, so a
// patient caller that joined it gets the worker's answer after the first
// caller's WithCallTimeout has ended that caller's wait.
func TestBillingBalanceSharedLoadOutlivesFirstCallersTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, mock := newMockClient(t)
		started := make(chan struct{}, 4)
		mock.RegisterNoResponder(slowWorker(200*time.Millisecond, func() string { return billingTotalBody(600) }, started))
		first := make(chan error, 1)
		go func() {
			_, err := c.Billing.Balance(context.Background(), "u1", WithCallTimeout(50*time.Millisecond))
			first <- err
		}()
		<-started
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b, err := c.Billing.Balance(ctx, "u1")
		if err != nil || b.Total != 10*time.Minute {
			t.Fatalf("the patient caller: %v, %v", b.Total, err)
		}
		if err := <-first; !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("the first caller, WithCallTimeout(50ms): %v", err)
		}
		if n := len(started); n != 0 {
			t.Errorf("%d more requests, want the one shared", n)
		}
	})
}

// TestBillingBalanceSharedLoadIgnoresFirstCallersAttempts: one caller's
// WithCallAttempts(1) does not stop the shared request from being retried
// for the others, by the client's RetryConfig.
func TestBillingBalanceSharedLoadIgnoresFirstCallersAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mock := httpmock.NewMockTransport()
		c := newTestClient(t, mock, WithRetry(RetryConfig{MaxAttempts: 2}))
		started := make(chan struct{}, 4)
		var n atomic.Int32
		mock.RegisterNoResponder(func(r *http.Request) (*http.Response, error) {
			started <- struct{}{}
			time.Sleep(100 * time.Millisecond) // the second caller joins meanwhile
			if n.Add(1) == 1 {
				return httpmock.NewStringResponse(503, `{"error":"busy"}`), nil
			}
			return httpmock.NewStringResponse(200, billingTotalBody(600)), nil
		})
		first := make(chan error, 1)
		go func() {
			_, err := c.Billing.Balance(context.Background(), "u1", WithCallAttempts(1))
			first <- err
		}()
		<-started
		b, err := c.Billing.Balance(context.Background(), "u1")
		if err != nil || b.Total != 10*time.Minute {
			t.Fatalf("the caller that joined: %v, %v", b.Total, err)
		}
		if err := <-first; err != nil {
			t.Errorf("the first caller: %v", err)
		}
		if got := n.Load(); got != 2 {
			t.Errorf("the worker saw %d requests, want 2 (one retry)", got)
		}
	})
}

// TestBillingBalanceLoaderPanicDoesNotCrash: a panic under a shared load
// (here the transport's) whose caller can leave runs on the cache's own
// goroutine: Balance returns an error instead of the program crashing.
func TestBillingBalanceLoaderPanicDoesNotCrash(t *testing.T) {
	c := newTestClient(t, roundTripFunc(func(*http.Request) (*http.Response, error) { panic("transport bug") }))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := c.Billing.Balance(ctx, "u1")
	if !errors.Is(err, errLoadAborted) || !strings.Contains(err.Error(), "transport bug") {
		t.Fatalf("Balance after the transport panicked: %v", err)
	}
}

// TestBillingBalanceHugeTotalClamped: a total beyond time.Duration's range
// reads as the longest duration, not as a negative one (9999999999 s once
// gave -292 years, which a caller would read as "nothing left").
func TestBillingBalanceHugeTotalClamped(t *testing.T) {
	c, mock := newMockClient(t)
	mock.RegisterNoResponder(httpmock.NewStringResponder(200, billingTotalBody(9999999999)))
	b, err := c.Billing.Balance(context.Background(), "u1")
	if err != nil || b.Total != time.Duration(math.MaxInt64) || b.Bonus != b.Total {
		t.Fatalf("Balance: total %s, bonus %s, %v", b.Total, b.Bonus, err)
	}
}

// TestBillingBalanceNilContext: a nil context is refused whether or not
// the balance is cached, and RefreshBalance refuses it before dropping the
// cached one.
func TestBillingBalanceNilContext(t *testing.T) {
	c, mock := newMockClient(t)
	mock.RegisterNoResponder(httpmock.NewStringResponder(200, billingTotalBody(600)))
	if _, err := c.Billing.Balance(context.Background(), "u1"); err != nil {
		t.Fatal(err)
	}
	var ve *ValidationError
	//lint:ignore SA1012 the nil context is the point
	if _, err := c.Billing.Balance(nil, "u1"); !errors.As(err, &ve) {
		t.Errorf("Balance(nil ctx) with a cached balance: %v, want a *ValidationError", err)
	}
	//lint:ignore SA1012 the nil context is the point
	if _, err := c.Billing.RefreshBalance(nil, "u1"); !errors.As(err, &ve) {
		t.Errorf("RefreshBalance(nil ctx): %v, want a *ValidationError", err)
	}
	var resp Response
	if _, err := c.Billing.Balance(context.Background(), "u1", WithResponse(&resp)); err != nil || !resp.Cached {
		t.Errorf("after RefreshBalance(nil ctx) the balance is no longer cached: %+v, %v", resp, err)
	}
}
