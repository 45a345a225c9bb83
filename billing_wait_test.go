package sheen

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
)

// billingWait runs WaitForBalance in a goroutine and advances the fake clock
// whenever it waits, until it returns.
func billingWait(t *testing.T, ctx context.Context, c *WorkerClient, clock *fakeClock, atLeast time.Duration, opts ...CallOption) (Balance, error) {
	t.Helper()
	type result struct {
		b   Balance
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := c.Billing.WaitForBalance(ctx, "u1", atLeast, opts...)
		done <- result{b, err}
	}()
	for {
		select {
		case r := <-done:
			return r.b, r.err
		case <-time.After(time.Millisecond):
		}
		if clock.Waiters() > 0 {
			clock.Advance(time.Second)
		}
	}
}

func TestBillingWaitForBalanceSucceeds(t *testing.T) {
	c, mock, clock := newBillingClient(t)
	var calls atomic.Int32
	mock.RegisterNoResponder(billingSequence(&calls, billingTotalBody(60), billingTotalBody(60), `503 {"error":"unavailable"}`, billingTotalBody(900)))
	// A cached value must not satisfy or shorten the wait.
	if _, err := c.Billing.Balance(context.Background(), "u1"); err != nil {
		t.Fatal(err)
	}
	b, err := billingWait(t, context.Background(), c, clock, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if b.Total != 15*time.Minute {
		t.Errorf("total %s, want 15m", b.Total)
	}
	if n := calls.Load(); n != 4 {
		t.Errorf("%d requests, want 4 (1 cached read, then 3 polls with a 503 between)", n)
	}
	if waited := clock.Now().Sub(billingStart); waited != 4*time.Second {
		t.Errorf("waited %s on the client clock, want 4s (two 2s intervals)", waited)
	}
	cached, err := c.Billing.Balance(context.Background(), "u1")
	if err != nil || cached.Total != 15*time.Minute || calls.Load() != 4 {
		t.Errorf("after the wait, Balance = %v, %v with %d requests; want the polled value from the cache", cached, err, calls.Load())
	}
}

func TestBillingWaitForBalanceTimesOut(t *testing.T) {
	c, mock, clock := newBillingClient(t)
	var calls atomic.Int32
	mock.RegisterNoResponder(billingSequence(&calls, billingTotalBody(60)))
	c.billing.waitTimeout = 10 * time.Second // the poll interval keeps its 2s
	_, err := billingWait(t, context.Background(), c, clock, 10*time.Minute)
	if !errors.Is(err, ErrBalanceTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a timeout, got %v", err)
	}
	var te *BalanceTimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("want *BalanceTimeoutError, got %T", err)
	}
	if !te.HasLast || te.Last.Total != time.Minute || te.AtLeast != 10*time.Minute || te.UserID != "u1" {
		t.Errorf("timeout error says %+v; want the last total seen (1m) and what was waited for", te)
	}
	if te.Waited != 10*time.Second || te.Polls != 6 || calls.Load() != 6 {
		t.Errorf("waited %s with %d polls (%d requests); want 10s and 6 (at 0,2,4,6,8,10s)", te.Waited, te.Polls, calls.Load())
	}
	for _, s := range []string{"u1", "10m0s", "1m0s"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q lacks %q", err, s)
		}
	}
}

func TestBillingWaitForBalanceDefaults(t *testing.T) {
	c, mock, clock := newBillingClient(t)
	var calls atomic.Int32
	mock.RegisterNoResponder(billingSequence(&calls, `500 {"error":"down"}`))
	_, err := billingWait(t, context.Background(), c, clock, time.Minute)
	var te *BalanceTimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("want *BalanceTimeoutError, got %v", err)
	}
	if te.Waited != 60*time.Second || te.Polls != 31 {
		t.Errorf("waited %s with %d polls; want 60s and 31 (every 2s)", te.Waited, te.Polls)
	}
	if te.HasLast || te.Last.Total != 0 || !errors.Is(err, ErrServer) {
		t.Errorf("want no balance seen and the last poll's 500 inside, got %+v", te)
	}
}

