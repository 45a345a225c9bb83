package sheen

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"testing/synctest"
	"time"
)

// Tests that wait run in a synctest bubble: the limiter uses the system
// clock, which is fake there, and synctest.Wait tells a request that is held
// from one that has not been scheduled yet. None sleeps on the wall clock.

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

// answer is a response carrying a window's headers (reset in seconds from
// now).
func answer(status, limit, remaining int, reset time.Duration) *http.Response {
	return &http.Response{StatusCode: status, Header: rateHeaders(limit, remaining, strconv.FormatFloat(reset.Seconds(), 'f', 3, 64))}
}

// acquireCall is one acquire running in its own goroutine.
type acquireCall struct {
	done    chan struct{}
	release func(*http.Response)
	err     error
}

func start(l *adaptiveLimiter, ctx context.Context) *acquireCall {
	c := &acquireCall{done: make(chan struct{})}
	go func() {
		c.release, c.err = l.acquire(ctx)
		close(c.done)
	}()
	return c
}

func startN(l *adaptiveLimiter, n int) []*acquireCall {
	calls := make([]*acquireCall, n)
	for i := range calls {
		calls[i] = start(l, context.Background())
	}
	return calls
}

// settled is sent after a millisecond, time enough for any pace of 60,000
// or more per minute.
func settled(t *testing.T, calls []*acquireCall) []*acquireCall {
	t.Helper()
	time.Sleep(time.Millisecond)
	return sent(t, calls)
}

func (c *acquireCall) left() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// sent counts the calls whose request was let go, after every goroutine of
// the bubble has settled.
func sent(t *testing.T, calls []*acquireCall) []*acquireCall {
	t.Helper()
	synctest.Wait()
	var out []*acquireCall
	for _, c := range calls {
		if c.left() {
			if c.err != nil {
				t.Fatalf("acquire failed: %v", c.err)
			}
			out = append(out, c)
		}
	}
	return out
}

// flying is the calls that left and are not answered yet.
func flying(t *testing.T, calls []*acquireCall) []*acquireCall {
	t.Helper()
	var out []*acquireCall
	for _, c := range sent(t, calls) {
		if c.release != nil {
			out = append(out, c)
		}
	}
	return out
}

// answerOne answers one call.
func answerOne(c *acquireCall, resp *http.Response) {
	c.release(resp)
	c.release = nil
}

// releaseAll answers every call that left and has not been answered yet.
func releaseAll(calls []*acquireCall, resp func() *http.Response) {
	for _, c := range calls {
		if c.release != nil {
			c.release(resp())
			c.release = nil
		}
	}
}

func noAnswer() *http.Response { return nil }

// Before the worker has answered once, its window is unknown: one request
// leaves, and the others wait for its answer (or, if it is slow, one more
// per probeHold), whatever the configured rate allows.
func TestLimiterColdStartSendsOneProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newAdaptiveLimiter(1_000_000, time.Minute, systemClock{})
		calls := startN(l, 20)
		if n := len(sent(t, calls)); n != 1 {
			t.Fatalf("%d requests left before any answer, want 1", n)
		}
		// A slow probe lets one more go per probeHold.
		time.Sleep(probeHold)
		if n := len(sent(t, calls)); n != 2 {
			t.Fatalf("%d requests left after a probe held %s, want 2", n, probeHold)
		}
		// A transport error tells nothing: still probing.
		out := sent(t, calls)
		out[0].release(nil)
		out[0].release = nil
		if n := len(sent(t, calls)); n != 2 {
			t.Fatalf("%d requests left after a failed probe, want 2", n)
		}
		// The answer describes the window: 5 remain.
		out[1].release(answer(200, 10, 5, 800*time.Millisecond))
		out[1].release = nil
		if n := len(settled(t, calls)); n != 2+5 {
			t.Fatalf("%d requests left after the window was known, want 7", n)
		}
		if s := l.snapshot(); s.InFlight != 5 || s.Remaining != 5 {
			t.Fatalf("snapshot %+v: in flight must equal what remains", s)
		}
		releaseAll(sent(t, calls), noAnswer)
		time.Sleep(time.Second) // past the window: the rest probe again
		if n := len(sent(t, calls)); n != 8 {
			t.Fatalf("%d requests left after the window ended, want one probe more", n)
		}
		for len(sent(t, calls)) < len(calls) {
			releaseAll(sent(t, calls), func() *http.Response { return answer(200, 10, 9, time.Second) })
			time.Sleep(time.Millisecond)
		}
		releaseAll(calls, noAnswer)
	})
}

