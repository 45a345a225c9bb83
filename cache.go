package sheen

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// CacheConfig shapes the client's caches of balances and download links;
// give it with WithCache. A zero field keeps its current value (the
// default, or an earlier WithCache's); a negative one means "none", as each
// field says.
type CacheConfig struct {
	// BalanceTTL is how long a user's balance is reused (default
	// DefaultBalanceCacheTTL; negative: balances are not cached).
	BalanceTTL time.Duration
	// LinkMargin is how long before its expiry a cached download link stops
	// being handed out (default DefaultLinkMargin; negative: a link is
	// reused until it expires).
	LinkMargin time.Duration
	// MaxLinks is how many download links are cached at most (default
	// DefaultLinkCacheSize); when full, the least recently used link goes.
	// Negative: links are not cached (concurrent calls still share one
	// request).
	MaxLinks int
	// Shared, when set, keeps balances and download links in a cache shared
	// with the other replicas of the service (see SharedCache), instead of
	// the client's own caches, which stay as the fallback while Shared
	// cannot answer. BalanceTTL and LinkMargin still apply, and a cache
	// turned off here is not shared either.
	Shared SharedCache
}

// WithCache sets how the client caches balances and download links; see
// CacheConfig.
func WithCache(cfg CacheConfig) Option {
	return func(c *config) error {
		if cfg.BalanceTTL != 0 {
			c.billing.balanceTTL, c.billing.balanceTTLSet = max(cfg.BalanceTTL, 0), true
		}
		if cfg.LinkMargin != 0 {
			c.exports.margin, c.exports.marginSet = max(cfg.LinkMargin, 0), true
		}
		if cfg.MaxLinks != 0 {
			c.exports.cacheSize, c.exports.cacheSizeSet = max(cfg.MaxLinks, 0), true
		}
		if cfg.Shared != nil {
			c.billing.shared, c.exports.shared = cfg.Shared, cfg.Shared
		}
		return nil
	}
}

// ttlCache holds values until they expire, at most max of them (when full,
// the least recently used goes), with one load at a time per key:
// concurrent misses share it. Billing balances and export links both live in
// one. Every operation is O(1): a map finds an entry, a list keeps the
// entries in order of use.
//
// Expiries are kept as nanoseconds on the cache's clock since base, the
// clock's time when the cache was made. With the system clock, each entry
// has a runtime timer that drops it when it expires (time.AfterFunc, on the
// monotonic clock as Go's own deadlines are): a hit reads no clock at all,
// only asks the map, and an expired value does not sit in memory until
// someone looks it up. A value lives the time it was given when stored,
// whatever the wall clock does meanwhile, give or take the scheduler's
// delay in running the timer (microseconds; a value is never dropped
// early). With any other clock (a test's), nothing runs on its own: a
// lookup reads the clock and compares integers.
type ttlCache[V any] struct {
	clock Clock
	base  time.Time // the clock's time when the cache was made
	timed bool      // clock is the system clock: entries are dropped by their timers
	max   int
	// loadTimeout bounds how long one shared load may run, on the runtime's
	// clock (zero: no bound of the cache's own; the loader's requests have
	// theirs). Set it before the cache is used.
	loadTimeout time.Duration
	// onEvict, when set, hears of each entry dropped to make room (for
	// telemetry). It runs under the cache's lock: keep it quick. Set it
	// before the cache is used.
	onEvict func()

	mu      sync.Mutex
	entries map[string]*list.Element // each holds a *cacheEntry[V]
	lru     list.List                // front: most recently used
	flights map[string]*flight[V]    // loads whose value may still be stored
}

type cacheEntry[V any] struct {
	key     string
	value   V
	expires int64       // nanoseconds since the cache's base (see now)
	timer   *time.Timer // drops the entry at expires (system clock only)
}

// flight is one load of a key and the callers waiting for it.
type flight[V any] struct {
	ctx     context.Context // the load's: the first caller's values, no deadline of a caller
	cancel  context.CancelFunc
	waiters int           // callers still waiting; the load is cancelled when it drops to 0
	done    chan struct{} // closed once value and err are set
	value   V
	err     error
}

// errLoadAborted is what callers sharing a load get when the loader panicked
// or exited its goroutine instead of returning.
var errLoadAborted = errors.New("sheen: cache: the load ended without an answer")

// loadPanicError is what callers sharing a load get when the loader
// panicked: it matches errLoadAborted and names the panic value (any URL
// query in it redacted: a signed link's is a credential).
type loadPanicError struct{ value string }

func (e *loadPanicError) Error() string {
	return errLoadAborted.Error() + ": the load panicked: " + e.value
}

func (e *loadPanicError) Unwrap() error { return errLoadAborted }

func newLoadPanicError(p any) error {
	return &loadPanicError{value: scrubURLQueries(fmt.Sprint(p))}
}

func newTTLCache[V any](clock Clock, max int) *ttlCache[V] {
	if max <= 0 {
		max = 1
	}
	_, timed := clock.(systemClock)
	return &ttlCache[V]{clock: clock, base: clock.Now(), timed: timed, max: max, entries: make(map[string]*list.Element), flights: make(map[string]*flight[V])}
}

