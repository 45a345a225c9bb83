package sheen

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// defaultBurst lets a few requests leave at once at the configured pace,
// once the worker has answered: before that, requests leave one at a time.
const defaultBurst = 4

// probeHold is how long a probe (the one request allowed out while the
// worker's window is unknown) holds back the others before another may leave.
// It only matters when answers are slow.
const probeHold = time.Second

// LimiterSnapshot is the rate limiter's state at one moment.
type LimiterSnapshot struct {
	// ConfiguredPerMinute is the rate set with WithRateLimit.
	ConfiguredPerMinute int
	// PerSecond is the client's own pace: the configured rate per second.
	// The worker's windows are followed through Remaining and Reset, not
	// turned into a pace.
	PerSecond float64
	// AdvertisedLimit is the last x-ratelimit-limit seen for the current
	// window, -1 when none.
	AdvertisedLimit int
	// Remaining is the lowest x-ratelimit-remaining seen in the current
	// window, -1 when unknown.
	Remaining int
	// Reset is when the current window ends, zero when unknown.
	Reset time.Time
	// PausedUntil is when the pause of the whole client after a 429 ends,
	// zero when none. A 429 that concerns one user's builds, one project's
	// updates or one version's rebuilds holds only later requests of the
	// same kind and is not shown here.
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
	reset     time.Time     // the earliest reset the answers gave
	unit      time.Duration // the coarsest precision they gave it with
}

// end is when the window is surely over: the reset, plus the precision it
// was given with. A value rounded to whole seconds may be up to a second
// early; a request sent then would still count in the window that is over.
func (w *rateWindow) end() time.Time { return w.reset.Add(w.unit) }

// adaptiveLimiter mirrors the worker's fixed window instead of inferring a
// pace from it. Rules, checked for each request just before it leaves:
//
//   - a 429 on a build-starting route that does not say the window is spent
//     is the worker's limit on one user's builds or one project's updates
//     (limitScope): only later requests of that route for that user,
//     project or version wait for its Retry-After, outside the line;
//   - after any other 429, nobody leaves until its Retry-After (else the
//     window's reset) has passed;
//   - while the window is unknown (no answer yet, or the window the worker
//     described has ended), one request at a time leaves as a probe; its
//     answer describes the window;
//   - within a window that came with a limit, requests in flight never
//     outnumber the lowest remaining count the worker gave for it: every
//     answer, a lower limit or a 429 re-plans the window for everyone;
//   - windows without a limit (the deployed worker's fixed headers on routes
//     it does not limit) stop requests only when they say nothing remains;
//   - on top, an x/time/rate token bucket keeps the configured pace.
//
// Waiting goroutines queue in order; only the first in line watches the
// window and the clock, so a change wakes one goroutine, not all of them.
type adaptiveLimiter struct {
	clock     Clock
	perMinute int
	maxWait   time.Duration
	bucket    *rate.Limiter
	// shared, when set (WithSharedLimiter), lets requests leave instead,
	// while it answers (shared.go).
	shared SharedLimiter

	// release and releaseProbe end a request's flight; made once so that
	// acquire allocates nothing when nobody waits.
	releasePlain, releaseProbe func(*http.Response)

	// scoped holds the pauses of scoped 429s, each until its end, keyed by
	// limitScope; bounded (maxScopedPauses, least recently used out first)
	// and emptied as they end. scopeMu makes extending one atomic.
	scoped  *ttlCache[time.Time]
	scopeMu sync.Mutex

	mu          sync.Mutex
	queue       list.List // of *limitWaiter, first in line at the front
	window      rateWindow
	pausedUntil time.Time
	inFlight    int
	answered    bool      // an answer has come back: the cold start is over
	probing     int       // probes in flight
	probeSent   time.Time // when the last probe left
}

// limitWaiter is one goroutine waiting in line.
type limitWaiter struct {
	kick chan struct{} // buffered: "look again" (your turn, or the state changed)
}

func newAdaptiveLimiter(perMinute int, maxWait time.Duration, clock Clock) *adaptiveLimiter {
	l := &adaptiveLimiter{
		clock:     clock,
		perMinute: perMinute,
		maxWait:   maxWait,
		bucket:    rate.NewLimiter(rate.Limit(float64(perMinute)/60), defaultBurst),
		scoped:    newTTLCache[time.Time](clock, maxScopedPauses),
	}
	l.releasePlain = func(resp *http.Response) { l.release(resp, false) }
	l.releaseProbe = func(resp *http.Response) { l.release(resp, true) }
	return l
}

// gateState is what the window and a 429 pause say about sending now.
type gateState struct {
	open  bool
	probe bool      // the request leaving now is a probe
	until time.Time // when to look again if closed (zero: on a change only)
	hard  bool      // closed until then for certain: waits past it are refused
}