// At the configured rate, with a server that sends no rate headers: one
// probe, then the configured pace, never faster.
func TestLimiterColdStartKeepsTheConfiguredPace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newAdaptiveLimiter(600, time.Minute, systemClock{}) // 10 per second
		begin := time.Now()
		var times []time.Duration
		for range 30 {
			release, err := l.acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			times = append(times, time.Since(begin))
			release(&http.Response{StatusCode: 200, Header: http.Header{}})
		}
		// The burst of 4, then one per 100 ms: in any second, at most
		// the burst plus ten.
		for i := range times {
			n := 0
			for _, u := range times[i:] {
				if u-times[i] < time.Second {
					n++
				}
			}
			if n > defaultBurst+10 {
				t.Fatalf("%d requests within a second from %s: %v", n, times[i], times)
			}
		}
		if last := times[len(times)-1]; last < 2*time.Second {
			t.Fatalf("30 requests at 10/s took %s", last)
		}
	})
}

// Requests in flight spend the window's remaining quota before their
// answers say so, and answers that arrive out of order cannot raise it.
func TestLimiterInFlightNeverExceedsRemaining(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newAdaptiveLimiter(1_000_000, time.Minute, systemClock{})
		l.observe(200, answer(200, 100, 3, time.Second).Header)
		calls := startN(l, 10)
		out := sent(t, calls)
		if len(out) != 3 {
			t.Fatalf("%d in flight with 3 remaining", len(out))
		}
		// An answer from the same window saying 2 remain: the two still
		// in flight take them.
		out[0].release(answer(200, 100, 2, 900*time.Millisecond))
		out[0].release = nil
		if n := len(sent(t, calls)); n != 3 {
			t.Fatalf("%d sent, want still 3", n)
		}
		// A late answer saying more remain changes nothing, though its
		// reset, read on arrival, looks 400 ms later than the window's.
		out[1].release(answer(200, 100, 5, 1400*time.Millisecond))
		out[1].release = nil
		if n := len(sent(t, calls)); n != 4 {
			t.Fatalf("%d sent, want 4: 2 remain, 1 in flight", n)
		}
		if s := l.snapshot(); s.InFlight > s.Remaining {
			t.Fatalf("snapshot %+v", s)
		}
		releaseAll(sent(t, calls), func() *http.Response { return answer(200, 100, 0, 900*time.Millisecond) })
		if n := len(sent(t, calls)); n != 4 {
			t.Fatalf("%d sent with none remaining", n)
		}
		// The window ends: one probe, whose answer opens the next one.
		time.Sleep(time.Second)
		out = sent(t, calls)
		if len(out) != 5 {
			t.Fatalf("%d sent after the reset, want one probe more", len(out))
		}
		probe := flying(t, calls)
		if len(probe) != 1 {
			t.Fatalf("%d in flight, want the probe alone", len(probe))
		}
		answerOne(probe[0], answer(200, 100, 99, time.Second))
		if n := len(settled(t, calls)); n != 10 {
			t.Fatalf("%d sent in a fresh window, want all 10", n)
		}
		releaseAll(calls, noAnswer)
	})
}

