package sheen

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestCacheExpiresAndIsBounded(t *testing.T) {
	clock := newFakeClock(limiterStart)
	c := newTTLCache[int](clock, 2)
	c.Set("a", 1, clock.Now().Add(time.Minute))
	c.Set("b", 2, clock.Now().Add(2*time.Minute))
	c.Set("gone", 9, clock.Now()) // already expired: not stored
	if _, ok := c.Get("gone"); ok || c.Len() != 2 {
		t.Fatalf("an expired value was stored (len %d)", c.Len())
	}
	c.Set("c", 3, clock.Now().Add(3*time.Minute)) // full: "a" expires soonest and goes
	if _, ok := c.Get("a"); ok || c.Len() != 2 {
		t.Fatalf("bound not kept: len %d", c.Len())
	}
	clock.Advance(2 * time.Minute)
	if _, ok := c.Get("b"); ok {
		t.Fatal("b outlived its expiry")
	}
	if v, ok := c.Get("c"); !ok || v != 3 {
		t.Fatal("c expired early")
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
}

// A value loaded before an invalidation is not stored by it, and one
// impatient caller does not fail the others sharing its load.
func TestCacheDeleteDuringLoadAndImpatientCaller(t *testing.T) {
	clock := newFakeClock(limiterStart)
	c := newTTLCache[int](clock, 10)
	release := make(chan struct{})
	started := make(chan struct{})
	load := func(ctx context.Context) (int, time.Time, error) {
		close(started)
		<-release
		return 1, clock.Now().Add(time.Minute), ctx.Err()
	}
	impatient, cancel := context.WithCancel(context.Background())
	firstDone := make(chan error, 1)
	go func() { _, err := c.Fetch(impatient, "k", load); firstDone <- err }()
	<-started
	secondDone := make(chan error, 1)
	go func() {
		_, err := c.Fetch(context.Background(), "k", func(context.Context) (int, time.Time, error) {
			t.Error("a second load started while one was under way")
			return 0, time.Time{}, nil
		})
		secondDone <- err
	}()
	waitForWaiters(c, "k", 2)
	cancel()
	if err := <-firstDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("the impatient caller: %v", err)
	}
	close(release)
	if err := <-secondDone; err != nil {
		t.Fatalf("the patient caller failed with the impatient one: %v", err)
	}

	// Now a load that an invalidation overtakes.
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Fetch(context.Background(), "x", func(context.Context) (int, time.Time, error) {
			c.Delete("x") // the value changed while it was being read
			return 5, clock.Now().Add(time.Minute), nil
		})
	}()
	<-done
	if _, ok := c.Get("x"); ok {
		t.Fatal("a value loaded before its invalidation was cached")
	}
}

// A load whose callers have all given up is cancelled: a hung worker does
// not keep a goroutine once nobody waits, and the next caller starts afresh.
func TestCacheAbandonedLoadIsCancelled(t *testing.T) {
	clock := newFakeClock(limiterStart)
	c := newTTLCache[int](clock, 10)
	cancelled := make(chan struct{})
	started := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Fetch(ctx, "k", func(lctx context.Context) (int, time.Time, error) {
			close(started)
			<-lctx.Done() // a worker that never answers
			close(cancelled)
			return 0, time.Time{}, lctx.Err()
		})
		done <- err
	}()
	<-started
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("caller: %v", err)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the abandoned load was not cancelled")
	}
	v, err := c.Fetch(context.Background(), "k", func(context.Context) (int, time.Time, error) {
		return 3, clock.Now().Add(time.Minute), nil
	})
	if err != nil || v != 3 {
		t.Fatalf("the next caller joined the dead load: %d %v", v, err)
	}
}

// waitForWaiters blocks until n callers wait on key's load.
func waitForWaiters[V any](c *ttlCache[V], key string, n int) {
	for {
		c.mu.Lock()
		f := c.flights[key]
		got := 0
		if f != nil {
			got = f.waiters
		}
		c.mu.Unlock()
		if got >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
