package sheenredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sheenapps/sheen-go"
)

// Defaults of LimiterOptions.
const (
	// DefaultName names the quota replicas share when no name is given.
	DefaultName = "default"
	// DefaultLease is how long a request counts in flight at most when its
	// replica never reports its answer (it crashed).
	DefaultLease = time.Minute
)

// The pace's burst and the probe hold are the client's own limiter's.
const (
	burst     = 4
	probeHold = time.Second
	// idleExpiry is how long the limiter's keys outlive their last use.
	idleExpiry = 2 * time.Hour
	// maxPendingReleases bounds the answers kept to report when Redis
	// answers again.
	maxPendingReleases = 10_000
)

// LimiterOptions configures a Limiter.
type LimiterOptions struct {
	Options
	// Name names the quota: replicas that send from one IP address (and so
	// share the worker's per-IP limit) use one name (default DefaultName).
	Name string
	// PerMinute is the fleet's own pace, every replica together (default
	// sheen.DefaultRatePerMinute, v2.1's 60), as sheen.WithRateLimit is one
	// client's; the worker's window is followed on top of it.
	PerMinute int
	// Lease is how long a request counts in flight at most when its replica
	// never reports the answer (default DefaultLease). Keep it above the
	// client's attempt timeout.
	Lease time.Duration
	// Poll is how often the first request waiting in a replica asks again
	// while it waits for other replicas' answers (default DefaultPoll).
	Poll time.Duration
	// Clock tells the time (default the system clock); give it the clock
	// given to sheen.WithClock, if any. The replicas' clocks must agree to
	// well within the worker's reset precision (a second): run NTP.
	Clock sheen.Clock
}

// Limiter is a sheen.SharedLimiter on Redis, for sheen.WithSharedLimiter:
// every replica's requests and answers go through one Lua script each, so
// that together they follow the worker's window as one client would. In a
// replica, requests wait in line and only the first asks Redis. It is safe
// for concurrent use. Close it when done with it (see Close).
type Limiter struct {
	rdb      redis.UniversalClient
	o        LimiterOptions
	h        *health
	flush    *flusher
	keys     []string
	interval string // the pace's interval, ms
	id       string // this Limiter's part of request ids
	seq      atomic.Uint64

	line      chan struct{} // holds a token while a request is first in line
	kick      chan struct{} // a release in this replica: the first in line looks again
	hardUntil atomic.Int64  // when a wait sure to last ends (UnixNano on the clock), 0 when none

	mu      sync.Mutex
	pending [][]any // releases Redis missed (releaseScript's or unadmitScript's ARGV), to report when it answers again
}

