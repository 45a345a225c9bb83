package sheenredis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/redistest"
)

// replicas makes n Limiters on one quota, as n replicas would, on clock.
func replicas(t *testing.T, n int, clock sheen.Clock) []*Limiter {
	t.Helper()
	srv := redistest.Shared(t)
	rdb := srv.Client(t)
	prefix := srv.Prefix(t)
	var ls []*Limiter
	for range n {
		l, err := NewLimiter(rdb, LimiterOptions{Options: Options{Prefix: prefix}, PerMinute: 60_000, Clock: clock, Lease: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	return ls
}

// mustAcquire acquires or fails the test.
func mustAcquire(t *testing.T, l *Limiter) func(sheen.RateAnswer) {
	t.Helper()
	release, err := l.Acquire(context.Background(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return release
}

// blocked checks that an Acquire with a short deadline waits until its
// deadline, or is refused with a *RateLimitError when hard.
func blocked(t *testing.T, l *Limiter, hard bool) *sheen.RateLimitError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	release, err := l.Acquire(ctx, time.Minute)
	if release != nil {
		release(sheen.RateAnswer{At: time.Now(), Limit: -1, Remaining: -1})
		t.Fatalf("a request left; the fleet's quota is used up")
	}
	var rl *sheen.RateLimitError
	switch {
	case hard && errors.As(err, &rl):
		return rl
	case !hard && errors.Is(err, context.DeadlineExceeded):
		return nil
	}
	t.Fatalf("Acquire: %v; want %s", err, map[bool]string{true: "a *RateLimitError at once", false: "to wait until the context ends"}[hard])
	return nil
}

func answer(clock sheen.Clock, limit, remaining int, reset time.Duration) sheen.RateAnswer {
	now := clock.Now()
	return sheen.RateAnswer{At: now, Answered: true, Limit: limit, Remaining: remaining, Reset: now.Add(reset), ResetPrecision: time.Second}
}

func TestLimiterReplicasShareOneWindow(t *testing.T) {
	clock := newFakeClock()
	ls := replicas(t, 2, clock)
	a, b := ls[0], ls[1]

	// Cold start: one probe for the whole fleet.
	probe := mustAcquire(t, a)
	blocked(t, b, false)
	probe(answer(clock, 3, 2, time.Minute))

	// The worker said 2 remain: the fleet sends 2, whoever asks.
	r1, r2 := mustAcquire(t, b), mustAcquire(t, b)
	blocked(t, a, false) // both in flight: wait for an answer
	r1(answer(clock, 3, 1, time.Minute))
	blocked(t, a, false) // 1 remains, 1 in flight
	r2(answer(clock, 3, 0, time.Minute))

	// Nothing remains: sure to wait until the window ends, so refused at once.
	rl := blocked(t, a, true)
	if rl.Remaining != 0 || rl.Limit != 3 || rl.RetryAfter < 59*time.Second {
		t.Errorf("refusal: limit %d remaining %d retry after %s; want 3, 0 and about a minute", rl.Limit, rl.Remaining, rl.RetryAfter)
	}
	if _, err := b.Acquire(context.Background(), 10*time.Second); !errors.As(err, &rl) {
		t.Errorf("a wait longer than maxWait: %v; want a *RateLimitError", err)
	}

	// The next window starts with a probe again.
	clock.Advance(time.Minute + time.Second)
	mustAcquire(t, b)(answer(clock, 3, 2, time.Minute))
	mustAcquire(t, a)(answer(clock, 3, 1, time.Minute))
}

func TestLimiterA429PausesEveryReplica(t *testing.T) {
	clock := newFakeClock()
	ls := replicas(t, 2, clock)
	r := mustAcquire(t, ls[0])
	a := answer(clock, -1, -1, 0)
	a.Reset, a.ResetPrecision = time.Time{}, 0
	a.PauseUntil = clock.Now().Add(30 * time.Second)
	r(a)
	rl := blocked(t, ls[1], true)
	if rl.RetryAfter != 30*time.Second {
		t.Errorf("RetryAfter %s, want the 429's 30s", rl.RetryAfter)
	}
	clock.Advance(30 * time.Second)
	mustAcquire(t, ls[1])(answer(clock, 10, 9, time.Minute))
}

func TestLimiterLeaseFreesTheSlotOfACrashedReplica(t *testing.T) {
	clock := newFakeClock()
	ls := replicas(t, 2, clock)
	mustAcquire(t, ls[0])(answer(clock, 5, 1, time.Minute))
	mustAcquire(t, ls[0]) // never released: the replica crashed
	blocked(t, ls[1], false)
	clock.Advance(10*time.Second + time.Millisecond) // the lease
	mustAcquire(t, ls[1])
}

func TestLimiterKeepsThePace(t *testing.T) {
	clock := newFakeClock()
	srv := redistest.Shared(t)
	l, err := NewLimiter(srv.Client(t), LimiterOptions{Options: Options{Prefix: srv.Prefix(t)}, PerMinute: 60, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	mustAcquire(t, l)(sheen.RateAnswer{At: clock.Now(), Answered: true, Limit: -1, Remaining: -1})
	for range burst - 1 {
		mustAcquire(t, l)(sheen.RateAnswer{At: clock.Now(), Answered: true, Limit: -1, Remaining: -1})
	}
	// The burst is spent: the next waits a second, past this deadline.
	rl := blocked(t, l, true)
	if rl.RetryAfter != time.Second {
		t.Errorf("RetryAfter %s, want the pace's 1s", rl.RetryAfter)
	}
}

func TestLimiterFallsBackWhileRedisIsDownAndRecovers(t *testing.T) {
	srv := redistest.Own(t, redistest.Options{})
	logs := &logCounter{}
	l, err := NewLimiter(srv.Client(t), LimiterOptions{Options: shortOptions("p", logs), PerMinute: 60_000})
	if err != nil {
		t.Fatal(err)
	}
	mustAcquire(t, l)(sheen.RateAnswer{At: time.Now(), Answered: true, Limit: -1, Remaining: -1})

	srv.StopServer()
	for range 5 {
		if _, err := l.Acquire(context.Background(), time.Minute); !errors.Is(err, sheen.ErrSharedUnavailable) {
			t.Fatalf("Acquire with Redis down: %v; want ErrSharedUnavailable", err)
		}
	}
	if n := logs.count(slog.LevelWarn); n != 1 {
		t.Errorf("%d warnings for one outage, want 1: %q", n, logs.all())
	}

	if err := srv.StartServer(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the limiter uses Redis again", func() bool {
		release, err := l.Acquire(context.Background(), time.Minute)
		if err == nil {
			release(sheen.RateAnswer{At: time.Now(), Answered: true, Limit: -1, Remaining: -1})
		}
		return err == nil
	})
	if n := logs.count(slog.LevelInfo); n != 1 {
		t.Errorf("%d recovery records, want 1: %q", n, logs.all())
	}
}

func TestLimiterFallsBackWhenRedisHangs(t *testing.T) {
	srv := redistest.Own(t, redistest.Options{})
	l, err := NewLimiter(srv.Client(t), LimiterOptions{Options: shortOptions("p", &logCounter{}), PerMinute: 60_000})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	defer srv.Resume()
	// The caller's context is far away: the limiter's own timeout ends it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := l.Acquire(ctx, time.Minute); !errors.Is(err, sheen.ErrSharedUnavailable) {
		t.Fatalf("Acquire with Redis frozen: %v; want ErrSharedUnavailable", err)
	}
}

func TestNewLimiterRefusesAClientWithoutContextTimeouts(t *testing.T) {
	srv := redistest.Shared(t)
	opts := srv.Options(0)
	opts.ContextTimeoutEnabled = false
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	if _, err := NewLimiter(rdb, LimiterOptions{}); err == nil {
		t.Fatal("NewLimiter accepted a client that ignores context deadlines")
	}
	if _, err := NewLimiter(nil, LimiterOptions{}); err == nil {
		t.Fatal("NewLimiter accepted a nil client")
	}
}

// strictWorker is a worker with one fixed window of limit requests that
// refuses the rest with 429, counting both.
type strictWorker struct {
	limit         int
	reset         time.Time
	mu            sync.Mutex
	used, refused int
}

func (w *strictWorker) ServeHTTP(rw http.ResponseWriter, _ *http.Request) {
	w.mu.Lock()
	w.used++
	n := w.used
	w.mu.Unlock()
	left := max(w.limit-n, 0)
	h := rw.Header()
	h.Set("X-Ratelimit-Limit", strconv.Itoa(w.limit))
	h.Set("X-Ratelimit-Remaining", strconv.Itoa(left))
	h.Set("X-Ratelimit-Reset", strconv.FormatInt(w.reset.Unix(), 10))
	if n > w.limit {
		w.mu.Lock()
		w.refused++
		w.mu.Unlock()
		h.Set("Retry-After", "60")
		rw.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(rw, `{"error":"rate limited"}`)
		return
	}
	fmt.Fprint(rw, `{"ok":true}`)
}

func TestClientsOfTwoReplicasStayInsideTheWorkersWindow(t *testing.T) {
	srv := redistest.Shared(t)
	rdb := srv.Client(t)
	prefix := srv.Prefix(t)
	w := &strictWorker{limit: 7, reset: time.Now().Add(time.Hour)}
	worker := httptest.NewServer(w)
	defer worker.Close()

	var clients []*sheen.WorkerClient
	for range 2 {
		l, err := NewLimiter(rdb, LimiterOptions{Options: Options{Prefix: prefix}, PerMinute: 60_000})
		if err != nil {
			t.Fatal(err)
		}
		c, err := sheen.NewWorkerClient(sheen.WithBaseURL(worker.URL), sheen.WithSecret(testSecret),
			sheen.WithSharedLimiter(l), sheen.WithRateLimit(60_000), sheen.WithRetry(sheen.RetryConfig{MaxAttempts: 1, MaxWait: time.Minute}))
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	var wg sync.WaitGroup
	var sent, refused atomic.Int32
	for i := range 20 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var rl *sheen.RateLimitError
			err := clients[i%2].Do(ctx, http.MethodGet, "/v1/anything", nil, nil)
			switch {
			case err == nil:
				sent.Add(1)
			case errors.As(err, &rl) && rl.StatusCode == http.StatusTooManyRequests && rl.Code == "client_rate_limited":
				refused.Add(1)
			default:
				t.Errorf("call %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if w.refused != 0 || sent.Load() != 7 || refused.Load() != 13 {
		t.Errorf("worker refused %d (want 0); calls sent %d (want the 7 of the window), held back %d (want 13)", w.refused, sent.Load(), refused.Load())
	}
}
