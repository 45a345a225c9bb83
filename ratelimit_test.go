package sheen

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"
)

var limiterStart = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func rateHeaders(limit, remaining int, reset string) http.Header {
	h := http.Header{}
	if limit >= 0 {
		h.Set("X-Ratelimit-Limit", strconv.Itoa(limit))
	}
	h.Set("X-Ratelimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-Ratelimit-Reset", reset)
	return h
}

// acquireAsync starts an acquire and returns a channel with its outcome.
func acquireAsync(l *adaptiveLimiter, ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() {
		release, err := l.acquire(ctx)
		if err == nil {
			release(nil)
		}
		done <- err
	}()
	return done
}

func mustNotFinish(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("request left early (err %v)", err)
	case <-time.After(20 * time.Millisecond):
	}
}

func mustFinish(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("request still waiting")
		return nil
	}
}

func TestLimiterHoldsRequestsUntilResetWhenNoneRemain(t *testing.T) {
	clock := newFakeClock(limiterStart)
	l := newAdaptiveLimiter(6000, time.Hour, clock)
	l.observe(200, rateHeaders(60, 0, "30"))
	if s := l.snapshot(); s.Remaining != 0 || !s.Reset.Equal(limiterStart.Add(30*time.Second)) || s.AdvertisedLimit != 60 {
		t.Fatalf("snapshot %+v", s)
	}
	done := acquireAsync(l, context.Background())
	clock.WaitForWaiters(1)
	clock.Advance(29 * time.Second)
	mustNotFinish(t, done)
	clock.Advance(time.Second)
	if err := mustFinish(t, done); err != nil {
		t.Fatal(err)
	}
}

func TestLimiterEpochReset(t *testing.T) {
	clock := newFakeClock(limiterStart)
	l := newAdaptiveLimiter(6000, time.Hour, clock)
	h := rateHeaders(-1, 0, strconv.FormatInt(limiterStart.Add(10*time.Second).Unix(), 10))
	l.observe(200, h)
	if s := l.snapshot(); !s.Reset.Equal(limiterStart.Add(10 * time.Second)) {
		t.Fatalf("epoch reset read as %s", s.Reset)
	}
}

func TestLimiterUnprefixedHeaders(t *testing.T) {
	clock := newFakeClock(limiterStart)
	l := newAdaptiveLimiter(6000, time.Hour, clock)
	l.observe(200, http.Header{"Ratelimit-Limit": {"10"}, "Ratelimit-Remaining": {"3"}, "Ratelimit-Reset": {"5"}})
	if s := l.snapshot(); s.AdvertisedLimit != 10 || s.Remaining != 3 {
		t.Fatalf("snapshot %+v", s)
	}
}

// The deployed worker's fixed headers on unlimited routes (remaining 45,
// reset in an hour, no limit header) must not slow the client down.
func TestLimiterIgnoresDeployedFixedHeaders(t *testing.T) {
	clock := newFakeClock(limiterStart)
	l := newAdaptiveLimiter(600, time.Hour, clock)
	var releases []func(*http.Response)
	for i := 0; i < 100; i++ {
		resp := &http.Response{StatusCode: 200, Header: rateHeaders(-1, 45, strconv.FormatInt(clock.Now().Add(time.Hour).Unix(), 10))}
		l.observe(resp.StatusCode, resp.Header)
		release, err := l.acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
		clock.Advance(100 * time.Millisecond) // 600 per minute
	}
	if s := l.snapshot(); s.PerSecond != 10 || s.InFlight != 100 {
		t.Fatalf("snapshot %+v: the configured 10/s must stand", s)
	}
	for _, r := range releases {
		r(nil)
	}
}

