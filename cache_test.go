package sheen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestCacheExpiresAndEvictsLeastRecentlyUsed(t *testing.T) {
	clock := newFakeClock(limiterStart)
	c := newTTLCache[int](clock, 2)
	c.Set("a", 1, clock.Now().Add(time.Minute))
	c.Set("b", 2, clock.Now().Add(2*time.Minute))
	c.Set("gone", 9, clock.Now()) // already expired: not stored
	if _, ok := c.Get("gone"); ok || c.Len() != 2 {
		t.Fatalf("an expired value was stored (len %d)", c.Len())
	}
	c.Get("a")                                    // a is used: b is now the least recently used
	c.Set("c", 3, clock.Now().Add(3*time.Minute)) // full: b goes
	if _, ok := c.Get("b"); ok || c.Len() != 2 {
		t.Fatalf("b, the least recently used, was kept (len %d)", c.Len())
	}
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Fatal("a, used recently, was evicted")
	}
	clock.Advance(time.Minute)
	if _, ok := c.Get("a"); ok {
		t.Fatal("a outlived its expiry")
	}
	if c.Len() != 1 {
		t.Fatalf("an expired entry found by Get stays (len %d)", c.Len())
	}
	if v, ok := c.Get("c"); !ok || v != 3 {
		t.Fatal("c expired early")
	}
	c.Set("c", 4, clock.Now()) // an expired replacement drops the value held
	if _, ok := c.Get("c"); ok {
		t.Fatal("c survived being replaced by an expired value")
	}
}

func TestCacheFetchSharesOneLoadAndCachesOnlySuccess(t *testing.T) {
	clock := newFakeClock(limiterStart)
	c := newTTLCache[int](clock, 10)
	var loads atomic.Int32
	boom := errors.New("boom")
	load := func(context.Context) (int, time.Time, error) {
		if loads.Add(1) == 1 {
			return 0, time.Time{}, boom
		}
		return 7, clock.Now().Add(time.Minute), nil
	}
	if _, err := c.Fetch(context.Background(), "k", load); !errors.Is(err, boom) {
		t.Fatalf("want the load's error, got %v", err)
	}
	for range 3 {
		if v, err := c.Fetch(context.Background(), "k", load); err != nil || v != 7 {
			t.Fatalf("got %d, %v", v, err)
		}
	}
	if n := loads.Load(); n != 2 {
		t.Fatalf("%d loads: an error is not cached, a value is", n)
	}
	clock.Advance(time.Minute) // the value expires exactly now
	if v, err := c.Fetch(context.Background(), "k", load); err != nil || v != 7 || loads.Load() != 3 {
		t.Fatalf("after expiry: %d, %v with %d loads; want a new load", v, err, loads.Load())
	}
}

type traceKey struct{}