// NewLimiter makes a Limiter on rdb, which must have ContextTimeoutEnabled
// set.
func NewLimiter(rdb redis.UniversalClient, o LimiterOptions) (*Limiter, error) {
	if err := checkClient(rdb, "NewLimiter"); err != nil {
		return nil, err
	}
	if err := o.check("NewLimiter"); err != nil {
		return nil, err
	}
	if o.PerMinute < 0 || o.Lease < 0 || o.Poll < 0 {
		return nil, errors.New("sheenredis: NewLimiter: PerMinute, Lease and Poll must not be negative")
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.PerMinute == 0 {
		o.PerMinute = sheen.DefaultRatePerMinute
	}
	if o.Lease == 0 {
		o.Lease = DefaultLease
	}
	if o.Poll == 0 {
		o.Poll = DefaultPoll
	}
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	base := o.Prefix + ":rl:{" + o.Name + "}"
	l := &Limiter{
		rdb: rdb, o: o,
		keys:     []string{base + ":s", base + ":f", base + ":p"},
		interval: strconv.FormatFloat(60_000/float64(o.PerMinute), 'f', 3, 64),
		id:       hex.EncodeToString(id[:]) + ":",
		line:     make(chan struct{}, 1),
		kick:     make(chan struct{}, 1),
	}
	l.flush = newFlusher(l.deliver)
	l.h = &health{what: "limiter", fallback: "each replica paces itself with its own limiter", retry: o.RetryEvery, logger: o.Logger, recovered: l.flush.start}
	return l, nil
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// ms is t in milliseconds since the epoch, 0 for the zero time.
func ms(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatFloat(float64(t.UnixNano())/1e6, 'f', 3, 64)
}

// msd is d in milliseconds.
func msd(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 3, 64) }

// decision is what acquireScript said.
type decision struct {
	admitted, probe bool
	wait            time.Duration
	kind            int64 // 0 another replica's answer may end the wait, 1 sure to last, 2 the pace
	limit, rem      int64
	windowEnd       time.Time
}

// Acquire implements sheen.SharedLimiter.
func (l *Limiter) Acquire(ctx context.Context, maxWait time.Duration) (func(sheen.RateAnswer), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if l.h.resting() {
		return nil, l.h.unavailable() // fall back at once, without queueing
	}
	if until := l.hardUntil.Load(); until != 0 {
		// Refuse at once what the first in line is sure to wait.
		if d := time.Duration(until - l.o.Clock.Now().UnixNano()); d > 0 {
			if err := checkWait(ctx, maxWait, d, decision{limit: -1, rem: -1}); err != nil {
				return nil, err
			}
		}
	}
	select {
	case l.line <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-l.line }()
	for {
		d, member, err := l.decide(ctx)
		if err != nil {
			return nil, err
		}
		if d.admitted {
			l.hardUntil.Store(0)
			return l.releaser(member), nil
		}
		wait := d.wait
		if d.kind != 0 {
			if err := checkWait(ctx, maxWait, wait, d); err != nil {
				return nil, err
			}
		}
		if d.kind == 1 {
			l.hardUntil.Store(l.o.Clock.Now().Add(wait).UnixNano())
		} else {
			wait = min(wait, l.o.Poll) // an answer elsewhere may end it early
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-l.o.Clock.After(max(wait, 50*time.Microsecond)):
		case <-l.kick:
		}
	}
}

// decide runs acquireScript once for a new request.
func (l *Limiter) decide(ctx context.Context) (decision, string, error) {
	member := l.id + strconv.FormatUint(l.seq.Add(1), 36)
	now := l.o.Clock.Now()
	var res []int64
	err := l.h.run(ctx, l.o.Timeout, func(ctx context.Context) error {
		var err error
		res, err = acquireScript.Run(ctx, l.rdb, l.keys,
			ms(now), member, msd(l.o.Lease), l.interval, burst, msd(probeHold), idleExpiry.Milliseconds()).Int64Slice()
		return err
	})
	if err != nil {
		return decision{}, "", err
	}
	switch {
	case len(res) >= 2 && res[0] == 1:
		if err := ctx.Err(); err != nil {
			// The caller is gone: the request will not leave, so it must
			// not count in flight (its pace slot is spent).
			l.unadmit(ctx, member)
			return decision{}, "", err
		}
		return decision{admitted: true, probe: res[1] == 1}, member, nil
	case len(res) >= 7:
		d := decision{wait: time.Duration(res[2]) * time.Microsecond, kind: res[3], limit: res[4], rem: res[5]}
		if res[6] > 0 {
			d.windowEnd = time.UnixMilli(res[6])
		}
		return d, member, nil
	}
	return decision{}, "", fmt.Errorf("%w: sheenredis limiter: an answer of an unexpected shape", sheen.ErrSharedUnavailable)
}

// checkWait refuses a wait past ctx's deadline or longer than maxWait, as
// the client's own limiter does.
func checkWait(ctx context.Context, maxWait, d time.Duration, dec decision) error {
	why := ""
	if deadline, ok := ctx.Deadline(); ok && d > time.Until(deadline) {
		why = "the context deadline"
	} else if maxWait > 0 && d > maxWait {
		why = "the maximum wait of " + maxWait.String()
	}
	if why == "" {
		return nil
	}
	return &sheen.RateLimitError{
		APIError: &sheen.APIError{
			StatusCode: http.StatusTooManyRequests,
			Code:       "client_rate_limited",
			Message:    fmt.Sprintf("rate limit quota shared by the fleet frees up in %s, after %s; request not sent", d.Round(time.Millisecond), why),
			RetryAfter: d,
		},
		Limit: int(dec.limit), Remaining: int(dec.rem), Reset: dec.windowEnd,
	}
}

// releaser is the release of the request member.
func (l *Limiter) releaser(member string) func(sheen.RateAnswer) {
	var once atomic.Bool
	return func(a sheen.RateAnswer) {
		if once.Swap(true) {
			return
		}
		answered := "0"
		if a.Answered {
			answered = "1"
		}
		args := []any{member, ms(a.At), answered, a.Limit, a.Remaining, ms(a.Reset), msd(a.ResetPrecision), ms(a.PauseUntil), idleExpiry.Milliseconds()}
		l.report(context.Background(), args)
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// unadmitScript takes back a request that acquireScript admitted but that
// will not leave, without learning anything from it.
//
// ARGV: member.
var unadmitScript = redis.NewScript(`
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
`)

// unadmit takes back the admission of member, whose caller's ctx ended.
func (l *Limiter) unadmit(ctx context.Context, member string) {
	l.report(context.WithoutCancel(ctx), []any{member})
}

// report sends one release (releaseScript's ARGV, or unadmitScript's), or
// keeps it to send when Redis answers again.
func (l *Limiter) report(ctx context.Context, args []any) {
	if err := l.release(ctx, args); !errors.Is(err, sheen.ErrSharedUnavailable) {
		return
	}
	l.mu.Lock()
	if len(l.pending) < maxPendingReleases {
		l.pending = append(l.pending, args)
	}
	l.mu.Unlock()
	if l.h.up() {
		// Redis answered another call meanwhile, which may have started
		// the delivery before this release was queued.
		l.flush.start()
	}
}

func (l *Limiter) release(ctx context.Context, args []any) error {
	script := releaseScript
	if len(args) == 1 {
		script = unadmitScript
	}
	return l.h.run(ctx, l.o.Timeout, func(ctx context.Context) error {
		return script.Run(ctx, l.rdb, l.keys, args...).Err()
	})
}

// Close stops reporting the releases Redis missed during an outage, ends
// a report under way and waits for it; it does not close the Redis
// client. The limiter still works after Close, but releases missed during
// later outages are left to their leases. It always returns nil, and may
// be called more than once.
func (l *Limiter) Close() error {
	l.flush.close()
	return nil
}

// deliver reports the releases Redis missed while it was down, so that
// the requests they end stop counting in flight before their leases run
// out. It stops at the first failure; what it did not report stays queued
// for the next time Redis answers.
func (l *Limiter) deliver(ctx context.Context) {
	for {
		l.mu.Lock()
		if len(l.pending) == 0 {
			l.pending = nil
			l.mu.Unlock()
			return
		}
		args := l.pending[0]
		l.pending = l.pending[1:]
		l.mu.Unlock()
		if err := l.release(ctx, args); err != nil {
			// It may have run all the same: an unanswered release
			// reported twice lowers the remaining count twice, which
			// errs on the side of the worker's quota.
			l.mu.Lock()
			l.pending = append([][]any{args}, l.pending...)
			l.pending = l.pending[:min(len(l.pending), maxPendingReleases)]
			l.mu.Unlock()
			return
		}
	}
}

var _ sheen.SharedLimiter = (*Limiter)(nil)
