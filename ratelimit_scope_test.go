package sheen

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Tests of 429s scoped to one user, project or version (the worker's build
// limits, spec §2): they run in synctest bubbles, where the limiter's
// system clock is fake and "no time passed" is exact.

const (
	buildOK   = `{"success":true,"buildId":"b1","jobId":"j1","projectId":"p","status":"queued"}`
	balanceOK = `{"balance":{"welcomeBonus":0,"dailyGift":0,"paid":60,"total":60},"usage":{"todayUsed":0,"lifetimeUsed":0},"dailyResetAt":"2026-01-01T00:00:00Z"}`
)

// scopeWorker answers as the worker does, refusing the requests that
// refuse says to with a 429 carrying header; it notes when each request
// arrived, by "route id" (the project for updates, the user otherwise, the
// version for rebuilds).
type scopeWorker struct {
	mu     sync.Mutex
	begin  time.Time
	sent   map[string][]time.Duration
	refuse func(key string) http.Header // nil: answer normally
}

func newScopeWorker(refuse func(string) http.Header) *scopeWorker {
	return &scopeWorker{begin: time.Now(), sent: map[string][]time.Duration{}, refuse: refuse}
}

func (w *scopeWorker) RoundTrip(r *http.Request) (*http.Response, error) {
	var b struct {
		UserID    string `json:"userId"`
		ProjectID string `json:"projectId"`
	}
	if r.Body != nil {
		raw, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(raw, &b)
	}
	path := strings.TrimPrefix(r.URL.Path, "/base")
	var key, body string
	switch {
	case path == "/v1/update-project":
		key, body = "update "+b.ProjectID, buildOK
	case path == "/v1/create-preview-for-new-project":
		key, body = "create "+b.UserID, buildOK
	case strings.HasSuffix(path, "/rebuild"):
		key, body = "rebuild "+strings.Split(path, "/")[3], `{"success":true,"jobId":"j1","versionId":"v"}`
	case strings.HasPrefix(path, "/v1/billing/balance/"):
		key, body = "balance "+strings.TrimPrefix(path, "/v1/billing/balance/"), balanceOK
	default:
		key, body = "other "+path, `{}`
	}
	w.mu.Lock()
	w.sent[key] = append(w.sent[key], time.Since(w.begin))
	w.mu.Unlock()
	if h := w.refuse(key); h != nil {
		resp := jsonResponse(r, http.StatusTooManyRequests, `{"success":false,"error":"project_update_limit","message":"50 updates per hour for this project"}`)
		for k, v := range h {
			resp.Header[k] = v
		}
		return resp, nil
	}
	return jsonResponse(r, http.StatusOK, body), nil
}

// at is when the requests of key arrived, from the worker's start.
func (w *scopeWorker) at(key string) []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.sent[key]...)
}

func retryAfter(seconds int) http.Header {
	return http.Header{"Retry-After": {strconv.Itoa(seconds)}}
}

// The audit's case: one project's update is refused for 30 minutes. Every
// other call of the shared client goes at once: other users' balances, the
// same user's other project, other users' updates, the same user's new
// project. Only the same project's next update is held, and as its wait is
// longer than the maximum it is refused at once, unsent.
func TestScoped429HoldsOnlyItsProject(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newScopeWorker(func(key string) http.Header {
			if key == "update projA" {
				return retryAfter(1800)
			}
			return nil
		})
		c := newTestClient(t, w) // MaxWait: the default 5 minutes
		ctx := context.Background()

		_, err := c.Builds.UpdateProject(ctx, UpdateProjectRequest{UserID: "userA", ProjectID: "projA", Prompt: "p"})
		var rl *RateLimitError
		if !errors.As(err, &rl) || rl.RetryAfter != 1800*time.Second || rl.Code == "client_rate_limited" {
			t.Fatalf("the refused update: want the worker's *RateLimitError, got %v", err)
		}

		begin := time.Now()
		for _, u := range []string{"userB", "userA"} {
			if _, err := c.Billing.Balance(ctx, u); err != nil {
				t.Fatalf("Balance(%s) after another project's 429: %v", u, err)
			}
		}
		for _, req := range []UpdateProjectRequest{
			{UserID: "userA", ProjectID: "projB", Prompt: "p"},
			{UserID: "userC", ProjectID: "projC", Prompt: "p"},
		} {
			if _, err := c.Builds.UpdateProject(ctx, req); err != nil {
				t.Fatalf("UpdateProject(%s) after another project's 429: %v", req.ProjectID, err)
			}
		}
		if _, err := c.Builds.CreatePreview(ctx, CreatePreviewRequest{UserID: "userA", Prompt: "p"}); err != nil {
			t.Fatalf("CreatePreview after a project's 429: %v", err)
		}
		if d := time.Since(begin); d >= time.Second { // the pace's milliseconds, not the pause
			t.Fatalf("the other calls waited %s for another project's 429", d)
		}
		if s := c.RateLimit(); !s.PausedUntil.IsZero() {
			t.Fatalf("the client is paused as a whole: %+v", s)
		}

		begin = time.Now()
		_, err = c.Builds.UpdateProject(ctx, UpdateProjectRequest{UserID: "userA", ProjectID: "projA", Prompt: "again"})
		if !errors.As(err, &rl) || rl.Code != "client_rate_limited" || rl.RetryAfter < 1799*time.Second || rl.RetryAfter > 1800*time.Second {
			t.Fatalf("the same project's next update: want the client's own *RateLimitError, got %v", err)
		}
		if strings.Contains(err.Error(), "projA") || !strings.Contains(err.Error(), "this project's updates") {
			t.Errorf("refusal message: %q", err)
		}
		if n := len(w.at("update projA")); n != 1 {
			t.Fatalf("projA's updates were sent %d times, want 1 (the refusal is unsent)", n)
		}
		if time.Since(begin) != 0 {
			t.Fatal("the refusal waited")
		}
	})
}