// The caller with the shorter deadline leaves at it with its own error; the
// load goes on, without any caller's deadline but with the first caller's
// values, and the patient caller gets the value. Both orders of arrival.
func TestCacheImpatientCallerDoesNotFailThePatientOne(t *testing.T) {
	for _, impatientFirst := range []bool{true, false} {
		name := map[bool]string{true: "impatient first", false: "patient first"}[impatientFirst]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newTTLCache[int](systemClock{}, 10)
				var loads atomic.Int32
				var sawDeadline bool
				var sawTrace any
				load := func(ctx context.Context) (int, time.Time, error) {
					loads.Add(1)
					_, sawDeadline = ctx.Deadline()
					sawTrace = ctx.Value(traceKey{})
					select {
					case <-time.After(time.Second): // a slow worker
						return 42, time.Now().Add(time.Minute), nil
					case <-ctx.Done():
						return 0, time.Time{}, ctx.Err()
					}
				}
				start := time.Now()
				type outcome struct {
					v     int
					err   error
					after time.Duration
				}
				fetch := func(ctx context.Context, out chan<- outcome) {
					v, err := c.Fetch(ctx, "k", load)
					out <- outcome{v, err, time.Since(start)}
				}
				impatientCtx, cancel := context.WithTimeout(context.WithValue(context.Background(), traceKey{}, "impatient"), 300*time.Millisecond)
				defer cancel()
				patientCtx := context.WithValue(context.Background(), traceKey{}, "patient")
				impatient, patient := make(chan outcome, 1), make(chan outcome, 1)
				if impatientFirst {
					go fetch(impatientCtx, impatient)
					synctest.Wait()
					go fetch(patientCtx, patient)
				} else {
					go fetch(patientCtx, patient)
					synctest.Wait()
					go fetch(impatientCtx, impatient)
				}

				a := <-impatient
				if !errors.Is(a.err, context.DeadlineExceeded) || a.after != 300*time.Millisecond {
					t.Errorf("impatient caller: %d, %v after %s; want its own deadline error at 300ms", a.v, a.err, a.after)
				}
				b := <-patient
				if b.err != nil || b.v != 42 || b.after != time.Second {
					t.Errorf("patient caller: %d, %v after %s; want 42 when the load ends at 1s", b.v, b.err, b.after)
				}
				if n := loads.Load(); n != 1 {
					t.Errorf("%d loads, want 1 shared", n)
				}
				if sawDeadline {
					t.Error("the load carried a caller's deadline")
				}
				want := map[bool]string{true: "impatient", false: "patient"}[impatientFirst]
				if sawTrace != want {
					t.Errorf("the load saw trace value %v, want the first caller's %q", sawTrace, want)
				}
				if v, ok := c.Get("k"); !ok || v != 42 {
					t.Error("the shared value was not cached")
				}
			})
		})
	}
}

// The load ends when its last waiter leaves, not before: no goroutine is
// left behind for a worker that never answers, and the next caller starts
// afresh.
func TestCacheLastWaiterLeavingCancelsTheLoad(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	synctest.Test(t, func(t *testing.T) {
		c := newTTLCache[int](systemClock{}, 10)
		var loadCtx context.Context
		loadErr := make(chan error, 1)
		hung := func(ctx context.Context) (int, time.Time, error) {
			loadCtx = ctx
			<-ctx.Done() // a worker that never answers
			loadErr <- ctx.Err()
			return 0, time.Time{}, ctx.Err()
		}
		ctx1, cancel1 := context.WithCancel(context.Background())
		ctx2, cancel2 := context.WithCancel(context.Background())
		done1, done2 := make(chan error, 1), make(chan error, 1)
		go func() { _, err := c.Fetch(ctx1, "k", hung); done1 <- err }()
		synctest.Wait()
		go func() { _, err := c.Fetch(ctx2, "k", hung); done2 <- err }()
		synctest.Wait()

		cancel1()
		if err := <-done1; !errors.Is(err, context.Canceled) {
			t.Fatalf("first caller: %v", err)
		}
		synctest.Wait()
		if err := loadCtx.Err(); err != nil {
			t.Fatalf("the load ended (%v) while a caller still waited", err)
		}
		cancel2()
		if err := <-done2; !errors.Is(err, context.Canceled) {
			t.Fatalf("second caller: %v", err)
		}
		if err := <-loadErr; !errors.Is(err, context.Canceled) {
			t.Fatalf("the abandoned load ended with %v", err)
		}
		v, err := c.Fetch(context.Background(), "k", func(context.Context) (int, time.Time, error) {
			return 3, time.Now().Add(time.Minute), nil
		})
		if err != nil || v != 3 {
			t.Fatalf("the next caller joined the dead load: %d %v", v, err)
		}
	})
}

// WithoutCancel drops the caller's deadline; the cache's own bound is the
// only one on a load.
func TestCacheLoadTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTTLCache[int](systemClock{}, 10)
		c.loadTimeout = 2 * time.Second
		start := time.Now()
		var deadline time.Time
		_, err := c.Fetch(context.Background(), "k", func(ctx context.Context) (int, time.Time, error) {
			deadline, _ = ctx.Deadline()
			<-ctx.Done()
			return 0, time.Time{}, ctx.Err()
		})
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 2*time.Second {
			t.Fatalf("%v after %s; want the load's timeout at 2s", err, time.Since(start))
		}
		if !deadline.Equal(start.Add(2 * time.Second)) {
			t.Fatalf("the load's deadline is %s, want %s", deadline, start.Add(2*time.Second))
		}
		if c.Len() != 0 {
			t.Fatal("a failed load was cached")
		}
	})
}

