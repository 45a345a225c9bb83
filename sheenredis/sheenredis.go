// Package sheenredis runs sheen-go in fleet mode on Redis: one rate-limit
// quota, one cache of balances and download links, and one replay guard for
// every replica of a service. Each piece is optional and plugs into the
// client or the Verifier on its own:
//
//	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379", ContextTimeoutEnabled: true})
//	lim, _ := sheenredis.NewLimiter(rdb, sheenredis.LimiterOptions{})
//	cache, _ := sheenredis.NewCache(rdb, secret, sheenredis.CacheOptions{})
//	client, _ := sheen.NewWorkerClientFromEnv(sheen.WithSharedLimiter(lim), sheen.WithCache(sheen.CacheConfig{Shared: cache}))
//
//	nonces, _ := sheenredis.NewNonceStore(rdb, sheenredis.NonceOptions{})
//	v := &sheenhttp.Verifier{Secret: secret, Scheme: sheen.SigningDual, Nonces: nonces}
//
// # What each piece buys
//
// Limiter: the replicas that share the worker's per-IP quota stay inside it
// together, following its x-ratelimit-* window as the client's own limiter
// does (one probe while the window is unknown, never more requests in flight
// than remain, a 429 pauses everyone), with each decision one Lua script.
//
// Cache: a balance or a link asked for by many replicas at once is fetched
// from the worker once (one replica loads, the others wait for its value),
// and dropping it (a build started, a 402, Invalidate) drops it everywhere.
//
// NonceStore: a signed request replayed to another replica is refused.
//
// # Failure behaviour
//
// Every Redis command runs under Options.Timeout (100 ms by default). When
// Redis is down or slower than that, the limiter and the cache answer
// sheen.ErrSharedUnavailable and the client uses its own limiter and caches
// for that call; one warning is logged when an outage starts and one
// message when Redis answers again. While Redis is down, one call per
// Options.RetryEvery (1 s) tries it again, the others fall back at once, so
// an outage costs no latency. No call waits on Redis past its context.
//
// What a piece could not tell Redis during an outage (the cache's
// deletions, the limiter's releases, a failing-open NonceStore's nonces)
// is kept, bounded, and delivered when Redis answers again, on a goroutine
// of the piece's own, so that the call that finds Redis back does not wait
// for it; a delivery that fails keeps what it could not send for the next
// one. Close a piece when done with it, so that no delivery outlives it.
//
// The NonceStore refuses signed requests while Redis is down (fail closed:
// the Verifier's Middleware answers 503 NONCE_STORE_UNAVAILABLE), unless
// NonceOptions.FailOpen checks them on a store of the replica's own, which
// holds every nonce the replica checked and is asked first: a replay to
// the same replica is refused before, during and after an outage, one to
// another replica during the outage is not. Keep NonceOptions.TTL at
// least twice the Verifier's Skew (the defaults do): the Verifier cannot
// check that for a NonceStore as it does for a MemoryNonceStore.
//
// # What Redis holds
//
// Key names carry no user, project or version IDs and no nonce: the
// cache's are HMAC-SHA-256 digests keyed by the shared secret, the
// NonceStore's SHA-256 digests of the nonce (it has no secret). Cached
// values are sealed with AES-256-GCM under a key derived from the shared
// secret with HKDF-SHA-256, bound to their key name, so neither a MONITOR
// log, a dump nor another tenant of the Redis sees a signed URL, a balance
// or whom it belongs to. The limiter keeps counts and times only.
//
// The client must be made with ContextTimeoutEnabled: true (the
// constructors refuse one without it): otherwise go-redis ignores the
// deadlines that bound each command.
package sheenredis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sheenapps/sheen-go"
)

// Defaults of Options.
const (
	// DefaultTimeout bounds each Redis command.
	DefaultTimeout = 100 * time.Millisecond
	// DefaultRetryEvery is how often one call tries Redis again while it is
	// down.
	DefaultRetryEvery = time.Second
	// DefaultPrefix begins every key.
	DefaultPrefix = "sheen"
)

// Options are the settings every piece shares.
type Options struct {
	// Prefix begins every key (default DefaultPrefix). Replicas that share
	// state use the same prefix; services that must not, different ones.
	Prefix string
	// Timeout bounds each Redis command (default DefaultTimeout); one that
	// takes longer counts as Redis being down.
	Timeout time.Duration
	// RetryEvery is how often, while Redis is down, one call tries it again
	// (default DefaultRetryEvery); the others fall back at once.
	RetryEvery time.Duration
	// Logger gets one warning when an outage starts and one info record when
	// Redis answers again (default slog.Default()). Records never hold keys,
	// values or secrets.
	Logger *slog.Logger
}