// A scoped wait that fits the maximum is waited out: the same project's
// next update leaves when the 429's Retry-After ends, together with the
// refused call's own retry, while the rest of the client goes on at once.
func TestScoped429SameProjectWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var refused bool
		w := newScopeWorker(func(key string) http.Header {
			if key == "update projA" && !refused {
				refused = true
				return retryAfter(30)
			}
			return nil
		})
		c := newTestClient(t, w, WithRetry(RetryConfig{BackoffBase: time.Millisecond, MaxWait: time.Minute}))
		ctx := context.Background()
		var wg sync.WaitGroup
		errs := make([]error, 2)
		wg.Go(func() {
			_, errs[0] = c.Builds.UpdateProject(ctx, UpdateProjectRequest{UserID: "userA", ProjectID: "projA", Prompt: "p"})
		})
		synctest.Wait() // refused; its retry waits the Retry-After
		time.Sleep(time.Second)
		wg.Go(func() {
			_, errs[1] = c.Builds.UpdateProject(ctx, UpdateProjectRequest{UserID: "userA", ProjectID: "projA", Prompt: "again"})
		})
		if _, err := c.Billing.Balance(ctx, "userB"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Builds.UpdateProject(ctx, UpdateProjectRequest{UserID: "userB", ProjectID: "projB", Prompt: "p"}); err != nil {
			t.Fatal(err)
		}
		if got := w.at("balance userB"); len(got) != 1 || got[0] != time.Second {
			t.Errorf("userB's balance sent at %v, want [1s]: not held by projA's 429", got)
		}
		if got := w.at("update projB"); len(got) != 1 || got[0] != time.Second {
			t.Errorf("projB's update sent at %v, want [1s]: not held by projA's 429", got)
		}
		synctest.Wait()
		if got := w.at("update projA"); len(got) != 1 {
			t.Fatalf("projA's updates sent at %v during its pause, want only the first", got)
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("update %d of projA: %v", i+1, err)
			}
		}
		if got := w.at("update projA"); len(got) != 3 || got[0] != 0 || got[1] != 30*time.Second || got[2] != 30*time.Second {
			t.Errorf("projA's updates sent at %v, want [0s 30s 30s]", got)
		}
	})
}