func TestLimiterAdoptsLowerAdvertisedLimit(t *testing.T) {
	clock := newFakeClock(limiterStart)
	l := newAdaptiveLimiter(6000, time.Hour, clock)
	l.observe(200, rateHeaders(10, 9, "10"))
	if s := l.snapshot(); s.PerSecond != 1 {
		t.Fatalf("10 per 10s window should pace at 1/s, got %v", s.PerSecond)
	}
	// A long window's limit is not adopted as a pace.
	l2 := newAdaptiveLimiter(6000, time.Hour, clock)
	l2.observe(200, rateHeaders(100, 99, "3600"))
	if s := l2.snapshot(); s.PerSecond != 100 {
		t.Fatalf("hourly quota must not pace the client, got %v", s.PerSecond)
	}
}

// Requests in flight spend the window's remaining quota before their
// answers say so.
func TestLimiterCountsInFlightAgainstRemaining(t *testing.T) {
	clock := newFakeClock(limiterStart)
	l := newAdaptiveLimiter(60000, time.Hour, clock)
	l.observe(200, rateHeaders(100, 2, "1"))
	r1, err1 := l.acquire(context.Background())
	r2, err2 := l.acquire(context.Background())
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	done := acquireAsync(l, context.Background())
	mustNotFinish(t, done)
	// An answer in the same window saying one remains: the request still in
	// flight will take it.
	r1(&http.Response{StatusCode: 200, Header: rateHeaders(100, 1, "1")})
	mustNotFinish(t, done)
	// The next answer comes from a fresh window: the third may go.
	r2(&http.Response{StatusCode: 200, Header: rateHeaders(100, 99, "2")})
	if err := mustFinish(t, done); err != nil {
		t.Fatal(err)
	}
}

func TestLimiterPausesEveryoneAfter429(t *testing.T) {
	clock := newFakeClock(limiterStart)
	l := newAdaptiveLimiter(60000, time.Hour, clock)
	h := http.Header{"Retry-After": {"5"}}
	l.observe(http.StatusTooManyRequests, h)
	if s := l.snapshot(); !s.PausedUntil.Equal(limiterStart.Add(5 * time.Second)) {
		t.Fatalf("snapshot %+v", s)
	}
	a, b := acquireAsync(l, context.Background()), acquireAsync(l, context.Background())
	clock.WaitForWaiters(2)
	mustNotFinish(t, a)
	clock.Advance(5 * time.Second)
	if err := mustFinish(t, a); err != nil {
		t.Fatal(err)
	}
	if err := mustFinish(t, b); err != nil {
		t.Fatal(err)
	}
}