// check refuses negative settings and fills in the defaults.
func (o *Options) check(what string) error {
	switch {
	case o.Timeout < 0:
		return fmt.Errorf("sheenredis: %s: Timeout is negative", what)
	case o.RetryEvery < 0:
		return fmt.Errorf("sheenredis: %s: RetryEvery is negative", what)
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RetryEvery == 0 {
		o.RetryEvery = DefaultRetryEvery
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// checkClient refuses a nil client, and one that would not honour the
// deadlines that bound each command.
func checkClient(rdb redis.UniversalClient, what string) error {
	enabled := true
	switch c := rdb.(type) {
	case nil:
		return fmt.Errorf("sheenredis: %s: the Redis client is nil", what)
	case *redis.Client:
		enabled = c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		enabled = c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		enabled = c.Options().ContextTimeoutEnabled
	}
	if !enabled {
		return fmt.Errorf("sheenredis: %s: the Redis client needs ContextTimeoutEnabled: true, so that a slow Redis falls back within Options.Timeout", what)
	}
	return nil
}

// health follows one piece's outages: down from the first failure until a
// command succeeds again, logged once each way.
type health struct {
	what     string // "limiter", "cache", "nonce store"
	fallback string // what calls do meanwhile
	retry    time.Duration
	logger   *slog.Logger
	// recovered, when set, runs (on the caller's goroutine) when Redis
	// answers again after an outage. It must not block: it only starts
	// the delivery of what the outage queued (flusher.start).
	recovered func()

	mu      sync.Mutex
	down    bool
	since   time.Time
	nextTry time.Time
	cause   error
}

// allow reports whether a call may use Redis now: always while it is up,
// and one call per retry interval while it is down.
func (h *health) allow() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.down {
		return true
	}
	if now := time.Now(); !now.Before(h.nextTry) {
		h.nextTry = now.Add(h.retry)
		return true
	}
	return false
}

// resting reports an outage in which it is not yet time to try Redis
// again, without using up the try.
func (h *health) resting() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.down && time.Now().Before(h.nextTry)
}

// unavailable is the error of a call that did not use Redis, or could not.
func (h *health) unavailable() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cause == nil {
		return fmt.Errorf("%w: sheenredis %s: Redis is down", sheen.ErrSharedUnavailable, h.what)
	}
	return fmt.Errorf("%w: sheenredis %s: Redis is down since %s: %v", sheen.ErrSharedUnavailable, h.what, h.since.Format(time.RFC3339), h.cause)
}

// failed records a failed command; the first of an outage is logged.
func (h *health) failed(err error) error {
	now := time.Now()
	h.mu.Lock()
	first := !h.down
	if first {
		h.down, h.since = true, now
	}
	h.cause, h.nextTry = err, now.Add(h.retry)
	h.mu.Unlock()
	if first {
		h.logger.Warn("sheenredis: Redis unavailable; "+h.fallback+" until it answers",
			slog.String("piece", h.what), slog.String("error", err.Error()))
	}
	return fmt.Errorf("%w: sheenredis %s: %v", sheen.ErrSharedUnavailable, h.what, err)
}

// ok records a command that succeeded; the first after an outage is
// logged and runs recovered.
func (h *health) ok() {
	h.mu.Lock()
	if !h.down {
		h.mu.Unlock()
		return
	}
	h.down, h.cause = false, nil
	since := h.since
	h.mu.Unlock()
	h.logger.Info("sheenredis: Redis answers again", slog.String("piece", h.what),
		slog.Duration("outage", time.Since(since).Round(time.Millisecond)))
	if h.recovered != nil {
		h.recovered()
	}
}

// up reports whether Redis answered the last command (no outage).
func (h *health) up() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.down
}

// run runs one Redis command under the timeout. A failure that is not the
// caller's (its ctx ended) marks Redis down and wraps
// sheen.ErrSharedUnavailable; redis.Nil is an answer.
func (h *health) run(ctx context.Context, timeout time.Duration, cmd func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !h.allow() {
		return h.unavailable()
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	err := cmd(cctx)
	cancel()
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		h.ok()
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return h.failed(err)
}

// flusher delivers what a piece queued while Redis was down (deletions,
// nonces, releases) on a goroutine of its own, one at a time per piece, so
// that the call whose success ends an outage does not wait for it. deliver
// sends the queue under ctx until it is empty or a command fails, and puts
// back what it could not send. close ends a delivery under way and waits
// for it.
type flusher struct {
	deliver func(ctx context.Context)
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu                  sync.Mutex
	busy, again, closed bool
}

func newFlusher(deliver func(context.Context)) *flusher {
	ctx, cancel := context.WithCancel(context.Background())
	return &flusher{deliver: deliver, ctx: ctx, cancel: cancel}
}

// start delivers the queue in the background, unless a delivery is under
// way: that one then goes round once more, for what was queued meanwhile.
func (f *flusher) start() {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.closed:
	case f.busy:
		f.again = true
	default:
		f.busy = true
		f.wg.Go(f.loop)
	}
}

func (f *flusher) loop() {
	for {
		f.deliver(f.ctx)
		f.mu.Lock()
		if !f.again || f.closed {
			f.busy, f.again = false, false
			f.mu.Unlock()
			return
		}
		f.again = false
		f.mu.Unlock()
	}
}

// close ends a delivery under way (what it did not send stays queued),
// waits for it, and starts no more. It is safe to call more than once.
func (f *flusher) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.cancel()
	f.wg.Wait()
}
