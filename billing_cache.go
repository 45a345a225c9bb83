package sheen

import (
	"context"
	"sync/atomic"
	"time"
)

// balanceCacheMaxUsers bounds the balance cache.
const balanceCacheMaxUsers = 10_000

// billingConfig holds the Billing service's options.
type billingConfig struct {
	balanceTTL    time.Duration
	balanceTTLSet bool
	shared        SharedCache // CacheConfig.Shared
}

// billingState is the Billing service's state, held by the WorkerClient:
// the per-user balance cache and WaitForBalance's pace.
type billingState struct {
	clock Clock
	ttl   time.Duration
	// cache holds each balance behind a pointer that nothing changes once
	// stored; callers get copies of the struct, which share its buckets
	// (nothing writes them; Balance.Buckets hands out copies).
	cache *ttlCache[*Balance]
	// shared, when set, holds the balances instead of cache, which is the
	// fallback (shared.go).
	shared *sharedValues[*Balance]
	// pollInterval and waitTimeout pace WaitForBalance (balancePollInterval
	// and balanceWaitTimeout); tests shorten them.
	pollInterval, waitTimeout time.Duration
	// invalidated, set by tests, hears of every balance dropped.
	invalidated func(userID string)
}

func (s *billingState) init(clock Clock, cfg billingConfig) {
	*s = billingState{
		clock:        clock,
		ttl:          DefaultBalanceCacheTTL,
		cache:        newTTLCache[*Balance](clock, balanceCacheMaxUsers),
		pollInterval: balancePollInterval,
		waitTimeout:  balanceWaitTimeout,
	}
	if cfg.balanceTTLSet {
		s.ttl = cfg.balanceTTL
	}
	s.shared = newSharedValues(cfg.shared, "balance", s.cache, clock, encodeBalance, decodeBalance)
}

// invalidate drops userID's cached balance: on InvalidateBalance, which
// send calls on a 402 for that user and Builds when a build starts for that
// user.
func (s *billingState) invalidate(userID string) {
	if s.cache != nil {
		s.cache.Delete(userID)
	}
	if s.shared != nil {
		s.shared.delete(userID)
	}
	if s.invalidated != nil {
		s.invalidated(userID)
	}
}

// cached returns userID's cached balance, the cache's own (callers hand out
// a copy): the hit path (issue #13). It needs no check of userID: only
// balances the worker gave for a valid id are stored.
func (s *billingState) cached(userID string) (*Balance, bool) {
	if s.ttl <= 0 || s.shared != nil { // a shared cache is read by loadBalance
		return nil, false
	}
	return s.cache.Get(userID)
}

// loadBalance asks the worker for userID's balance and caches the answer.
// Callers missing on one user at once share one request (the cache's
// load), made with the CallOptions of the caller that started it but
// bounded by none of theirs (see sharedRequestOptions); each waits no
// longer than its own context and WithCallTimeout allow. hit reports an
// answer from a cache for which this client asked the worker nothing.
func (s *BillingService) loadBalance(ctx context.Context, userID string, cc *callConfig, opts []CallOption) (_ Balance, hit bool, _ error) {
	st := &s.client.billing
	if st.ttl <= 0 { // nothing to cache or share
		b, err := s.fetchBalance(ctx, RouteBalance, userID, opts)
		return b, false, err
	}
	if cc.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cc.timeout)
		defer cancel()
	}
	// The load records its Response apart (see balanceLoad); its own copy
	// of opts keeps the caller's slice off the heap on the hit path.
	own := &balanceLoad{}
	own.opts = sharedRequestOptions(opts, &own.resp)
	load := own.loader(s, userID)
	var (
		b              *Balance
		loaded, shared bool
		err            error
	)
	if st.shared != nil {
		b, loaded, shared, err = st.shared.fetch(ctx, userID, load)
		hit = err == nil && !loaded
	}
	if !shared {
		b, hit, err = st.cache.fetch(ctx, userID, load)
	}
	own.report(cc, err)
	if err != nil {
		return Balance{}, false, err
	}
	return *b, hit, nil // b is the cache's, and every waiter's: the caller gets a copy
}

// balanceLoad is one caller's loader for the balance cache. The load may
// outlive the caller that started it (others may still wait for it), so it
// records its Response here, never straight into the caller's.
type balanceLoad struct {
	opts []CallOption // sharedRequestOptions: the caller's, unbounded
	resp Response
	done atomic.Bool // the load ran to its end: resp is final
}

func (l *balanceLoad) loader(s *BillingService, userID string) func(context.Context) (*Balance, time.Time, error) {
	return func(ctx context.Context) (*Balance, time.Time, error) {
		defer l.done.Store(true)
		b, err := s.fetchBalance(ctx, RouteBalance, userID, l.opts)
		if err != nil {
			return nil, time.Time{}, err
		}
		st := &s.client.billing
		return &b, st.clock.Now().Add(st.ttl), nil
	}
}

// report fills the caller's Response: from this caller's own load when it
// ran to its end, else Cached when the answer came from another caller's
// load (or the cache, if it landed meanwhile).
func (l *balanceLoad) report(cc *callConfig, err error) {
	switch {
	case cc.response == nil:
	case l.done.Load():
		*cc.response = l.resp
	case err == nil:
		cc.recordCached()
	}
}

// sharedRequestOptions are the CallOptions of a request that callers share
// (a cache's load): those of the caller that starts it, which say what the
// request carries (WithHeader, WithCorrelationID), then resp for its
// Response (the load may outlive that caller), without the caller's
// WithCallTimeout and WithCallAttempts. Those say how long and how hard
// that caller waits; on a request others wait for too they would end it for
// everyone (issue #11: a shared load lives until the last waiting caller
// leaves). The request runs by the client's RetryConfig and per-attempt
// timeout; each caller's WithCallTimeout bounds its own wait instead.
func sharedRequestOptions(opts []CallOption, resp *Response) []CallOption {
	return append(append(make([]CallOption, 0, len(opts)+2), opts...), unbounded, WithResponse(resp))
}

// unbounded undoes WithCallTimeout and WithCallAttempts (see
// sharedRequestOptions).
func unbounded(c *callConfig) {
	c.timeout, c.timeoutSet, c.maxAttempts, c.attemptsSet = 0, false, 0, false
}
