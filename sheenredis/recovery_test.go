package sheenredis

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/redistest"
)

// Tests of what happens when Redis answers again after an outage: what was
// queued meanwhile is delivered, on a goroutine of the store's own, and
// again after a delivery that failed; and nothing slips through meanwhile.

// faults is a go-redis hook that plays Redis faults on one client: each
// command or pipeline goes through fn (when set), which calls next to send
// it, or does not, and answers in its place.
type faults struct {
	fn atomic.Pointer[func(ctx context.Context, cmds []redis.Cmder, next func() error) error]
}

func (f *faults) set(fn func(ctx context.Context, cmds []redis.Cmder, next func() error) error) {
	if fn == nil {
		f.fn.Store(nil)
		return
	}
	f.fn.Store(&fn)
}

func (f *faults) DialHook(next redis.DialHook) redis.DialHook { return next }

func (f *faults) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		fn := f.fn.Load()
		if fn == nil {
			return next(ctx, cmd)
		}
		err := (*fn)(ctx, []redis.Cmder{cmd}, func() error { return next(ctx, cmd) })
		if err != nil && cmd.Err() == nil {
			cmd.SetErr(err)
		}
		return err
	}
}

func (f *faults) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		fn := f.fn.Load()
		if fn == nil {
			return next(ctx, cmds)
		}
		err := (*fn)(ctx, cmds, func() error { return next(ctx, cmds) })
		if err != nil {
			for _, c := range cmds {
				if c.Err() == nil {
					c.SetErr(err)
				}
			}
		}
		return err
	}
}

// errDown is the error of a command the hook refused.
var errDown = errors.New("simulated outage")

// down fails every command.
func down(context.Context, []redis.Cmder, func() error) error { return errDown }

// faultyClient is a client of srv going through a faults hook, and a plain
// one to look at what Redis holds.
func faultyClient(t *testing.T, srv *redistest.Server) (*redis.Client, *redis.Client, *faults) {
	t.Helper()
	rdb := srv.Client(t)
	f := &faults{}
	rdb.AddHook(f)
	return rdb, srv.Client(t), f
}

// isScript reports whether cmd runs script.
func isScript(cmd redis.Cmder, script *redis.Script) bool {
	a := cmd.Args()
	if len(a) < 2 {
		return false
	}
	switch cmd.Name() {
	case "evalsha":
		return a[1] == script.Hash()
	case "eval": // the script's source, sent when Redis did not have it
		src, _ := a[1].(string)
		return fmt.Sprintf("%x", sha1.Sum([]byte(src))) == script.Hash()
	}
	return false
}

// sends reports whether cmds hold the command name (on key, if not empty).
func sends(cmds []redis.Cmder, name, key string) bool {
	for _, c := range cmds {
		if c.Name() == name && (key == "" || len(c.Args()) > 1 && c.Args()[1] == key) {
			return true
		}
	}
	return false
}

// untilTried waits until h lets the next call try Redis again.
func untilTried(t *testing.T, h *health) {
	t.Helper()
	eventually(t, "the retry interval passes", func() bool { return !h.resting() })
}

// gate holds back the deliveries of queued work until the call that
// triggered them has returned, or until the delivery's own context ends.
type gate struct {
	returned chan struct{} // closed when the triggering call returned
	once     sync.Once
	reached  chan struct{} // closed when a delivery reached the gate
	early    atomic.Bool   // a delivery went on before the call had returned
}

func newGate() *gate { return &gate{returned: make(chan struct{}), reached: make(chan struct{})} }

func (g *gate) hold(ctx context.Context) {
	g.once.Do(func() { close(g.reached) })
	select {
	case <-g.returned:
	case <-ctx.Done():
		g.early.Store(true)
	}
}

// check fails t when the triggering call waited for a delivery.
func (g *gate) check(t *testing.T, what string) {
	t.Helper()
	close(g.returned)
	<-g.reached
	if g.early.Load() {
		t.Errorf("%s waited on Redis for the delivery of what the outage queued", what)
	}
}