// An invalidation during a load: the callers already waiting get the loaded
// value, it is not cached, and a caller after the invalidation starts a load
// of its own whose value is the one kept.
func TestCacheDeleteDuringLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTTLCache[int](systemClock{}, 10)
		release1, release2 := make(chan struct{}), make(chan struct{})
		loadOf := func(v int, release chan struct{}) func(context.Context) (int, time.Time, error) {
			return func(context.Context) (int, time.Time, error) {
				<-release
				return v, time.Now().Add(time.Minute), nil
			}
		}
		got1, got2 := make(chan int, 1), make(chan int, 1)
		go func() { v, _ := c.Fetch(context.Background(), "k", loadOf(1, release1)); got1 <- v }()
		synctest.Wait()
		c.Delete("k") // the value changed while it was being read
		go func() { v, _ := c.Fetch(context.Background(), "k", loadOf(2, release2)); got2 <- v }()
		synctest.Wait()

		close(release1)
		if v := <-got1; v != 1 {
			t.Fatalf("the caller before the invalidation got %d, want its load's 1", v)
		}
		if v, ok := c.Get("k"); ok {
			t.Fatalf("a value loaded before its invalidation was cached: %d", v)
		}
		close(release2)
		if v := <-got2; v != 2 {
			t.Fatalf("the caller after the invalidation got %d, want a fresh load's 2", v)
		}
		if v, ok := c.Get("k"); !ok || v != 2 {
			t.Fatalf("cached %d, %v; want the fresh 2", v, ok)
		}
	})
}

// A loader that panics fails the callers sharing its load instead of
// leaving them waiting, and does not block the key.
func TestCacheLoaderPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTTLCache[int](systemClock{}, 10)
		release := make(chan struct{})
		recovered := make(chan any, 1)
		go func() {
			defer func() { recovered <- recover() }()
			c.Fetch(context.Background(), "k", func(context.Context) (int, time.Time, error) {
				<-release
				panic("loader bug")
			})
		}()
		synctest.Wait()
		joined := make(chan error, 1)
		go func() { _, err := c.Fetch(context.Background(), "k", nil); joined <- err }()
		synctest.Wait()
		close(release)
		if p := <-recovered; p != "loader bug" {
			t.Fatalf("the first caller's panic: %v", p)
		}
		if err := <-joined; !errors.Is(err, errLoadAborted) || !strings.Contains(err.Error(), "panicked: loader bug") {
			t.Fatalf("the caller sharing the load: %v", err)
		}
		v, err := c.Fetch(context.Background(), "k", func(context.Context) (int, time.Time, error) {
			return 5, time.Now().Add(time.Minute), nil
		})
		if err != nil || v != 5 {
			t.Fatalf("after the panic: %d, %v", v, err)
		}
	})
}

// TestCacheLoaderPanicOnItsOwnGoroutine: a load whose first caller can
// leave runs on a goroutine of the cache's, where nobody could recover a
// panic: the program must not crash, and every caller waiting gets an
// error naming the panic, without a URL's query.
func TestCacheLoaderPanicOnItsOwnGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTTLCache[int](systemClock{}, 10)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		release := make(chan struct{})
		errs := make(chan error, 2)
		go func() {
			_, err := c.Fetch(ctx, "k", func(context.Context) (int, time.Time, error) {
				<-release
				panic(errors.New("loader bug at https://store.test/a.zip?sig=SECRET"))
			})
			errs <- err
		}()
		synctest.Wait()
		go func() { _, err := c.Fetch(ctx, "k", nil); errs <- err }()
		synctest.Wait()
		close(release)
		for range 2 {
			err := <-errs
			if !errors.Is(err, errLoadAborted) || !strings.Contains(err.Error(), "panicked: loader bug at https://store.test/a.zip?REDACTED") {
				t.Errorf("a caller of the load that panicked: %v", err)
			}
			if err != nil && strings.Contains(err.Error(), "SECRET") {
				t.Errorf("the error shows the URL's query: %v", err)
			}
		}
		v, err := c.Fetch(ctx, "k", func(context.Context) (int, time.Time, error) {
			return 5, time.Now().Add(time.Minute), nil
		})
		if err != nil || v != 5 {
			t.Fatalf("after the panic: %d, %v", v, err)
		}
	})
}

