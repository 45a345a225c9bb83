package sheen

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultRatePerMinute is v2.1's limit: 60 requests per minute.
const DefaultRatePerMinute = 60

// defaultBurst lets a few requests leave at once before pacing starts.
const defaultBurst = 4

// pacingHorizon is the longest advertised window whose limit is adopted as a
// steady pace. Longer windows (hourly build quotas, the deployed worker's
// fixed "reset in an hour" headers) only stop requests when their remaining
// count runs out, so they never slow the client below its configured rate.
const pacingHorizon = 5 * time.Minute

// LimiterSnapshot is the rate limiter's state at one moment.
type LimiterSnapshot struct {
	// ConfiguredPerMinute is the rate set with WithRateLimit.
	ConfiguredPerMinute int
	// PerSecond is the pace in force now: the configured rate, or a lower
	// limit the worker advertised.
	PerSecond float64
	// AdvertisedLimit is the last x-ratelimit-limit seen, -1 when none.
	AdvertisedLimit int
	// Remaining is the lowest x-ratelimit-remaining seen in the current
	// window, -1 when unknown.
	Remaining int
	// Reset is when the current window ends, zero when unknown.
	Reset time.Time
	// PausedUntil is when a 429 pause ends, zero when none.
	PausedUntil time.Time
	// InFlight counts requests sent and not yet answered.
	InFlight int
}

// rateWindow is the worker's view of the current quota window.
type rateWindow struct {
	known     bool
	hasLimit  bool // the limit header came with it: counts are real quotas
	limit     int
	remaining int
	reset     time.Time
	length    time.Duration // the longest time-to-reset seen for this window
}

// adaptiveLimiter paces requests with an x/time/rate token bucket at the
// configured rate, and steers by what the worker says: it holds requests
// while a window's remaining quota is spoken for by requests in flight,
// adopts a lower advertised limit on short windows, and pauses every
// goroutine of the client after a 429 until its retry-after.
type adaptiveLimiter struct {
	clock      Clock
	configured rate.Limit
	perMinute  int
	maxWait    time.Duration
	bucket     *rate.Limiter

	mu          sync.Mutex
	changed     chan struct{} // closed and replaced whenever a waiter may proceed
	waiters     int           // goroutines waiting on changed
	window      rateWindow
	pausedUntil time.Time
	inFlight    int
}

func newAdaptiveLimiter(perMinute int, maxWait time.Duration, clock Clock) *adaptiveLimiter {
	r := rate.Limit(float64(perMinute) / 60)
	return &adaptiveLimiter{
		clock:      clock,
		configured: r,
		perMinute:  perMinute,
		maxWait:    maxWait,
		bucket:     rate.NewLimiter(r, defaultBurst),
		changed:    make(chan struct{}),
	}
}

// acquire waits until a request may leave, then counts it in flight. The
// returned release must be called once with the response (nil on error).
// A wait that cannot end before ctx's deadline, or that would be longer than
// the limiter's maximum wait, fails at once with a *RateLimitError.
func (l *adaptiveLimiter) acquire(ctx context.Context) (release func(*http.Response), err error) {
	for {
		l.mu.Lock()
		now := l.clock.Now()
		var until time.Time
		switch {
		case now.Before(l.pausedUntil):
			until = l.pausedUntil
		case l.windowFull(now):
			until = l.window.reset
		default:
			res := l.bucket.ReserveN(now, 1)
			delay := res.DelayFrom(now)
			if err := l.checkWait(ctx, now, delay); err != nil {
				res.CancelAt(now)
				l.mu.Unlock()
				return nil, err
			}
			l.inFlight++
			l.mu.Unlock()
			if err := sleep(ctx, l.clock, delay); err != nil {
				l.release(nil)
				return nil, err
			}
			return l.release, nil
		}
		if err := l.checkWait(ctx, now, until.Sub(now)); err != nil {
			l.mu.Unlock()
			return nil, err
		}
		changed := l.changed
		l.waiters++
		l.mu.Unlock()
		var err error
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-l.clock.After(until.Sub(now)):
		case <-changed:
		}
		l.mu.Lock()
		l.waiters--
		l.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
}

// windowFull reports whether the current window's remaining quota is used up
// by requests already in flight. Without a limit header the counts may be the
// deployed worker's fixed values, so only an explicit zero stops requests.
func (l *adaptiveLimiter) windowFull(now time.Time) bool {
	w := l.window
	if !w.known || !now.Before(w.reset) {
		return false
	}
	if w.remaining <= 0 {
		return true
	}
	return w.hasLimit && l.inFlight >= w.remaining
}

// checkWait refuses a wait that ends past ctx's deadline or the maximum.
// Called with l.mu held.
func (l *adaptiveLimiter) checkWait(ctx context.Context, now time.Time, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	why := ""
	// Deadlines are wall-clock time whatever the limiter's clock says.
	if deadline, ok := ctx.Deadline(); ok && d > time.Until(deadline) {
		why = "the context deadline"
	} else if l.maxWait > 0 && d > l.maxWait {
		why = "the maximum wait of " + l.maxWait.String()
	}
	if why == "" {
		return nil
	}
	e := newRateLimitError(&APIError{
		StatusCode: http.StatusTooManyRequests,
		Code:       "client_rate_limited",
		Message:    fmt.Sprintf("rate limit quota frees up in %s, after %s; request not sent", d.Round(time.Millisecond), why),
		RetryAfter: d,
	}, l.snapshotLocked(now))
	return e
}

// release ends one request's flight and learns from its response headers.
func (l *adaptiveLimiter) release(resp *http.Response) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	if resp != nil {
		l.observeLocked(resp.StatusCode, resp.Header, l.clock.Now())
	}
	l.wakeLocked()
}

