package sheenredis

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/redistest"
)

// signedQuery is the credential part of the links the fake worker hands out.
const signedQuery = "X-Amz-Signature=deadbeefcafe0123456789"

// linkWorker is a worker that answers balances and version links, counting
// the calls, each answer a little late so that concurrent callers overlap.
type linkWorker struct {
	balances, links atomic.Int32
}

func (w *linkWorker) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	time.Sleep(20 * time.Millisecond)
	rw.Header().Set("Content-Type", "application/json")
	switch {
	case strings.HasPrefix(r.URL.Path, "/v1/billing/balance/"):
		n := w.balances.Add(1)
		fmt.Fprintf(rw, `{"version":"2025-09-01","plan":"free","subscriptionStatus":"inactive","totals":{"total_seconds":%d,"paid_seconds":0,"bonus_seconds":%d,"next_expiry_at":null},"buckets":[],"bonus":{"daily_minutes":15,"used_this_month_minutes":0,"monthly_cap_minutes":300},"catalog_version":"2025-09-01"}`, 60*n, 60*n)
	case strings.HasPrefix(r.URL.Path, "/v1/versions/"):
		w.links.Add(1)
		expires := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
		fmt.Fprintf(rw, `{"success":true,"downloadUrl":"https://store.test/a/secret-archive.zip?%s","expiresAt":%q,"filename":"v.zip","size":10}`, signedQuery, expires)
	default:
		http.NotFound(rw, r)
	}
}

// cacheReplicas makes n clients sharing one Cache on prefix, against worker.
func cacheReplicas(t *testing.T, rdb *redis.Client, prefix, workerURL string, n int, logs *logCounter) []*sheen.WorkerClient {
	t.Helper()
	var cs []*sheen.WorkerClient
	for range n {
		c, err := NewCache(rdb, testSecret, CacheOptions{Options: shortOptions(prefix, logs)})
		if err != nil {
			t.Fatal(err)
		}
		client, err := sheen.NewWorkerClient(sheen.WithBaseURL(workerURL), sheen.WithSecret(testSecret),
			sheen.WithCache(sheen.CacheConfig{Shared: c}), sheen.WithRateLimit(60_000), sheen.WithRetry(sheen.RetryConfig{MaxAttempts: 1, MaxWait: time.Minute}))
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, client)
	}
	return cs
}

func TestCacheOneLoadForTheWholeFleet(t *testing.T) {
	srv := redistest.Shared(t)
	w := &linkWorker{}
	worker := httptest.NewServer(w)
	defer worker.Close()
	cs := cacheReplicas(t, srv.Client(t), srv.Prefix(t), worker.URL, 3, nil)

	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			c := cs[i%len(cs)]
			if _, err := c.Billing.Balance(context.Background(), "user-1"); err != nil {
				t.Error(err)
			}
			l, err := c.Exports.VersionLink(context.Background(), "version-1", "user-1")
			if err != nil {
				t.Error(err)
			} else if !strings.Contains(l.SignedURL(), signedQuery) {
				t.Errorf("link %s lost its signed query", l)
			}
		})
	}
	wg.Wait()
	if b, l := w.balances.Load(), w.links.Load(); b != 1 || l != 1 {
		t.Errorf("the worker was asked %d times for the balance and %d for the link; want once each", b, l)
	}
}

func TestCacheInvalidationReachesEveryReplica(t *testing.T) {
	srv := redistest.Shared(t)
	w := &linkWorker{}
	worker := httptest.NewServer(w)
	defer worker.Close()
	cs := cacheReplicas(t, srv.Client(t), srv.Prefix(t), worker.URL, 2, nil)
	ctx := context.Background()
	first, err := cs[0].Billing.Balance(ctx, "user-1")
	if err != nil {
		t.Fatal(err)
	}
	var resp sheen.Response
	if b, err := cs[1].Billing.Balance(ctx, "user-1", sheen.WithResponse(&resp)); err != nil || b.Total != first.Total || !resp.Cached {
		t.Fatalf("the other replica: %v, %v, cached %v; want the same balance, cached", b, err, resp.Cached)
	}
	cs[1].Billing.InvalidateBalance("user-1") // what a build started on that replica does
	if b, err := cs[0].Billing.Balance(ctx, "user-1"); err != nil || b.Total == first.Total {
		t.Fatalf("after the other replica dropped it: %v, %v; want a fresh balance", b, err)
	}
	if n := w.balances.Load(); n != 2 {
		t.Errorf("worker asked %d times, want 2", n)
	}

	link, err := cs[0].Exports.VersionLink(ctx, "version-1", "user-1")
	if err != nil {
		t.Fatal(err)
	}
	cs[1].Exports.Invalidate(link)
	if _, err := cs[0].Exports.VersionLink(ctx, "version-1", "user-1"); err != nil {
		t.Fatal(err)
	}
	if n := w.links.Load(); n != 2 {
		t.Errorf("link asked for %d times, want 2 (the other replica dropped it)", n)
	}
}