// With FailOpen, a nonce accepted during an outage and replayed to the
// same replica as the first request after Redis answers again is refused:
// the replica's own store is asked before Redis.
func TestNonceStoreFailOpenRefusesAReplayAsTheFirstCallAfterTheOutage(t *testing.T) {
	srv := redistest.Own(t, redistest.Options{})
	o := NonceOptions{Options: shortOptions("p", nil), FailOpen: true}
	a := replica(t, srv.Client(t), o)
	store := a.Nonces.(*NonceStore)
	t.Cleanup(func() { _ = store.Close() })
	srv.StopServer()
	if rec := send(a, "nonce-1"); rec.Code != http.StatusForbidden {
		t.Fatalf("first sending during the outage: %d; want 403", rec.Code)
	}
	if err := srv.StartServer(context.Background()); err != nil {
		t.Fatal(err)
	}
	untilTried(t, store.h)
	if rec := send(a, "nonce-1"); rec.Code != http.StatusConflict {
		t.Errorf("replay to the same replica as the first request after the outage: %d; want 409", rec.Code)
	}
	if rec := send(a, "nonce-2"); rec.Code != http.StatusForbidden {
		t.Errorf("a new nonce after the outage: %d; want 403", rec.Code)
	}
}

// Replays of the outage's nonces sent all at once as Redis answers again,
// while the store writes them to Redis, are all refused.
func TestNonceStoreFailOpenRefusesReplaysWhileItDeliversTheOutagesNonces(t *testing.T) {
	srv := redistest.Own(t, redistest.Options{})
	rdb, _, f := faultyClient(t, srv)
	s, err := NewNonceStore(rdb, NonceOptions{Options: shortOptions("p", nil), FailOpen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	now := time.Now()
	f.set(down)
	const n = 300
	for i := range n {
		if seen, err := s.Check(fmt.Sprint("nonce-", i), now); seen || err != nil {
			t.Fatalf("nonce-%d during the outage: %v %v; want accepted", i, seen, err)
		}
	}
	f.set(nil)
	untilTried(t, s.h)
	var accepted atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if seen, err := s.Check(fmt.Sprint("nonce-", i), now); !seen || err != nil {
				accepted.Add(1)
			}
		})
	}
	wg.Wait()
	if k := accepted.Load(); k > 0 {
		t.Errorf("%d of %d replays accepted as Redis answered again; want none", k, n)
	}
}

