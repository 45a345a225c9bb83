package sheen

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// ttlCache holds values until they expire, bounded in size, with one load at
// a time per key (concurrent misses share it). Billing balances and export
// links both live in one.
type ttlCache[V any] struct {
	clock Clock
	max   int

	mu      sync.Mutex
	entries map[string]cacheEntry[V]
	epoch   uint64 // bumped by Delete, so a load started before it is not stored
	group   singleflight.Group
	flights map[string]*flight // loads under way, with their waiters
}

type cacheEntry[V any] struct {
	value   V
	expires time.Time
}

func newTTLCache[V any](clock Clock, max int) *ttlCache[V] {
	if max <= 0 {
		max = 1
	}
	return &ttlCache[V]{clock: clock, max: max, entries: make(map[string]cacheEntry[V]), flights: make(map[string]*flight)}
}

// Get returns the value for key if it has not expired.
func (c *ttlCache[V]) Get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !c.clock.Now().Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.value, true
}

// Set stores value for key until expires. A value already expired is not
// stored.
func (c *ttlCache[V]) Set(key string, value V, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(key, value, expires)
}

func (c *ttlCache[V]) setLocked(key string, value V, expires time.Time) {
	now := c.clock.Now()
	if !now.Before(expires) {
		delete(c.entries, key)
		return
	}
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.max {
		c.evictLocked(now)
	}
	c.entries[key] = cacheEntry[V]{value: value, expires: expires}
}

// evictLocked drops expired entries, and if none were, the one closest to
// expiry.
func (c *ttlCache[V]) evictLocked(now time.Time) {
	var soonest string
	var soonestAt time.Time
	dropped := false
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
			dropped = true
			continue
		}
		if soonestAt.IsZero() || e.expires.Before(soonestAt) {
			soonest, soonestAt = k, e.expires
		}
	}
	if !dropped && soonest != "" {
		delete(c.entries, soonest)
	}
}

// Delete drops key, and makes sure a load already under way for it is
// neither stored nor shared with later callers.
func (c *ttlCache[V]) Delete(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, key)
	c.epoch++
	c.group.Forget(key)
	delete(c.flights, key)
}

// Len reports how many entries are held, expired ones included.
func (c *ttlCache[V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Fetch returns the cached value for key, or loads it. Concurrent callers
// missing on one key share one load. load returns the value and when it
// expires; an error is returned to every caller sharing the load and nothing
// is stored. Each caller stops waiting when its own ctx ends. The load runs
// on the first caller's context without its cancellation (but with its
// deadline), so one impatient caller cannot fail the others; when every
// caller has stopped waiting the load is cancelled, so a hung worker cannot
// hold a goroutine after its callers are gone.
func (c *ttlCache[V]) Fetch(ctx context.Context, key string, load func(context.Context) (V, time.Time, error)) (V, error) {
	if v, ok := c.Get(key); ok {
		return v, nil
	}
	f := c.join(ctx, key)
	defer c.leave(key, f)
	ch := c.group.DoChan(key, func() (any, error) {
		defer c.landed(key, f)
		c.mu.Lock()
		epoch := c.epoch
		// A caller that missed just before another's load stored its value
		// starts a flight of its own: serve what is now cached instead.
		if e, ok := c.entries[key]; ok && c.clock.Now().Before(e.expires) {
			c.mu.Unlock()
			return e.value, nil
		}
		c.mu.Unlock()
		v, expires, err := load(f.ctx)
		if err != nil {
			return v, err
		}
		c.mu.Lock()
		if c.epoch == epoch {
			c.setLocked(key, v, expires)
		}
		c.mu.Unlock()
		return v, nil
	})
	select {
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	case r := <-ch:
		v, _ := r.Val.(V)
		return v, r.Err
	}
}

// flight is one load of a key and the callers waiting for it.
type flight struct {
	ctx     context.Context
	cancel  context.CancelFunc
	waiters int
}

// join counts the caller in on the key's current load, making one (with the
// caller's deadline but not its cancellation) if none is under way.
func (c *ttlCache[V]) join(ctx context.Context, key string) *flight {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.flights[key]
	if f == nil {
		f = &flight{}
		if deadline, ok := ctx.Deadline(); ok {
			f.ctx, f.cancel = context.WithDeadline(context.WithoutCancel(ctx), deadline)
		} else {
			f.ctx, f.cancel = context.WithCancel(context.WithoutCancel(ctx))
		}
		c.flights[key] = f
	}
	f.waiters++
	return f
}

// leave counts a caller out. When the last one leaves a load still under
// way, the load is cancelled and forgotten, so later callers start afresh
// instead of joining a load doomed to fail.
func (c *ttlCache[V]) leave(key string, f *flight) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f.waiters--
	if f.waiters > 0 {
		return
	}
	if c.flights[key] == f {
		delete(c.flights, key)
		c.group.Forget(key)
	}
	f.cancel() // nobody waits for it any more
}

// landed ends a load: later callers start a flight of their own.
func (c *ttlCache[V]) landed(key string, f *flight) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.flights[key] == f {
		delete(c.flights, key)
	}
	f.cancel()
}