func TestBillingWaitForBalanceStopsOnLastingFailure(t *testing.T) {
	c, mock, clock := newBillingClient(t)
	var calls atomic.Int32
	mock.RegisterNoResponder(billingSequence(&calls, `404 {"error":"user not found"}`))
	_, err := billingWait(t, context.Background(), c, clock, time.Minute)
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrBalanceTimeout) || calls.Load() != 1 {
		t.Errorf("got %v after %d requests; want the 404 at once", err, calls.Load())
	}
}

func TestBillingWaitForBalanceCancelled(t *testing.T) {
	c, mock, clock := newBillingClient(t)
	mock.RegisterNoResponder(httpmock.NewStringResponder(200, billingTotalBody(60)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Billing.WaitForBalance(ctx, "u1", time.Hour)
		done <- err
	}()
	clock.WaitForWaiters(1) // it is waiting for its next poll; the clock never moves
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrBalanceTimeout) {
		t.Errorf("got %v, want context.Canceled", err)
	}

	mock.ZeroCallCounters()
	if _, err := c.Billing.WaitForBalance(ctx, "u1", time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("ended context: got %v", err)
	}
	if n := mock.GetTotalCallCount(); n != 0 {
		t.Errorf("%d requests with an ended context", n)
	}
}

func TestBillingWaitForBalanceRefusesBadArguments(t *testing.T) {
	c, mock, _ := newBillingClient(t)
	var ve *ValidationError
	if _, err := c.Billing.WaitForBalance(context.Background(), "u1", time.Minute, nil); !errors.As(err, &ve) {
		t.Errorf("a nil CallOption: want *ValidationError, got %v", err)
	}
	//lint:ignore SA1012 a nil context is what is being tested
	if _, err := c.Billing.WaitForBalance(nil, "u1", time.Minute); err == nil { //nolint:staticcheck
		t.Error("a nil context is accepted")
	}
	if n := mock.GetTotalCallCount(); n != 0 {
		t.Errorf("%d requests sent for bad arguments", n)
	}
}

func TestBillingWaitForBalanceCallOptions(t *testing.T) {
	c, mock, clock := newBillingClient(t)
	var calls atomic.Int32
	var marked atomic.Int32
	mock.RegisterNoResponder(func(r *http.Request) (*http.Response, error) {
		if r.Header.Get("X-Trace") == "pay-1" {
			marked.Add(1)
		}
		return billingSequence(&calls, billingTotalBody(60), billingTotalBody(900))(r)
	})
	var resp Response
	b, err := billingWait(t, context.Background(), c, clock, 10*time.Minute, WithHeader("X-Trace", "pay-1"), WithResponse(&resp))
	if err != nil || b.Total != 15*time.Minute {
		t.Fatalf("got %v, %v", b, err)
	}
	if marked.Load() != 2 || calls.Load() != 2 {
		t.Errorf("%d of %d polls carried the caller's header, want every one of 2", marked.Load(), calls.Load())
	}
	if resp.StatusCode != 200 || resp.Cached || resp.Attempts != 1 {
		t.Errorf("Response %+v; want the last poll's answer", resp)
	}
}

func TestBillingWaitForBalanceTimeoutBoundsAHungPoll(t *testing.T) {
	c, mock := newMockClient(t) // the real clock: the wait's timeout must cut the request itself
	mock.RegisterNoResponder(func(r *http.Request) (*http.Response, error) {
		<-r.Context().Done() // a worker that never answers
		return nil, r.Context().Err()
	})
	// The caller's own context is far off: only the wait's timeout can end this.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.billing.waitTimeout, c.billing.pollInterval = 20*time.Millisecond, 10*time.Millisecond
	_, err := c.Billing.WaitForBalance(ctx, "u1", time.Minute)
	var te *BalanceTimeoutError
	if !errors.As(err, &te) || ctx.Err() != nil {
		t.Fatalf("got %v (caller's context: %v); want a *BalanceTimeoutError from the wait's own timeout", err, ctx.Err())
	}
	if te.Polls != 1 || te.HasLast || te.Err == nil {
		t.Errorf("timeout error %+v; want the one hung poll and its error", te)
	}
}