// now is the cache's clock reading: nanoseconds since c.base.
func (c *ttlCache[V]) now() int64 {
	if c.timed {
		return int64(time.Since(c.base)) // the monotonic clock alone
	}
	return int64(c.clock.Now().Sub(c.base))
}

// lookupNow is the reading a lookup compares expiries with: with the
// system clock none is needed (every entry held is live: its timer drops
// it when it expires), so the earliest reading there is.
func (c *ttlCache[V]) lookupNow() int64 {
	if c.timed {
		return math.MinInt64
	}
	return c.now()
}

// deadline reads the clock and returns its reading (as now does) and
// expires on the same scale: the reading plus the time left until
// expires, as Time.Sub measures it (on the monotonic clock when expires
// has a monotonic reading, on the wall clock otherwise). The time left is
// zero or less when expires has passed.
func (c *ttlCache[V]) deadline(expires time.Time) (now, deadline int64) {
	t := c.clock.Now()
	now = int64(t.Sub(c.base))
	left := int64(expires.Sub(t))
	if left <= 0 {
		return now, now
	}
	if left > math.MaxInt64-now {
		return now, math.MaxInt64
	}
	return now, now + left
}

// Get returns the value for key if it has not expired.
func (c *ttlCache[V]) Get(key string) (V, bool) {
	now := c.lookupNow()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.getLocked(key, now)
}

// GetBytes is Get for a key held in a byte slice: the lookup does not
// allocate, so a caller can build its key in a buffer on its stack.
func (c *ttlCache[V]) GetBytes(key []byte) (V, bool) {
	now := c.lookupNow()
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[string(key)]
	return c.liveLocked(el, ok, now)
}

// getLocked returns key's value if it has not expired, marking it used. An
// expired entry found on the way is dropped.
func (c *ttlCache[V]) getLocked(key string, now int64) (V, bool) {
	el, ok := c.entries[key]
	return c.liveLocked(el, ok, now)
}

// liveLocked is the value of the entry el, found (ok) by a lookup, if it
// has not expired.
func (c *ttlCache[V]) liveLocked(el *list.Element, ok bool, now int64) (V, bool) {
	if ok {
		e := el.Value.(*cacheEntry[V])
		if now < e.expires {
			c.lru.MoveToFront(el)
			return e.value, true
		}
		c.removeLocked(el)
	}
	var zero V
	return zero, false
}

// Set stores value for key until expires. A value already expired is not
// stored (and drops the one held).
func (c *ttlCache[V]) Set(key string, value V, expires time.Time) {
	now, deadline := c.deadline(expires)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(key, value, deadline, now)
}

// setLocked stores value for key until expires, both on the cache's scale
// (see now).
func (c *ttlCache[V]) setLocked(key string, value V, expires, now int64) {
	el, ok := c.entries[key]
	switch {
	case now >= expires:
		if ok {
			c.removeLocked(el)
		}
		return
	case ok:
		e := el.Value.(*cacheEntry[V])
		e.value, e.expires = value, expires
		c.armLocked(e, now)
		c.lru.MoveToFront(el)
		return
	case len(c.entries) >= c.max:
		// Full: the least recently used entry makes room, its element
		// reused for the new one.
		el = c.lru.Back()
		old := el.Value.(*cacheEntry[V])
		old.stop()
		delete(c.entries, old.key)
		e := &cacheEntry[V]{key: key, value: value, expires: expires}
		c.armLocked(e, now)
		el.Value = e
		c.lru.MoveToFront(el)
		if c.onEvict != nil {
			c.onEvict()
		}
	default:
		e := &cacheEntry[V]{key: key, value: value, expires: expires}
		c.armLocked(e, now)
		el = c.lru.PushFront(e)
	}
	c.entries[key] = el
}

// armLocked sets e's timer to drop it at its expiry (system clock only).
func (c *ttlCache[V]) armLocked(e *cacheEntry[V], now int64) {
	if !c.timed {
		return
	}
	d := time.Duration(e.expires - now)
	if e.timer != nil {
		e.timer.Reset(d)
		return
	}
	e.timer = time.AfterFunc(d, func() { c.expire(e) })
}

// expire is e's timer firing: it drops e if e is still held and has
// expired. A timer that fired as e was replaced by a later value finds
// either another entry under the key, or e with a later expiry, which it
// waits for again.
func (c *ttlCache[V]) expire(e *cacheEntry[V]) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[e.key]
	if !ok || el.Value.(*cacheEntry[V]) != e {
		return
	}
	if now < e.expires {
		e.timer.Reset(time.Duration(e.expires - now))
		return
	}
	c.removeLocked(el)
}

// stop cancels e's timer, if it has one.
func (e *cacheEntry[V]) stop() {
	if e.timer != nil {
		e.timer.Stop()
	}
}

func (c *ttlCache[V]) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry[V])
	e.stop()
	delete(c.entries, e.key)
}