// wakeLocked lets every waiting goroutine look at the state again.
func (l *adaptiveLimiter) wakeLocked() {
	if l.waiters > 0 {
		close(l.changed)
		l.changed = make(chan struct{})
	}
}

// observe learns from one response's status and headers.
func (l *adaptiveLimiter) observe(status int, h http.Header) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.observeLocked(status, h, l.clock.Now())
	l.wakeLocked()
}

func (l *adaptiveLimiter) observeLocked(status int, h http.Header, now time.Time) {
	info, ok := parseRateHeaders(h, now)
	if ok && info.remaining >= 0 && !info.reset.IsZero() {
		l.updateWindow(info, now)
	}
	if status == http.StatusTooManyRequests {
		pause, ok := parseRetryAfter(h.Get("Retry-After"), now)
		if !ok && !info.reset.IsZero() {
			pause = info.reset.Sub(now)
		}
		if pause <= 0 {
			pause = time.Second
		}
		if until := now.Add(pause); until.After(l.pausedUntil) {
			l.pausedUntil = until
		}
	}
}

// updateWindow folds one response's quota into the window. Responses arrive
// out of order, so within a window the lowest remaining count wins; a reset
// clearly later than the current one starts a new window.
func (l *adaptiveLimiter) updateWindow(info rateInfo, now time.Time) {
	w := &l.window
	untilReset := info.reset.Sub(now)
	tolerance := min(max(untilReset/4, 10*time.Millisecond), 2*time.Second)
	switch {
	case !w.known || !now.Before(w.reset) || info.reset.After(w.reset.Add(tolerance)):
		*w = rateWindow{known: true, remaining: info.remaining, reset: info.reset, length: untilReset}
	case info.reset.Before(w.reset.Add(-tolerance)):
		return // a late answer from a window already over
	default:
		w.remaining = min(w.remaining, info.remaining)
		w.length = max(w.length, untilReset)
	}
	w.hasLimit = info.limit > 0
	w.limit = info.limit
	l.adoptLimit(now)
}

// adoptLimit paces at an advertised limit lower than the configured rate,
// when the window is short enough for a steady pace to make sense.
func (l *adaptiveLimiter) adoptLimit(now time.Time) {
	target := l.configured
	w := l.window
	if w.hasLimit && w.length > 0 && w.length <= pacingHorizon {
		// Window length is at least what we saw; round up to whole
		// seconds when the headers only carry seconds.
		advertised := rate.Limit(float64(w.limit) / w.length.Seconds())
		if advertised < target {
			target = advertised
		}
	}
	if l.bucket.Limit() != target {
		l.bucket.SetLimitAt(now, target)
	}
}

// snapshot returns the limiter's state.
func (l *adaptiveLimiter) snapshot() LimiterSnapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snapshotLocked(l.clock.Now())
}

func (l *adaptiveLimiter) snapshotLocked(now time.Time) LimiterSnapshot {
	s := LimiterSnapshot{
		ConfiguredPerMinute: l.perMinute,
		PerSecond:           float64(l.bucket.Limit()),
		AdvertisedLimit:     -1,
		Remaining:           -1,
		InFlight:            l.inFlight,
	}
	if l.window.known && now.Before(l.window.reset) {
		s.Remaining = l.window.remaining
		s.Reset = l.window.reset
		if l.window.hasLimit {
			s.AdvertisedLimit = l.window.limit
		}
	}
	if now.Before(l.pausedUntil) {
		s.PausedUntil = l.pausedUntil
	}
	return s
}

// rateInfo is what one response's rate-limit headers say; counts are -1 and
// reset zero when absent.
type rateInfo struct {
	limit, remaining int
	reset            time.Time
}

// parseRateHeaders reads x-ratelimit-limit/remaining/reset or their
// unprefixed ratelimit-* forms. A reset above 10^9 is epoch seconds, else
// seconds from now (fractions accepted). It runs on every response, so it
// allocates nothing, whether the headers are there or not.
func parseRateHeaders(h http.Header, now time.Time) (rateInfo, bool) {
	info := rateInfo{limit: -1, remaining: -1}
	found := false
	if n, ok := headerCount(h, "X-Ratelimit-Limit", "Ratelimit-Limit"); ok {
		info.limit, found = n, true
	}
	if n, ok := headerCount(h, "X-Ratelimit-Remaining", "Ratelimit-Remaining"); ok {
		info.remaining, found = n, true
	}
	if v := headerValue(h, "X-Ratelimit-Reset", "Ratelimit-Reset"); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && !math.IsInf(f, 0) {
			if f > 1e9 {
				sec, frac := math.Modf(f)
				info.reset = time.Unix(int64(sec), int64(frac*1e9))
			} else {
				info.reset = now.Add(time.Duration(f * float64(time.Second)))
			}
			found = true
		}
	}
	return info, found
}

// headerValue is the first value of the canonical key prefixed, else of
// plain, trimmed: a direct map lookup, no canonicalisation.
func headerValue(h http.Header, prefixed, plain string) string {
	if v := h[prefixed]; len(v) > 0 {
		return strings.TrimSpace(v[0])
	}
	if v := h[plain]; len(v) > 0 {
		return strings.TrimSpace(v[0])
	}
	return ""
}

// headerCount reads a non-negative count; a missing or malformed one is
// skipped without building an error.
func headerCount(h http.Header, prefixed, plain string) (int, bool) {
	v := headerValue(h, prefixed, plain)
	if v == "" || len(v) > 18 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// parseRetryAfter reads a Retry-After value: seconds (fractions accepted) or
// an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 0 || math.IsNaN(f) || f > 1e7 {
			return 0, false
		}
		return time.Duration(f * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