func TestCacheShowsRedisNoSecretAndNoID(t *testing.T) {
	srv := redistest.Shared(t)
	rdb := srv.Client(t)
	prefix := srv.Prefix(t)
	w := &linkWorker{}
	worker := httptest.NewServer(w)
	defer worker.Close()
	cs := cacheReplicas(t, rdb, prefix, worker.URL, 1, nil)

	// MONITOR sees every command with its arguments, as a log would. (Over
	// a connection of its own: go-redis's Monitor races with its pool.)
	conn, err := net.Dial(srv.Network(), srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	monitor := bufio.NewReader(conn)
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	if ok, err := monitor.ReadString('\n'); err != nil || !strings.HasPrefix(ok, "+OK") {
		t.Fatalf("MONITOR: %q, %v", ok, err)
	}
	if _, err := cs[0].Exports.VersionLink(context.Background(), "version-1", "user-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cs[0].Billing.Balance(context.Background(), "user-1"); err != nil {
		t.Fatal(err)
	}
	keys := keysUnder(t, rdb, prefix)
	if len(keys) != 2 {
		t.Fatalf("keys %q; want one link and one balance", keys)
	}
	var seen []string
	for _, k := range keys {
		v, err := rdb.Get(context.Background(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, k, v)
	}
	// The GETs above are the last commands: read the log up to them.
	lines := 0
	for gets := 0; gets < len(keys); {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := monitor.ReadString('\n')
		if err != nil {
			t.Fatalf("reading MONITOR after %d lines: %v", lines, err)
		}
		if strings.Contains(strings.ToUpper(line), `"GET"`) && strings.Contains(line, prefix+":c:") && !strings.Contains(line, "lua]") {
			gets++
		}
		seen = append(seen, line)
		lines++
	}
	conn.Close()
	if lines == 0 {
		t.Fatal("MONITOR saw nothing")
	}
	for _, s := range seen {
		for _, secret := range []string{signedQuery, "secret-archive", "user-1", "version-1", "store.test"} {
			if strings.Contains(s, secret) {
				t.Errorf("Redis shows %q: %q", secret, s)
			}
		}
	}
}

func TestCacheFetchSemantics(t *testing.T) {
	srv := redistest.Shared(t)
	rdb := srv.Client(t)
	c, err := NewCache(rdb, testSecret, CacheOptions{Options: Options{Prefix: srv.Prefix(t)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	loads := 0
	load := func(v string, ttl time.Duration, err error) func(context.Context) ([]byte, time.Duration, error) {
		return func(context.Context) ([]byte, time.Duration, error) { loads++; return []byte(v), ttl, err }
	}
	get := func(step, want string, wantLoads int) {
		t.Helper()
		v, err := c.Fetch(ctx, "k", load("fresh", time.Minute, nil))
		if err != nil || string(v) != want || loads != wantLoads {
			t.Errorf("%s: %q, %v after %d loads; want %q after %d", step, v, err, loads, want, wantLoads)
		}
	}
	boom := errors.New("boom")
	if _, err := c.Fetch(ctx, "k", load("", 0, boom)); err != boom {
		t.Fatalf("a failed load: %v, want its error", err)
	}
	get("a failed load stores nothing", "fresh", 2)
	get("then the value is held", "fresh", 2)

	if err := c.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	v, err := c.Fetch(ctx, "k", func(ctx context.Context) ([]byte, time.Duration, error) {
		_ = c.Delete(ctx, "k") // dropped while loading, as by another replica
		return []byte("stale"), time.Minute, nil
	})
	if err != nil || string(v) != "stale" {
		t.Fatalf("the load's own caller: %q, %v; want its value", v, err)
	}
	get("a value dropped during its load is not stored", "fresh", 3)

	if _, err := c.Fetch(ctx, "once", load("x", 0, nil)); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Fetch(ctx, "once", load("y", 0, nil)); string(v) != "y" {
		t.Errorf("a value with no ttl was stored: got %q", v)
	}

	other, err := NewCache(rdb, testSecret+"-another", CacheOptions{Options: Options{Prefix: c.o.Prefix}})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := other.Fetch(ctx, "k", load("theirs", time.Minute, nil)); string(v) != "theirs" {
		t.Errorf("a cache with another secret read %q", v)
	}
}

func TestCacheWaitsForAnotherReplicasLoadUntilItsContextEnds(t *testing.T) {
	srv := redistest.Shared(t)
	rdb := srv.Client(t)
	prefix := srv.Prefix(t)
	a, _ := NewCache(rdb, testSecret, CacheOptions{Options: Options{Prefix: prefix}})
	b, _ := NewCache(rdb, testSecret, CacheOptions{Options: Options{Prefix: prefix}})
	loading, release := make(chan struct{}), make(chan struct{})
	done := make(chan []byte)
	go func() {
		v, _ := a.Fetch(context.Background(), "k", func(context.Context) ([]byte, time.Duration, error) {
			close(loading)
			<-release
			return []byte("a's"), time.Minute, nil
		})
		done <- v
	}()
	<-loading
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := b.Fetch(ctx, "k", func(context.Context) ([]byte, time.Duration, error) {
		t.Error("b loaded while a held the claim")
		return nil, 0, nil
	})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("b's wait: %v, want its context's end", err)
	}
	got := make(chan []byte)
	go func() {
		v, _ := b.Fetch(context.Background(), "k", func(context.Context) ([]byte, time.Duration, error) { return []byte("b's"), time.Minute, nil })
		got <- v
	}()
	close(release)
	if v := <-done; string(v) != "a's" {
		t.Errorf("a got %q", v)
	}
	if v := <-got; string(v) != "a's" {
		t.Errorf("b got %q, want a's value", v)
	}
}

func TestCacheFallsBackToEachReplicasOwnWhileRedisIsDown(t *testing.T) {
	srv := redistest.Own(t, redistest.Options{})
	rdb := srv.Client(t)
	w := &linkWorker{}
	worker := httptest.NewServer(w)
	defer worker.Close()
	logs := &logCounter{}
	cs := cacheReplicas(t, rdb, "p", worker.URL, 1, logs)
	ctx := context.Background()

	srv.StopServer()
	for range 3 {
		if _, err := cs[0].Billing.Balance(ctx, "user-1"); err != nil {
			t.Fatalf("Balance with Redis down: %v", err)
		}
	}
	if n := w.balances.Load(); n != 1 {
		t.Errorf("with Redis down the replica's own cache served %d worker calls, want 1", n)
	}
	cs[0].Billing.InvalidateBalance("user-1") // kept for when Redis is back
	if n := logs.count(slog.LevelWarn); n != 1 {
		t.Errorf("%d warnings for one outage, want 1: %q", n, logs.all())
	}

	if err := srv.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the cache uses Redis again", func() bool {
		_, _ = cs[0].Billing.Balance(ctx, "user-1")
		return len(keysUnder(t, rdb, "p:c:")) > 0
	})
	if n := logs.count(slog.LevelInfo); n != 1 {
		t.Errorf("%d recovery records, want 1: %q", n, logs.all())
	}
}

func TestNewCacheRefusesAShortSecret(t *testing.T) {
	srv := redistest.Shared(t)
	if _, err := NewCache(srv.Client(t), "short", CacheOptions{}); err == nil || strings.Contains(err.Error(), "short") {
		t.Fatalf("NewCache with a short secret: %v; want an error that does not quote it", err)
	}
}

// A loader that panics does not hold the key: the panic reaches its
// caller, the claim is released at once (not renewed for ever, nor left to
// expire), and another replica loads the key itself.
func TestCacheLoaderPanicReleasesTheClaim(t *testing.T) {
	srv := redistest.Shared(t)
	rdb := srv.Client(t)
	prefix := srv.Prefix(t)
	o := CacheOptions{Options: Options{Prefix: prefix}, LockTTL: time.Hour}
	a, err := NewCache(rdb, testSecret, o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewCache(rdb, testSecret, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got := func() (p any) {
		defer func() { p = recover() }()
		_, _ = a.Fetch(ctx, "k", func(context.Context) ([]byte, time.Duration, error) { panic("loader bug") })
		return nil
	}()
	if got != "loader bug" {
		t.Fatalf("the loader's panic reached the caller as %v", got)
	}
	for _, k := range keysUnder(t, rdb, prefix) {
		if strings.HasSuffix(k, ":l") {
			t.Errorf("claim %q still held after its loader panicked", k)
		}
	}
	// Bounded only so that a regression fails instead of hanging for the
	// hour of LockTTL.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	v, err := b.Fetch(ctx, "k", func(context.Context) ([]byte, time.Duration, error) { return []byte("b's"), time.Minute, nil })
	if err != nil || string(v) != "b's" {
		t.Errorf("another replica after the panic: %q, %v; want its own load", v, err)
	}
}