// A lower limit in an answer re-plans the window at once: requests queued
// behind the pace do not leave on the old plan.
func TestLimiterLimitDropReplans(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newAdaptiveLimiter(600, time.Minute, systemClock{}) // 10/s, burst 4
		l.observe(200, rateHeaders(60, 50, "10"))
		calls := startN(l, 10)
		out := sent(t, calls)
		if len(out) != defaultBurst {
			t.Fatalf("%d sent, want the burst of %d", len(out), defaultBurst)
		}
		// The worker lowers its limit to 20; 3 of it remain. 4 requests
		// are in flight: nobody else may go, though the pace allows it.
		out[0].release(answer(200, 20, 3, 9*time.Second))
		out[0].release = nil
		time.Sleep(time.Second)
		if n := len(sent(t, calls)); n != defaultBurst {
			t.Fatalf("%d sent after the limit dropped, want still %d", n, defaultBurst)
		}
		if s := l.snapshot(); s.AdvertisedLimit != 20 || s.Remaining != 3 {
			t.Fatalf("snapshot %+v", s)
		}
		// Each later answer frees exactly what it says.
		out[1].release(answer(200, 20, 2, 8*time.Second))
		out[1].release = nil
		out[2].release(answer(200, 20, 2, 8*time.Second))
		out[2].release = nil
		if n := len(sent(t, calls)); n != defaultBurst+1 {
			t.Fatalf("%d sent, want %d: 2 remain, 1 in flight", n, defaultBurst+1)
		}
		releaseAll(sent(t, calls), func() *http.Response { return answer(200, 20, 0, 8*time.Second) })
		time.Sleep(8 * time.Second)
		for len(sent(t, calls)) < len(calls) {
			releaseAll(sent(t, calls), func() *http.Response { return answer(200, 20, 19, 10*time.Second) })
			time.Sleep(100 * time.Millisecond)
		}
		releaseAll(calls, noAnswer)
	})
}

// A 429 pauses every goroutine of the client until its Retry-After: those
// in line, those waiting for the pace, and those that come later.
func TestLimiterPausesEveryoneAfter429(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newAdaptiveLimiter(600, time.Minute, systemClock{})
		l.observe(200, rateHeaders(100, 90, "30"))
		calls := startN(l, 8)
		out := sent(t, calls)
		if len(out) != defaultBurst {
			t.Fatalf("%d sent, want %d", len(out), defaultBurst)
		}
		resp := answer(http.StatusTooManyRequests, 100, 0, 30*time.Second)
		resp.Header.Set("Retry-After", "5")
		out[0].release(resp)
		out[0].release = nil
		if s := l.snapshot(); !s.PausedUntil.Equal(time.Now().Add(5 * time.Second)) {
			t.Fatalf("snapshot %+v", s)
		}
		late := start(l, context.Background())
		time.Sleep(5*time.Second - time.Millisecond)
		if n := len(sent(t, append(calls, late))); n != defaultBurst {
			t.Fatalf("%d sent during the pause, want still %d", n, defaultBurst)
		}
		// The window said nothing remains until its reset in 30 s; the
		// pause ends first, but the window still holds everyone.
		time.Sleep(time.Millisecond)
		if n := len(sent(t, append(calls, late))); n != defaultBurst {
			t.Fatalf("%d sent with none remaining", n)
		}
		time.Sleep(25 * time.Second)
		for len(sent(t, append(calls, late))) < len(calls)+1 {
			releaseAll(sent(t, append(calls, late)), func() *http.Response { return answer(200, 100, 99, 60*time.Second) })
			time.Sleep(100 * time.Millisecond)
		}
		releaseAll(append(calls, late), noAnswer)
	})
}

// A 429 with Retry-After and no rate headers pauses everyone for exactly
// that long.
func TestLimiterPauseEndsAtRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newAdaptiveLimiter(60000, time.Hour, systemClock{})
		l.observe(http.StatusTooManyRequests, http.Header{"Retry-After": {"5"}})
		calls := startN(l, 2)
		time.Sleep(5*time.Second - time.Millisecond)
		if n := len(sent(t, calls)); n != 0 {
			t.Fatalf("%d sent during the pause", n)
		}
		time.Sleep(time.Millisecond)
		if n := len(sent(t, calls)); n != 2 {
			t.Fatalf("%d sent after the pause, want 2", n)
		}
		releaseAll(calls, noAnswer)
	})
}