func TestCacheHitDoesNotAllocate(t *testing.T) {
	c := newTTLCache[*Balance](systemClock{}, 10)
	ctx := context.Background()
	load := func(context.Context) (*Balance, time.Time, error) {
		return &Balance{}, time.Now().Add(time.Hour), nil
	}
	if _, err := c.Fetch(ctx, "u1", load); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() { c.Fetch(ctx, "u1", load) }); n != 0 {
		t.Errorf("Fetch hit: %v allocations", n)
	}
	if n := testing.AllocsPerRun(1000, func() { c.Get("u1") }); n != 0 {
		t.Errorf("Get hit: %v allocations", n)
	}
}

// With the system clock each entry's timer drops it when it expires, and a
// lookup reads no clock: a value is served until exactly its expiry, never
// after its timer has fired, whether its expiry carries a monotonic
// reading (balances: now plus the TTL) or only a wall time (links: the
// worker's expiresAt less the margin); an expired value leaves memory
// without anyone looking it up.
func TestCacheSystemClockExpiresExactly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTTLCache[int](systemClock{}, 10)
		if !c.timed {
			t.Fatal("the system clock does not take the timer path")
		}
		c.Set("mono", 1, time.Now().Add(time.Minute))
		c.Set("wall", 2, time.Now().Round(0).Add(time.Minute)) // Round(0) strips the monotonic reading
		ctx := context.Background()
		load := func(context.Context) (int, time.Time, error) { return 3, time.Now().Add(2 * time.Minute), nil }
		if v, err := c.Fetch(ctx, "fetched", load); err != nil || v != 3 {
			t.Fatalf("Fetch: %d, %v", v, err)
		}
		time.Sleep(time.Minute - time.Nanosecond)
		synctest.Wait()
		for k, want := range map[string]int{"mono": 1, "wall": 2, "fetched": 3} {
			if v, ok := c.Get(k); !ok || v != want {
				t.Fatalf("%s expired early: %d, %v", k, v, ok)
			}
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait() // the timers due now have fired
		if n := c.Len(); n != 1 {
			t.Fatalf("%d entries held after two expired, want 1: expired ones stay in memory", n)
		}
		for _, k := range []string{"mono", "wall"} {
			if _, ok := c.Get(k); ok {
				t.Fatalf("%s outlived its expiry", k)
			}
		}
		if _, ok := c.GetBytes([]byte("fetched")); !ok {
			t.Fatal("fetched expired a minute early")
		}
		c.Set("fetched", 5, time.Now().Add(2*time.Minute)) // a later value: its old timer must not drop it
		time.Sleep(time.Minute)
		synctest.Wait()
		if v, ok := c.GetBytes([]byte("fetched")); !ok || v != 5 {
			t.Fatalf("the value stored again was dropped at the first one's expiry: %d, %v", v, ok)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if _, ok := c.GetBytes([]byte("fetched")); ok {
			t.Fatal("fetched outlived its expiry")
		}
		c.Set("far", 4, time.Now().Add(math.MaxInt64)) // saturates instead of overflowing
		if _, ok := c.Get("far"); !ok {
			t.Fatal("a value for ever was not stored")
		}
		c.Clear()
	})
}