// The call whose success ends an outage does not wait for the queued
// nonces to reach Redis.
func TestNonceStoreCheckDoesNotWaitForTheOutagesNonces(t *testing.T) {
	srv := redistest.Own(t, redistest.Options{})
	rdb, _, f := faultyClient(t, srv)
	o := shortOptions("p", nil)
	o.Timeout = 2 * time.Second // ten of them are the gate's fallback, should Check wait for it
	s, err := NewNonceStore(rdb, NonceOptions{Options: o, FailOpen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	f.set(down)
	if _, err := s.Check("nonce-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	g := newGate()
	f.set(func(ctx context.Context, cmds []redis.Cmder, next func() error) error {
		if sends(cmds, "set", s.key("nonce-1")) {
			g.hold(ctx)
		}
		return next()
	})
	untilTried(t, s.h)
	if seen, err := s.Check("nonce-2", time.Now()); seen || err != nil {
		t.Fatalf("Check after the outage: %v %v", seen, err)
	}
	g.check(t, "Check")
}

// A failed delivery of the outage's nonces keeps them for the next one.
func TestNonceStoreKeepsTheOutagesNoncesWhenTheirDeliveryFails(t *testing.T) {
	srv := redistest.Own(t, redistest.Options{})
	rdb, plain, f := faultyClient(t, srv)
	s, err := NewNonceStore(rdb, NonceOptions{Options: shortOptions("p", nil), FailOpen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	f.set(down)
	if _, err := s.Check("nonce-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	var failed atomic.Int32
	f.set(func(ctx context.Context, cmds []redis.Cmder, next func() error) error {
		if sends(cmds, "set", s.key("nonce-1")) {
			failed.Add(1)
			return errDown // Redis fails again before the delivery
		}
		return next()
	})
	untilTried(t, s.h)
	_, _ = s.Check("probe-1", time.Now())
	eventually(t, "the delivery fails", func() bool { return failed.Load() > 0 })
	f.set(nil)
	eventually(t, "nonce-1 reaches Redis", func() bool {
		if !s.h.resting() {
			_, _ = s.Check("probe-"+time.Now().String(), time.Now())
		}
		return plain.Exists(context.Background(), s.key("nonce-1")).Val() == 1
	})
}

// The call whose success ends an outage does not wait for the releases the
// outage queued (the audit's Acquire waited seconds past its context).
func TestLimiterAcquireDoesNotWaitForTheOutagesReleases(t *testing.T) {
	srv := redistest.Own(t, redistest.Options{})
	rdb, _, f := faultyClient(t, srv)
	o := shortOptions("p", nil)
	o.Timeout = 10 * time.Second // the gate's fallback, should Acquire wait for it
	l, err := NewLimiter(rdb, LimiterOptions{Options: o, PerMinute: 60_000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	// A known window, so that no probe holds the next request back.
	mustAcquire(t, l)(answer(systemClock{}, 100, 99, time.Hour))
	release := mustAcquire(t, l)
	f.set(down)
	release(sheen.RateAnswer{At: time.Now(), Limit: -1, Remaining: -1}) // queued
	g := newGate()
	f.set(func(ctx context.Context, cmds []redis.Cmder, next func() error) error {
		if isScript(cmds[0], releaseScript) {
			g.hold(ctx)
		}
		return next()
	})
	untilTried(t, l.h)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	release, err = l.Acquire(ctx, 0)
	if err != nil {
		t.Fatalf("Acquire after the outage: %v", err)
	}
	g.check(t, "Acquire")
	f.set(nil)
	release(sheen.RateAnswer{At: time.Now(), Limit: -1, Remaining: -1})
}

// A request whose context ends while the script admits it is not admitted:
// Acquire returns the context's error and the slot is given back.
func TestLimiterDoesNotAdmitARequestWhoseContextEnded(t *testing.T) {
	srv := redistest.Own(t, redistest.Options{})
	rdb, plain, f := faultyClient(t, srv)
	l, err := NewLimiter(rdb, LimiterOptions{Options: shortOptions("p", nil), PerMinute: 60_000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.set(func(_ context.Context, cmds []redis.Cmder, next func() error) error {
		err := next()
		if err == nil && isScript(cmds[0], acquireScript) {
			cancel() // the caller gives up while the answer comes back
		}
		return err
	})
	release, err := l.Acquire(ctx, 0)
	if release != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire: release %v, %v; want context.Canceled and no release", release != nil, err)
	}
	if n := plain.ZCard(context.Background(), l.keys[1]).Val(); n != 0 {
		t.Errorf("%d request(s) in flight; want the slot given back", n)
	}
}

// A failed delivery of the outage's releases keeps them for the next one.
func TestLimiterKeepsTheOutagesReleasesWhenTheirDeliveryFails(t *testing.T) {
	srv := redistest.Own(t, redistest.Options{})
	rdb, plain, f := faultyClient(t, srv)
	l, err := NewLimiter(rdb, LimiterOptions{Options: shortOptions("p", nil), PerMinute: 60_000, Lease: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	release := mustAcquire(t, l)
	f.set(down)
	release(sheen.RateAnswer{At: time.Now(), Limit: -1, Remaining: -1}) // queued
	var failed atomic.Int32
	f.set(func(ctx context.Context, cmds []redis.Cmder, next func() error) error {
		if isScript(cmds[0], releaseScript) {
			failed.Add(1)
			return errDown
		}
		return next()
	})
	// Any command that succeeds ends the outage.
	ping := func() {
		_ = l.h.run(context.Background(), time.Second, func(ctx context.Context) error { return rdb.Ping(ctx).Err() })
	}
	untilTried(t, l.h)
	ping()
	eventually(t, "the delivery fails", func() bool { return failed.Load() > 0 })
	f.set(nil)
	eventually(t, "the outage's release reaches Redis", func() bool {
		if !l.h.resting() {
			ping()
		}
		return plain.ZCard(context.Background(), l.keys[1]).Val() == 0
	})
}

// The call whose success ends an outage does not wait for the deletions
// the outage queued.
func TestCacheCallDoesNotWaitForTheOutagesDeletions(t *testing.T) {
	srv := redistest.Own(t, redistest.Options{})
	rdb, _, f := faultyClient(t, srv)
	o := shortOptions("p", nil)
	o.Timeout = 2 * time.Second // ten of them are the gate's fallback, should Set wait for it
	c, err := NewCache(rdb, testSecret, CacheOptions{Options: o})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	f.set(down)
	if err := c.Delete(context.Background(), "balance"); !errors.Is(err, sheen.ErrSharedUnavailable) {
		t.Fatalf("Delete during the outage: %v", err)
	}
	g := newGate()
	f.set(func(ctx context.Context, cmds []redis.Cmder, next func() error) error {
		if sends(cmds, "del", "") {
			g.hold(ctx)
		}
		return next()
	})
	untilTried(t, c.h)
	if err := c.Set(context.Background(), "other", []byte("x"), time.Hour); err != nil {
		t.Fatalf("Set after the outage: %v", err)
	}
	g.check(t, "Set")
}

// A Delete made during an outage is delivered when Redis is really back,
// even though the first delivery failed.
func TestCacheDeleteSurvivesAFailedDelivery(t *testing.T) {
	srv := redistest.Own(t, redistest.Options{})
	rdb, plain, f := faultyClient(t, srv)
	c, err := NewCache(rdb, testSecret, CacheOptions{Options: shortOptions("p", nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	if err := c.Set(ctx, "balance", []byte("42"), time.Hour); err != nil {
		t.Fatal(err)
	}
	f.set(down)
	if err := c.Delete(ctx, "balance"); !errors.Is(err, sheen.ErrSharedUnavailable) {
		t.Fatalf("Delete during the outage: %v", err)
	}
	var failed atomic.Int32
	f.set(func(ctx context.Context, cmds []redis.Cmder, next func() error) error {
		if sends(cmds, "del", "") {
			failed.Add(1)
			return errDown
		}
		return next()
	})
	untilTried(t, c.h)
	_ = c.Set(ctx, "other", []byte("x"), time.Hour)
	eventually(t, "the delivery fails", func() bool { return failed.Load() > 0 })
	f.set(nil)
	value := c.names("balance").value
	eventually(t, "the Delete reaches Redis", func() bool {
		if !c.h.resting() {
			_ = c.Set(ctx, "other", []byte("x"), time.Hour)
		}
		return plain.Exists(ctx, value).Val() == 0
	})
}

// Close ends a delivery under way, even one Redis never answers, and
// waits for it.
func TestCacheCloseEndsADeliveryUnderWay(t *testing.T) {
	srv := redistest.Own(t, redistest.Options{})
	rdb, _, f := faultyClient(t, srv)
	o := shortOptions("p", nil)
	o.Timeout = time.Hour // only Close can end the delivery
	c, err := NewCache(rdb, testSecret, CacheOptions{Options: o})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f.set(down)
	_ = c.Delete(ctx, "balance")
	reached := make(chan struct{})
	var once sync.Once
	f.set(func(ctx context.Context, cmds []redis.Cmder, next func() error) error {
		if sends(cmds, "del", "") {
			once.Do(func() { close(reached) })
			<-ctx.Done() // a Redis that never answers
			return ctx.Err()
		}
		return next()
	})
	untilTried(t, c.h)
	if err := c.Set(ctx, "other", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	<-reached
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