// The deployed worker's fixed headers on unlimited routes (remaining 45,
// reset in an hour, no limit) must not slow the client down.
func TestLimiterIgnoresDeployedFixedHeaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The bubble's clock starts in 2000, below the 10^9 seconds that
		// tell an epoch reset, so the hour is given in seconds from now
		// (TestLimiterEpochReset reads the epoch form).
		l := newAdaptiveLimiter(600, time.Hour, systemClock{})
		begin := time.Now()
		var held []func(*http.Response)
		for i := range 100 {
			release, err := l.acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				release(answer(200, -1, 45, time.Hour))
				continue
			}
			l.observe(200, answer(200, -1, 45, time.Hour).Header)
			held = append(held, release) // 99 in flight, more than 45
		}
		// 4 at once, then 10 per second: 96 more take 9.6 s.
		if took := time.Since(begin); took > 10*time.Second {
			t.Fatalf("100 requests at the configured 10/s took %s", took)
		}
		if s := l.snapshot(); s.PerSecond != 10 || s.InFlight != 99 || s.Remaining != 45 {
			t.Fatalf("snapshot %+v", s)
		}
		for _, r := range held {
			r(nil)
		}
	})
}

// A known limited window is not displaced by an unlimited route's fixed
// headers.
func TestLimiterKeepsLimitedWindowOverFixedHeaders(t *testing.T) {
	clock := newFakeClock(limiterStart)
	l := newAdaptiveLimiter(6000, time.Hour, clock)
	l.observe(200, rateHeaders(10, 2, "30"))
	l.observe(200, rateHeaders(-1, 45, strconv.FormatInt(limiterStart.Add(time.Hour).Unix(), 10)))
	if s := l.snapshot(); s.Remaining != 2 || s.AdvertisedLimit != 10 {
		t.Fatalf("snapshot %+v", s)
	}
}

func TestLimiterHoldsRequestsUntilResetWhenNoneRemain(t *testing.T) {
	for _, tc := range []struct {
		reset string
		unit  time.Duration // how late the limiter may let go: the value's precision
	}{
		{"30", time.Second},
		{"30.000", time.Millisecond},
	} {
		t.Run(tc.reset, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := newAdaptiveLimiter(6000, time.Hour, systemClock{})
				l.observe(200, rateHeaders(60, 0, tc.reset))
				if s := l.snapshot(); s.Remaining != 0 || !s.Reset.Equal(time.Now().Add(30*time.Second)) || s.AdvertisedLimit != 60 {
					t.Fatalf("snapshot %+v", s)
				}
				calls := startN(l, 1)
				time.Sleep(30 * time.Second)
				if n := len(sent(t, calls)); n != 0 {
					t.Fatal("request left before the reset")
				}
				time.Sleep(tc.unit)
				if n := len(sent(t, calls)); n != 1 {
					t.Fatalf("request still held %s after the reset", tc.unit)
				}
				releaseAll(calls, noAnswer)
			})
		})
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

func TestLimiterRefusesWaitPastDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newAdaptiveLimiter(60000, time.Hour, systemClock{})
		l.observe(http.StatusTooManyRequests, http.Header{"Retry-After": {"60"}})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		begin := time.Now()
		_, err := l.acquire(ctx)
		var rl *RateLimitError
		if !errors.As(err, &rl) || !errors.Is(err, ErrRateLimited) || rl.RetryAfter != 60*time.Second {
			t.Fatalf("want a *RateLimitError, got %v", err)
		}
		if time.Since(begin) != 0 {
			t.Fatal("the refusal waited")
		}
	})
}

// Goroutines queued behind the first in line are refused at once too.
func TestLimiterRefusesQueuedWaitPastDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newAdaptiveLimiter(60000, time.Hour, systemClock{})
		l.observe(200, rateHeaders(10, 0, "30"))
		first := startN(l, 1)
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := l.acquire(ctx)
		var rl *RateLimitError
		if !errors.As(err, &rl) || rl.Remaining != 0 || rl.Limit != 10 {
			t.Fatalf("want a *RateLimitError with the quota, got %v", err)
		}
		time.Sleep(31 * time.Second) // "30": whole seconds, so up to 31
		releaseAll(sent(t, first), noAnswer)
	})
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

// A wait for the configured pace longer than the maximum is refused too.
func TestLimiterRefusesPaceWaitOverMaximum(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newAdaptiveLimiter(1, 50*time.Millisecond, systemClock{}) // 1 per minute
		l.observe(200, http.Header{})
		for range defaultBurst {
			release, err := l.acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			release(nil)
		}
		_, err := l.acquire(context.Background())
		var rl *RateLimitError
		if !errors.As(err, &rl) || rl.RetryAfter < 59*time.Second {
			t.Fatalf("want *RateLimitError, got %v", err)
		}
	})
}