// Delete drops key, and makes sure a load already under way for it is
// neither stored nor shared with later callers (those already waiting for
// it still get its answer).
func (c *ttlCache[V]) Delete(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.removeLocked(el)
	}
	delete(c.flights, key)
}

// Clear drops every entry, and makes sure that no load already under way
// is stored or shared with later callers.
func (c *ttlCache[V]) Clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.lru.Front(); el != nil; el = el.Next() {
		el.Value.(*cacheEntry[V]).stop()
	}
	clear(c.entries)
	c.lru.Init()
	clear(c.flights)
}

// Len reports how many entries are held: with the system clock, live ones
// (give or take a timer about to fire); with another clock, expired ones
// not yet looked up are counted too.
func (c *ttlCache[V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Fetch returns the cached value for key, or loads it. Concurrent callers
// missing on one key share one load. load returns the value and when it
// expires; an error is returned to every caller sharing the load and nothing
// is stored.
//
// Each caller stops waiting when its own ctx ends, with ctx's error. The
// load runs on the first caller's context without its cancellation or
// deadline (its values stay visible), bounded only by loadTimeout: one
// impatient caller cannot fail the others. When every caller has stopped
// waiting the load is cancelled, so a hung worker cannot hold a goroutine
// after its callers are gone.
//
// A load runs on a goroutine of its own only when its first caller can
// leave early (its ctx can end); otherwise that caller runs it. A hit does
// not allocate here, but a closure passed as load does, at the call site,
// on every call: it escapes, as the load may outlive its caller. Callers
// that care check Get first.
func (c *ttlCache[V]) Fetch(ctx context.Context, key string, load func(context.Context) (V, time.Time, error)) (V, error) {
	v, _, err := c.fetch(ctx, key, load)
	return v, err
}

// fetch is Fetch that also reports a hit: the value was held, and no load
// was started or joined.
func (c *ttlCache[V]) fetch(ctx context.Context, key string, load func(context.Context) (V, time.Time, error)) (V, bool, error) {
	now := c.lookupNow()
	c.mu.Lock()
	if v, ok := c.getLocked(key, now); ok {
		c.mu.Unlock()
		return v, true, nil
	}
	if err := ctx.Err(); err != nil {
		c.mu.Unlock()
		var zero V
		return zero, false, err // do not start a load for a caller already gone
	}
	f := c.flights[key]
	first := f == nil
	if first {
		f = c.startLocked(ctx, key)
	}
	f.waiters++
	c.mu.Unlock()

	if first {
		if ctx.Done() == nil {
			c.run(key, f, load, true) // this caller cannot leave before the load ends
		} else {
			go c.run(key, f, load, false)
		}
	}
	select {
	case <-f.done:
		return f.value, false, f.err
	case <-ctx.Done():
	}
	select {
	case <-f.done: // landed meanwhile: take it
		return f.value, false, f.err
	default:
	}
	c.leave(key, f)
	var zero V
	return zero, false, ctx.Err()
}

// startLocked registers a new load of key on ctx's values.
func (c *ttlCache[V]) startLocked(ctx context.Context, key string) *flight[V] {
	f := &flight[V]{done: make(chan struct{})}
	base := context.WithoutCancel(ctx)
	if c.loadTimeout > 0 {
		f.ctx, f.cancel = context.WithTimeout(base, c.loadTimeout)
	} else {
		f.ctx, f.cancel = context.WithCancel(base)
	}
	c.flights[key] = f
	return f
}

// run performs f's load, stores its value unless the key was invalidated or
// the load abandoned meanwhile, and hands the answer to f's waiters.
//
// A loader that panics hands every waiter a *loadPanicError. On a goroutine
// of the cache's own (inline false) the panic stops there: no caller could
// recover it, and it would end the program. Run inline, on the first
// caller's goroutine, it goes on to that caller, as it would without a
// cache.
func (c *ttlCache[V]) run(key string, f *flight[V], load func(context.Context) (V, time.Time, error), inline bool) {
	var (
		v       V
		expires time.Time
		err     = errLoadAborted // unless load returns
	)
	defer func() {
		p := recover()
		if p != nil {
			err = newLoadPanicError(p)
		}
		if err != nil {
			var zero V
			v = zero
		}
		now, deadline := c.deadline(expires)
		c.mu.Lock()
		if c.flights[key] == f {
			delete(c.flights, key)
			if err == nil {
				c.setLocked(key, v, deadline, now)
			}
		}
		f.value, f.err = v, err
		c.mu.Unlock()
		f.cancel()
		close(f.done)
		if p != nil && inline {
			panic(p)
		}
	}()
	v, expires, err = load(f.ctx)
}

// leave counts a caller out of f. When the last one leaves, the load is
// cancelled and forgotten: later callers start afresh instead of joining a
// load nobody waits for, and what it may still return is not stored.
func (c *ttlCache[V]) leave(key string, f *flight[V]) {
	c.mu.Lock()
	f.waiters--
	last := f.waiters == 0
	if last && c.flights[key] == f {
		delete(c.flights, key)
	}
	c.mu.Unlock()
	if last {
		f.cancel()
	}
}