// A 429 whose headers say the shared window is spent, or a 429 on a route
// that does not start a build, still pauses the whole client.
func TestScoped429OfTheWindowPausesEveryone(t *testing.T) {
	window := http.Header{
		"Retry-After":           {"20"},
		"X-Ratelimit-Limit":     {"60"},
		"X-Ratelimit-Remaining": {"0"},
		"X-Ratelimit-Reset":     {"20"},
	}
	for _, tc := range []struct {
		name, refused string
		header        http.Header
		call          func(*WorkerClient) error
	}{
		{"update with the window spent", "update projA", window, func(c *WorkerClient) error {
			_, err := c.Builds.UpdateProject(context.Background(), UpdateProjectRequest{UserID: "userA", ProjectID: "projA", Prompt: "p"})
			return err
		}},
		{"another route", "other /v1/x", retryAfter(20), func(c *WorkerClient) error {
			return c.Do(context.Background(), http.MethodPost, "/v1/x", map[string]string{"userId": "userA"}, nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newScopeWorker(func(key string) http.Header {
					if key == tc.refused {
						return tc.header
					}
					return nil
				})
				c := newTestClient(t, w, WithRetry(RetryConfig{BackoffBase: time.Millisecond, MaxWait: time.Second, MaxAttempts: 1}))
				var rl *RateLimitError
				if err := tc.call(c); !errors.As(err, &rl) {
					t.Fatalf("want a *RateLimitError, got %v", err)
				}
				if s := c.RateLimit(); time.Until(s.PausedUntil) != 20*time.Second {
					t.Fatalf("the client is not paused as a whole: %+v", s)
				}
				_, err := c.Billing.Balance(context.Background(), "userB")
				if !errors.As(err, &rl) || rl.Code != "client_rate_limited" {
					t.Fatalf("another user's balance during the pause: want the client's refusal, got %v", err)
				}
				if got := w.at("balance userB"); len(got) != 0 {
					t.Fatalf("another user's balance was sent during the pause: %v", got)
				}
			})
		})
	}
}

// Rebuilds are scoped to their version, and Do to a build route is scoped
// as the service call is.
func TestScoped429RebuildAndDo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newScopeWorker(func(key string) http.Header {
			if key == "rebuild v1" || key == "create userA" {
				return retryAfter(600)
			}
			return nil
		})
		c := newTestClient(t, w)
		ctx := context.Background()
		var rl *RateLimitError
		if _, err := c.Builds.Rebuild(ctx, "v1"); !errors.As(err, &rl) {
			t.Fatalf("rebuild v1: %v", err)
		}
		if _, err := c.Builds.Rebuild(ctx, "v2"); err != nil {
			t.Fatalf("rebuild v2 after v1's 429: %v", err)
		}
		if _, err := c.Builds.Rebuild(ctx, "v1"); !errors.As(err, &rl) || rl.Code != "client_rate_limited" {
			t.Fatalf("rebuild v1 again: want the client's refusal, got %v", err)
		}
		body := map[string]string{"userId": "userA", "prompt": "p"}
		if err := c.Do(ctx, http.MethodPost, "/v1/create-preview-for-new-project", body, nil); !errors.As(err, &rl) {
			t.Fatalf("Do create-preview: %v", err)
		}
		if err := c.Do(ctx, http.MethodPost, "/v1/create-preview-for-new-project", map[string]string{"userId": "userB", "prompt": "p"}, nil); err != nil {
			t.Fatalf("Do create-preview for another user: %v", err)
		}
		if _, err := c.Builds.CreatePreview(ctx, CreatePreviewRequest{UserID: "userA", Prompt: "p"}); !errors.As(err, &rl) || rl.Code != "client_rate_limited" {
			t.Fatalf("CreatePreview for the user Do's 429 concerned: want the client's refusal, got %v", err)
		}
		for key, want := range map[string]int{"rebuild v1": 1, "rebuild v2": 1, "create userA": 1, "create userB": 1} {
			if n := len(w.at(key)); n != want {
				t.Errorf("%s sent %d times, want %d", key, n, want)
			}
		}
		if d := time.Since(w.begin); d >= time.Second { // the pace's milliseconds, not a pause
			t.Errorf("the calls waited %s", d)
		}
	})
}

// With a shared limiter, a scoped 429 reaches it without a pause (it would
// pause every replica), and the scope is still held by the client.
func TestScoped429SharedLimiterHearsNoPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newScopeWorker(func(key string) http.Header {
			if key == "update projA" {
				return retryAfter(1800)
			}
			return nil
		})
		lim := &fakeSharedLimiter{}
		c := newTestClient(t, w, WithSharedLimiter(lim))
		ctx := context.Background()
		var rl *RateLimitError
		if _, err := c.Builds.UpdateProject(ctx, UpdateProjectRequest{UserID: "userA", ProjectID: "projA", Prompt: "p"}); !errors.As(err, &rl) {
			t.Fatal(err)
		}
		if len(lim.answers) != 1 || !lim.answers[0].Answered || !lim.answers[0].PauseUntil.IsZero() {
			t.Fatalf("the shared limiter heard %+v, want one answer without a pause", lim.answers)
		}
		if _, err := c.Builds.UpdateProject(ctx, UpdateProjectRequest{UserID: "userA", ProjectID: "projA", Prompt: "p"}); !errors.As(err, &rl) || rl.Code != "client_rate_limited" {
			t.Fatalf("the same project's next update: want the client's refusal, got %v", err)
		}
		if lim.acquired != 1 {
			t.Fatalf("the shared limiter was asked %d times, want 1: the refusal comes first", lim.acquired)
		}
	})
}