// Every wait honours its context: first in line, or queued behind.
func TestLimiterWaitHonoursCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newAdaptiveLimiter(60000, time.Hour, systemClock{})
		l.observe(200, rateHeaders(10, 0, "30"))
		ctx, cancel := context.WithCancel(context.Background())
		a, b := start(l, ctx), start(l, ctx)
		other := start(l, context.Background())
		synctest.Wait()
		cancel()
		synctest.Wait()
		for _, c := range []*acquireCall{a, b} {
			if !c.left() || !errors.Is(c.err, context.Canceled) {
				t.Fatalf("want context.Canceled, got %v", c.err)
			}
		}
		if other.left() {
			t.Fatal("an uncanceled request left early")
		}
		// The line moves on without the canceled ones.
		time.Sleep(31 * time.Second)
		releaseAll(sent(t, []*acquireCall{other}), noAnswer)
		if !other.left() {
			t.Fatal("the remaining request is stuck")
		}
	})
}

// A late answer from the window before does not undo the new window.
func TestLimiterIgnoresAnswersFromOldWindow(t *testing.T) {
	clock := newFakeClock(limiterStart)
	l := newAdaptiveLimiter(60000, time.Hour, clock)
	l.observe(200, rateHeaders(40, 38, strconv.FormatInt(limiterStart.Add(60*time.Second).Unix(), 10)))
	l.observe(200, rateHeaders(40, 0, strconv.FormatInt(limiterStart.Add(time.Second).Unix(), 10)))
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
		{rateHeaders(-1, 45, "1764146400.25"), -1, 45, time.Unix(1764146400, 250_000_000), true},
		{http.Header{"Ratelimit-Limit": {" 10 "}, "Ratelimit-Remaining": {"0"}, "Ratelimit-Reset": {"5"}}, 10, 0, now.Add(5 * time.Second), true},
		{http.Header{"X-Ratelimit-Remaining": {"abc"}}, -1, -1, time.Time{}, false},
		{http.Header{"X-Ratelimit-Remaining": {"-1"}}, -1, -1, time.Time{}, false},
		{http.Header{"X-Ratelimit-Remaining": {"99999999999999999999"}}, -1, -1, time.Time{}, false},
		{http.Header{}, -1, -1, time.Time{}, false},
	} {
		info, ok := parseRateHeaders(tc.h, now)
		if ok != tc.ok || info.limit != tc.limit || info.remaining != tc.rem || !info.reset.Equal(tc.reset) {
			t.Errorf("%v: got %+v %v", tc.h, info, ok)
		}
	}
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
	clock := newFakeClock(limiterStart)
	l := newAdaptiveLimiter(60000, time.Hour, clock)
	l.observe(200, absent)
	resp := &http.Response{StatusCode: 200, Header: absent}
	if n := testing.AllocsPerRun(100, func() {
		clock.Advance(time.Millisecond) // a token at 1000 per second
		release, err := l.acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		release(resp)
	}); n != 0 {
		t.Errorf("acquire and release without rate headers: %v allocations", n)
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
		if info, ok := parseRateHeaders(h, now); ok && (info.limit < -1 || info.remaining < -1) {
			t.Fatalf("negative counts %+v", info)
		}
		// Whatever the headers say, the limiter does not panic and its
		// state stays sane: a pause is never in the past, and a 429's
		// Retry-After pauses it exactly that long.
		l := newAdaptiveLimiter(600, time.Minute, newFakeClock(now))
		l.observe(http.StatusTooManyRequests, h)
		s := l.snapshot()
		if (!s.PausedUntil.IsZero() && s.PausedUntil.Before(now)) || s.Remaining < -1 || s.AdvertisedLimit < -1 || s.PerSecond <= 0 {
			t.Fatalf("snapshot %+v from %v", s, h)
		}
		if d, ok := parseRetryAfter(retryAfter, now); ok && d > 0 && !s.PausedUntil.Equal(now.Add(d)) {
			t.Fatalf("Retry-After %q: paused until %s", retryAfter, s.PausedUntil)
		}
	})
}