func TestLimiterRefusesWaitPastDeadline(t *testing.T) {
	clock := newFakeClock(limiterStart)
	l := newAdaptiveLimiter(60000, time.Hour, clock)
	l.observe(http.StatusTooManyRequests, http.Header{"Retry-After": {"60"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := l.acquire(ctx)
	var rl *RateLimitError
	if !errors.As(err, &rl) || !errors.Is(err, ErrRateLimited) || rl.RetryAfter != 60*time.Second {
		t.Fatalf("want an immediate *RateLimitError, got %v", err)
	}
}

func TestLimiterRefusesWaitOverMaximum(t *testing.T) {
	clock := newFakeClock(limiterStart)
	l := newAdaptiveLimiter(60000, time.Minute, clock)
	l.observe(200, rateHeaders(100, 0, "3600"))
	_, err := l.acquire(context.Background())
	var rl *RateLimitError
	if !errors.As(err, &rl) || rl.Remaining != 0 || rl.Limit != 100 {
		t.Fatalf("want *RateLimitError with the quota, got %v", err)
	}
}

func TestLimiterWaitHonoursCancel(t *testing.T) {
	clock := newFakeClock(limiterStart)
	l := newAdaptiveLimiter(60000, time.Hour, clock)
	l.observe(200, rateHeaders(10, 0, "30"))
	ctx, cancel := context.WithCancel(context.Background())
	done := acquireAsync(l, ctx)
	clock.WaitForWaiters(1)
	cancel()
	if err := mustFinish(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
}

// A late answer from the window before does not undo the new window.
func TestLimiterIgnoresAnswersFromOldWindow(t *testing.T) {
	clock := newFakeClock(limiterStart)
	l := newAdaptiveLimiter(60000, time.Hour, clock)
	l.observe(200, rateHeaders(40, 38, strconv.FormatInt(limiterStart.Add(60*time.Second).Unix(), 10)))
	l.observe(200, rateHeaders(40, 0, strconv.FormatInt(limiterStart.Unix(), 10)))
	if s := l.snapshot(); s.Remaining != 38 {
		t.Fatalf("remaining %d, want 38", s.Remaining)
	}
}

func TestParseRateHeaders(t *testing.T) {
	now := limiterStart
	for _, tc := range []struct {
		h     http.Header
		limit int
		rem   int
		reset time.Time
		ok    bool
	}{
		{rateHeaders(60, 59, "60"), 60, 59, now.Add(time.Minute), true},
		{rateHeaders(60, 59, "0.5"), 60, 59, now.Add(500 * time.Millisecond), true},
		{rateHeaders(-1, 45, "1764146400"), -1, 45, time.Unix(1764146400, 0), true},
		{http.Header{"X-Ratelimit-Remaining": {"abc"}}, -1, -1, time.Time{}, false},
		{http.Header{}, -1, -1, time.Time{}, false},
	} {
		info, ok := parseRateHeaders(tc.h, now)
		if ok != tc.ok || info.limit != tc.limit || info.remaining != tc.rem || !info.reset.Equal(tc.reset) {
			t.Errorf("%v: got %+v %v", tc.h, info, ok)
		}
	}
}

// The client's snapshot reflects what the worker's headers said.
func TestClientExposesLimiterSnapshot(t *testing.T) {
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp := jsonResponse(r, 200, `{}`)
		resp.Header = rateHeaders(60, 12, "30")
		return resp, nil
	})
	c := newTestClient(t, rt, WithRateLimit(120))
	if err := c.Do(context.Background(), "GET", "/v1/x", nil, nil); err != nil {
		t.Fatal(err)
	}
	s := c.RateLimit()
	if s.ConfiguredPerMinute != 120 || s.Remaining != 12 || s.AdvertisedLimit != 60 || s.PerSecond != 2 {
		t.Fatalf("snapshot %+v", s)
	}
}

func FuzzRateHeaders(f *testing.F) {
	f.Add("60", "59", "30", "")
	f.Add("", "45", "1764146400", "Thu, 26 Nov 2026 12:01:00 GMT")
	f.Add("-1", "abc", "1e400", "NaN")
	f.Fuzz(func(t *testing.T, limit, remaining, reset, retryAfter string) {
		now := limiterStart
		h := http.Header{"X-Ratelimit-Limit": {limit}, "X-Ratelimit-Remaining": {remaining}, "X-Ratelimit-Reset": {reset}, "Retry-After": {retryAfter}}
		if d, ok := parseRetryAfter(retryAfter, now); ok && d < 0 {
			t.Fatalf("negative Retry-After %s from %q", d, retryAfter)
		}
		// Whatever the headers say, the limiter does not panic and its
		// state stays sane: a 429 pauses it from now on, never in the past.
		l := newAdaptiveLimiter(600, time.Minute, newFakeClock(now))
		l.observe(http.StatusTooManyRequests, h)
		s := l.snapshot()
		if s.PausedUntil.Before(now) || s.Remaining < -1 || s.AdvertisedLimit < -1 || s.PerSecond <= 0 {
			t.Fatalf("snapshot %+v from %v", s, h)
		}
	})
}

// Most responses carry no rate headers: reading them must cost nothing.
func TestParseRateHeadersAllocatesNothing(t *testing.T) {
	absent := http.Header{"Content-Type": {"application/json"}}
	present := rateHeaders(60, 59, "0.5")
	for name, h := range map[string]http.Header{"absent": absent, "present": present} {
		if n := testing.AllocsPerRun(100, func() { parseRateHeaders(h, limiterStart) }); n != 0 {
			t.Errorf("headers %s: %v allocations per parse", name, n)
		}
	}
}