// Scoped pauses are bounded: past maxScopedPauses the least recently used
// goes, and every pause is dropped when it ends.
func TestScopedPausesStayBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newAdaptiveLimiter(6_000_000, time.Hour, systemClock{})
		l.observe(http.StatusOK, http.Header{})
		n := maxScopedPauses + 100
		for i := range n {
			release, err := l.acquireScoped(context.Background(), RouteUpdateProject+"\x00p"+strconv.Itoa(i))
			if err != nil {
				t.Fatal(err)
			}
			release(&http.Response{StatusCode: http.StatusTooManyRequests, Header: retryAfter(60)})
		}
		if got := l.scoped.Len(); got != maxScopedPauses {
			t.Fatalf("%d scoped pauses held, want at most %d", got, maxScopedPauses)
		}
		if _, held := l.scoped.Get(RouteUpdateProject + "\x00p0"); held {
			t.Error("the least recently used pause was kept")
		}
		if _, held := l.scoped.Get(RouteUpdateProject + "\x00p" + strconv.Itoa(n-1)); !held {
			t.Error("the latest pause was dropped")
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if got := l.scoped.Len(); got != 0 {
			t.Fatalf("%d scoped pauses held after they all ended", got)
		}
	})
}

// A scope still paused refuses a wait past the caller's deadline at once,
// and a wait that fits ends when the pause does, leaving unscoped requests
// untouched meanwhile.
func TestLimiterScopedPauseWaitsOutsideTheLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newAdaptiveLimiter(60_000, time.Hour, systemClock{})
		l.observe(http.StatusOK, http.Header{})
		scope := RouteCreatePreview + "\x00userA"
		release, err := l.acquireScoped(context.Background(), scope)
		if err != nil {
			t.Fatal(err)
		}
		release(&http.Response{StatusCode: http.StatusTooManyRequests, Header: retryAfter(10)})

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var rl *RateLimitError
		if _, err := l.acquireScoped(ctx, scope); !errors.As(err, &rl) || rl.RetryAfter != 10*time.Second {
			t.Fatalf("a wait past the deadline: want a *RateLimitError, got %v", err)
		}
		held := start2(l, scope)
		synctest.Wait()
		others := startN(l, 3)
		if n := len(sent(t, others)); n != 3 {
			t.Fatalf("%d of 3 unscoped requests left while a scope waits, want 3", n)
		}
		releaseAll(others, noAnswer)
		time.Sleep(10*time.Second - time.Millisecond)
		if held.left() {
			t.Fatal("the scoped request left before its pause ended")
		}
		time.Sleep(time.Millisecond)
		if out := sent(t, []*acquireCall{held}); len(out) != 1 {
			t.Fatal("the scoped request did not leave when its pause ended")
		}
		releaseAll([]*acquireCall{held}, noAnswer)
	})
}

// start2 is start for a scoped request.
func start2(l *adaptiveLimiter, scope string) *acquireCall {
	c := &acquireCall{done: make(chan struct{})}
	go func() {
		c.release, c.err = l.acquireScoped(context.Background(), scope)
		close(c.done)
	}()
	return c
}

func TestLimitScope(t *testing.T) {
	for _, tc := range []struct {
		method, path, body, want string
	}{
		{"POST", "/v1/update-project", `{"userId":"u1","projectId":"p1","prompt":"x"}`, RouteUpdateProject + "\x00p1"},
		{"POST", "/v1/create-preview-for-new-project", `{"prompt":"x","userId":"u1","projectId":"p1"}`, RouteCreatePreview + "\x00u1"},
		{"POST", "/v1/versions/v%2F1/rebuild", ``, RouteRebuild + "\x00v%2F1"},
		{"POST", "/v1/update-project", `not json`, RouteUpdateProject + "\x00"},
		{"POST", "/v1/update-project", `{"projectId":7}`, RouteUpdateProject + "\x00"},
		{"GET", "/v1/update-project", ``, ""},
		{"POST", "/v1/versions/rollback", `{"userId":"u1"}`, ""},
		{"POST", "/v1/billing/check-sufficient", `{"userId":"u1"}`, ""},
		{"POST", "/v1/versions/a/b/rebuild", ``, ""},
		{"POST", "/x/v1/update-project", `{"projectId":"p1"}`, ""},
	} {
		if got := limitScope(tc.method, tc.path, []byte(tc.body)); got != tc.want {
			t.Errorf("limitScope(%s %s, %s) = %q, want %q", tc.method, tc.path, tc.body, got, tc.want)
		}
	}
}