// gate applies the rules of the worker's window. Called with l.mu held.
func (l *adaptiveLimiter) gate(now time.Time) gateState {
	if now.Before(l.pausedUntil) {
		return gateState{until: l.pausedUntil, hard: true}
	}
	w := &l.window
	if w.known && now.Before(w.end()) {
		switch {
		case w.remaining <= 0:
			return gateState{until: w.end(), hard: true}
		case w.hasLimit && l.inFlight >= w.remaining:
			// The rest is spoken for by requests in flight: wait for an
			// answer, or for the window to end.
			return gateState{until: w.end()}
		}
		return gateState{open: true}
	}
	if !l.answered || (w.known && w.hasLimit) {
		// Cold start, or the window the worker described has ended: its
		// successor is unknown until a probe's answer describes it.
		if l.probing == 0 {
			return gateState{open: true, probe: true}
		}
		if hold := l.probeSent.Add(probeHold); now.Before(hold) {
			return gateState{until: hold}
		}
		return gateState{open: true, probe: true}
	}
	return gateState{open: true}
}

// acquire waits until a request may leave, then counts it in flight. The
// returned release must be called once with the response (nil on error).
// A wait that cannot end before ctx's deadline, or that would be longer than
// the limiter's maximum wait, fails at once with a *RateLimitError.
func (l *adaptiveLimiter) acquire(ctx context.Context) (release func(*http.Response), err error) {
	if l.shared != nil {
		if release, err := l.acquireShared(ctx); !errors.Is(err, ErrSharedUnavailable) {
			return release, err
		}
	}
	l.mu.Lock()
	now := l.clock.Now()
	if l.queue.Len() == 0 {
		if release, _, err := l.tryLocked(ctx, now); release != nil || err != nil {
			l.mu.Unlock()
			return release, err
		}
	} else if g := l.gate(now); g.hard {
		// Refuse at once what the first in line is sure to wait.
		if err := l.checkWait(ctx, now, g.until.Sub(now)); err != nil {
			l.mu.Unlock()
			return nil, err
		}
	}
	w := &limitWaiter{kick: make(chan struct{}, 1)}
	elem := l.queue.PushBack(w)
	l.mu.Unlock()

	for {
		l.mu.Lock()
		now := l.clock.Now()
		var wait time.Duration
		if l.queue.Front() == elem {
			var release func(*http.Response)
			release, wait, err = l.tryLocked(ctx, now)
			if release != nil || err != nil {
				l.leaveLocked(elem)
				l.mu.Unlock()
				return release, err
			}
		}
		l.mu.Unlock()

		// Not first in line (wait 0: until kicked), or first and waiting
		// for the window, a pause, a probe or the pace.
		var timer <-chan time.Time
		if wait > 0 {
			timer = l.clock.After(wait)
		}
		select {
		case <-ctx.Done():
			l.mu.Lock()
			l.leaveLocked(elem)
			l.mu.Unlock()
			return nil, ctx.Err()
		case <-w.kick:
		case <-timer:
		}
	}
}

// maxScopedPauses bounds how many scoped 429 pauses the limiter holds at
// once. When it is full the least recently used goes: that user's or
// project's next request reaches the worker, which refuses it again if its
// limit still holds, and the pause is learnt anew.
const maxScopedPauses = 4096

// scopedRoutes are the routes whose 429s may concern one user, project or
// version only: those that start a build (spec §2: builds per user,
// updates per project; a rebuild starts a build of one version).
var scopedRoutes = [...]string{RouteCreatePreview, RouteUpdateProject, RouteRebuild}

// limitScope names whom a 429 of this request would concern, when it does
// not say the shared window is spent: the route and the user (create
// preview), the project (update project) or the version (rebuild); "" for
// every other request, whose 429s pause the whole client. path is the
// request's escaped path below the base URL, whoever sends it (a service,
// Do, the sheenhttp proxy); the ids come from the JSON body, or the path for
// a rebuild. A body that names no id scopes to the route alone.
func limitScope(method, path string, body []byte) string {
	if method != http.MethodPost {
		return ""
	}
	route := ""
	for _, r := range scopedRoutes {
		if pathMatches(strings.TrimPrefix(r, "POST "), path) {
			route = r
			break
		}
	}
	var id string
	switch route {
	case RouteCreatePreview, RouteUpdateProject:
		var b struct {
			UserID    string `json:"userId"`
			ProjectID string `json:"projectId"`
		}
		_ = json.Unmarshal(body, &b) // fields of the wrong type stay empty
		id = b.UserID
		if route == RouteUpdateProject {
			id = b.ProjectID
		}
	case RouteRebuild:
		id = strings.TrimSuffix(strings.TrimPrefix(path, "/v1/versions/"), "/rebuild")
	default:
		return ""
	}
	return route + "\x00" + id // no route holds a NUL: keys of two routes never meet
}