// Entries dropped before they expire (deleted, evicted, cleared) take their
// timers with them: none fires later on an entry stored since under the
// same key.
func TestCacheTimersFollowTheirEntries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTTLCache[int](systemClock{}, 2)
		c.Set("a", 1, time.Now().Add(time.Minute))
		c.Delete("a")
		c.Set("b", 2, time.Now().Add(time.Minute))
		c.Set("c", 3, time.Now().Add(time.Minute))
		c.Set("d", 4, time.Now().Add(time.Minute)) // evicts b
		time.Sleep(30 * time.Second)
		c.Set("a", 5, time.Now().Add(time.Hour))
		c.Set("b", 6, time.Now().Add(time.Hour)) // evicts c
		time.Sleep(time.Minute)
		synctest.Wait()
		for k, want := range map[string]int{"a": 5, "b": 6} {
			if v, ok := c.Get(k); !ok || v != want {
				t.Errorf("%s: %d, %v; want %d: an old timer dropped a newer entry", k, v, ok, want)
			}
		}
		if n := c.Len(); n != 2 {
			t.Errorf("%d entries, want 2", n)
		}
		c.Clear()
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		if n := c.Len(); n != 0 {
			t.Errorf("%d entries after Clear", n)
		}

		// A timer that fired just as its entry was replaced (Stop and
		// Reset come too late for it) finds another entry under the key,
		// or its own with a later expiry: it drops neither.
		entry := func(k string) *cacheEntry[int] { return c.entries[k].Value.(*cacheEntry[int]) }
		c.Set("k", 1, time.Now().Add(time.Minute))
		replaced := entry("k")
		c.Delete("k")
		c.Set("k", 2, time.Now().Add(time.Hour))
		c.Set("j", 3, time.Now().Add(time.Minute))
		extended := entry("j")
		c.Set("j", 4, time.Now().Add(time.Hour))
		time.Sleep(time.Minute)
		c.expire(replaced)
		c.expire(extended)
		for k, want := range map[string]int{"k": 2, "j": 4} {
			if v, ok := c.Get(k); !ok || v != want {
				t.Errorf("%s: %d, %v after a late timer of the value it replaced; want %d", k, v, ok, want)
			}
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := c.Len(); n != 0 {
			t.Errorf("%d entries an hour later, want 0: a late timer left an entry without one", n)
		}
	})
}

// Issue #13's ceiling: a hit through the public API allocates nothing: the
// caller's copy is a value in its frame, a bucketed balance's included (its
// buckets are shared with the cache, which nobody writes; Buckets() copies
// them only for a caller who reads them).
func TestCacheHitAllocationCeiling(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts; .ci/run also runs this test without -race")
	}
	expires := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	// A balance hit is a value in the caller's frame: nothing to allocate,
	// whichever shape the worker sent.
	for _, tc := range []struct {
		name, balance string
		balanceAllocs float64
	}{
		{"v2.1", billingV21Body, 0},
		{"bucketed", billingBucketedBody, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var requests atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				w.Header().Set("Content-Type", "application/json")
				if strings.Contains(r.URL.Path, "/export") {
					fmt.Fprintf(w, `{"success":true,"downloadUrl":"https://store.test/p.zip?sig=1","expiresAt":%q,"filename":"p.zip","version":{"id":"ver-9","prompt":"a shop","createdAt":"2025-06-01T10:00:00.000Z"}}`, expires)
					return
				}
				io.WriteString(w, tc.balance)
			}))
			defer srv.Close()
			c, err := NewWorkerClient(WithBaseURL(srv.URL), WithSecret(testSecret))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for name, hit := range map[string]func() error{
				"balance": func() error { _, err := c.Billing.Balance(ctx, "u1"); return err },
				"link":    func() error { _, err := c.Exports.ProjectLink(ctx, "p1", "u1"); return err },
			} {
				if err := hit(); err != nil {
					t.Fatal(err)
				}
				before := requests.Load()
				n := testing.AllocsPerRun(1000, func() {
					if err := hit(); err != nil {
						t.Fatal(err)
					}
				})
				ceiling := 0.0 // a link: the caller's copy is a value
				if name == "balance" {
					ceiling = tc.balanceAllocs
				}
				if n > ceiling {
					t.Errorf("%s hit: %v allocations, want at most %v", name, n, ceiling)
				}
				if d := requests.Load() - before; d != 0 {
					t.Errorf("%s: %d requests while measuring hits", name, d)
				}
			}
		})
	}
}