// scopeSubject is what a scoped pause holds back, for an error message
// (without the id).
func scopeSubject(scope string) string {
	route, _, _ := strings.Cut(scope, "\x00")
	switch route {
	case RouteCreatePreview:
		return "the worker's limit on this user's builds"
	case RouteUpdateProject:
		return "the worker's limit on this project's updates"
	}
	return "the worker's limit on this version's rebuilds"
}

// acquireScoped is acquire for a request of scope (see limitScope; ""
// is acquire itself). While a 429 of the same scope holds, the request
// waits outside the line, so the others go on meanwhile; a wait that cannot
// fit is refused at once with a *RateLimitError, as acquire's are. Its
// release keeps a 429 of the scope that does not say the shared window is
// spent to the scope: the rest of the client, and a shared limiter, learn
// the answer's headers without the pause.
func (l *adaptiveLimiter) acquireScoped(ctx context.Context, scope string) (release func(*http.Response), err error) {
	if scope == "" {
		return l.acquire(ctx)
	}
	for {
		now := l.clock.Now()
		until, ok := l.scoped.Get(scope)
		if !ok || !now.Before(until) {
			break
		}
		d := until.Sub(now)
		l.mu.Lock()
		err := l.refuseWait(ctx, now, d, scopeSubject(scope))
		l.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-l.clock.After(d):
		}
	}
	inner, err := l.acquire(ctx)
	if err != nil {
		return nil, err
	}
	return func(resp *http.Response) { inner(l.scopedAnswer(scope, resp)) }, nil
}

// scopedAnswer is what the rest of the limiter learns from resp, an answer
// to a request of scope: a 429 whose rate-limit headers do not say that
// nothing remains of the window pauses the scope alone, and reaches the
// limiter as an answer without a status (as limiterView does for
// /generate); anything else is passed on.
func (l *adaptiveLimiter) scopedAnswer(scope string, resp *http.Response) *http.Response {
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		return resp
	}
	now := l.clock.Now()
	info, ok := parseRateHeaders(resp.Header, now)
	if ok && info.remaining == 0 {
		return resp // the shared window is spent: everyone waits
	}
	until := pauseAfter429(resp.Header, info, now)
	l.scopeMu.Lock()
	if cur, held := l.scoped.Get(scope); !held || until.After(cur) {
		l.scoped.Set(scope, until, until)
	}
	l.scopeMu.Unlock()
	return &http.Response{Header: resp.Header}
}

// tryLocked lets a request leave if the window and the pace allow it now.
// Otherwise it says how long to wait before looking again (-1: until
// something changes), or refuses a wait that cannot fit. Called with l.mu
// held, by the first in line or when nobody waits.
func (l *adaptiveLimiter) tryLocked(ctx context.Context, now time.Time) (release func(*http.Response), wait time.Duration, err error) {
	g := l.gate(now)
	if !g.open {
		if g.until.IsZero() {
			return nil, -1, nil
		}
		wait = max(g.until.Sub(now), time.Nanosecond)
		if g.hard {
			if err := l.checkWait(ctx, now, wait); err != nil {
				return nil, 0, err
			}
		}
		return nil, wait, nil
	}
	if !l.bucket.AllowN(now, 1) {
		tokens := l.bucket.TokensAt(now)
		wait = time.Duration(math.Ceil((1 - tokens) / float64(l.bucket.Limit()) * float64(time.Second)))
		wait = max(wait, time.Nanosecond)
		if err := l.checkWait(ctx, now, wait); err != nil {
			return nil, 0, err
		}
		return nil, wait, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	l.inFlight++
	if g.probe {
		l.probing++
		l.probeSent = now
		return l.releaseProbe, 0, nil
	}
	return l.releasePlain, 0, nil
}

// leaveLocked takes a waiter out of the line and, if it was first, tells the
// next one it is its turn.
func (l *adaptiveLimiter) leaveLocked(elem *list.Element) {
	first := l.queue.Front() == elem
	l.queue.Remove(elem)
	if first {
		l.kickLocked()
	}
}

// kickLocked tells the first in line to look again.
func (l *adaptiveLimiter) kickLocked() {
	if front := l.queue.Front(); front != nil {
		select {
		case front.Value.(*limitWaiter).kick <- struct{}{}:
		default:
		}
	}
}

// checkWait refuses a wait that ends past ctx's deadline or the maximum.
// Called with l.mu held.
func (l *adaptiveLimiter) checkWait(ctx context.Context, now time.Time, d time.Duration) error {
	return l.refuseWait(ctx, now, d, "rate limit quota")
}

// refuseWait is checkWait for a wait on what (named in the error). Called
// with l.mu held.
func (l *adaptiveLimiter) refuseWait(ctx context.Context, now time.Time, d time.Duration, what string) error {
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
		Message:    fmt.Sprintf("%s frees up in %s, after %s; request not sent", what, d.Round(time.Millisecond), why),
		RetryAfter: d,
	}, l.snapshotLocked(now))
	return e
}

// release ends one request's flight and learns from its response headers.
func (l *adaptiveLimiter) release(resp *http.Response, probe bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	if probe {
		l.probing--
	}
	now := l.clock.Now()
	if resp != nil {
		l.observeLocked(resp.StatusCode, resp.Header, now)
	} else if w := &l.window; w.known && w.hasLimit && now.Before(w.end()) && w.remaining > 0 {
		// No answer: the worker may have counted the request all the same.
		w.remaining--
	}
	l.kickLocked()
}

// observe learns from one response's status and headers.
func (l *adaptiveLimiter) observe(status int, h http.Header) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.observeLocked(status, h, l.clock.Now())
	l.kickLocked()
}

func (l *adaptiveLimiter) observeLocked(status int, h http.Header, now time.Time) {
	l.answered = true
	info, ok := parseRateHeaders(h, now)
	if ok && info.remaining >= 0 && info.reset.Add(info.resetUnit).After(now) {
		l.updateWindow(info, now)
	} else if w := &l.window; w.known && !now.Before(w.end()) {
		// The window ended and this answer says nothing of the next one:
		// the route is not limited. Stop probing.
		*w = rateWindow{}
	}
	if status != http.StatusTooManyRequests {
		return
	}
	if until := pauseAfter429(h, info, now); until.After(l.pausedUntil) {
		l.pausedUntil = until
	}
}

// pauseAfter429 is when requests may leave again after a 429 with headers
// h (whose rate-limit headers say info).
func pauseAfter429(h http.Header, info rateInfo, now time.Time) time.Time {
	if v := h.Get("Retry-After"); v != "" {
		if d, ok := parseRetryAfter(v, now); ok {
			return now.Add(d) // what the worker asks for, exactly
		}
	}
	if !info.reset.IsZero() {
		return info.reset.Add(info.resetUnit)
	}
	return now.Add(time.Second) // nothing said: a short pause
}

// updateWindow folds one response's quota into the window.
//
// A reset given in seconds from now is read against the time the answer
// arrived, so each answer puts the reset a little late, by its own delay;
// the earliest estimate is the best. Answers arrive out of order and late,
// so while a window is in force an answer can only narrow it (lower
// remaining count, earlier reset): a late answer with a higher count, read
// as a new window, would let requests out that the worker refuses. An answer
// whose reset is clearly before the window's is a late one from the window
// before, and says nothing. Once the window has ended, the first answer
// clearly after it describes the next one.
func (l *adaptiveLimiter) updateWindow(info rateInfo, now time.Time) {
	w := &l.window
	hasLimit := info.limit >= 0
	tolerance := min(max(info.reset.Sub(now)/4, 10*time.Millisecond), 2*time.Second)
	fresh := rateWindow{known: true, hasLimit: hasLimit, limit: info.limit, remaining: info.remaining, reset: info.reset, unit: info.resetUnit}
	if !w.known {
		*w = fresh
		return
	}
	if !now.Before(w.end()) {
		if w.hasLimit && !info.reset.After(w.reset.Add(tolerance)) {
			return // a late answer from the window that ended
		}
		*w = fresh
		return
	}
	switch {
	case w.hasLimit && !hasLimit && info.remaining > 0:
		// Fixed headers of a route that is not limited: they say nothing
		// about the limited window in force.
		return
	case hasLimit && !w.hasLimit:
		*w = fresh
		return
	case info.reset.Before(w.reset.Add(-tolerance)):
		return // a late answer from the window before
	case hasLimit && info.limit > w.limit:
		// The worker raised its limit: its count is the news.
		w.limit, w.remaining = info.limit, info.remaining
	default:
		w.remaining = min(w.remaining, info.remaining)
		if hasLimit {
			w.limit = info.limit
		}
	}
	if info.reset.Before(w.reset) {
		w.reset = info.reset
	}
	w.unit = max(w.unit, info.resetUnit)
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
	if l.window.known && now.Before(l.window.end()) {
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
	resetUnit        time.Duration // the precision of the reset value: 1 s for whole seconds
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
			info.resetUnit = valueUnit(v)
			found = true
		}
	}
	return info, found
}

// valueUnit is the unit of the last digit of a number of seconds (1 s for
// whole seconds, 1 ms for "0.347"): how early a value rounded to it may be.
func valueUnit(v string) time.Duration {
	dot := strings.IndexByte(v, '.')
	if dot < 0 || strings.ContainsAny(v, "eE ") {
		return time.Second
	}
	unit := time.Second
	for range min(len(v)-dot-1, 9) {
		unit /= 10
	}
	return unit
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
