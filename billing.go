package sheen

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
)

// BillingService checks AI-time balances and whether operations are
// affordable. Get it from WorkerClient.Billing.
//
// Balances are cached per user (DefaultBalanceCacheTTL, see
// CacheConfig.BalanceTTL). The cached value is dropped when the client learns
// it changed: a 402 from any call made for that user, a build started for
// that user, or InvalidateBalance.
//
// Every method takes CallOptions, applied to the request it makes; a balance
// served from the cache makes none, and WithResponse then reports Cached.
type BillingService service

// Defaults of the Billing service.

// Balance returns userID's balance, from the cache when a value younger
// than the cache TTL is held. Concurrent calls for one user that miss the
// cache share one request, made with the CallOptions of the caller that
// started it (the others' WithResponse reports Cached), except
// WithCallTimeout and WithCallAttempts: each caller's WithCallTimeout
// bounds only its own wait, and the shared request, tried as the client's
// RetryConfig says, runs until the last caller waiting for it leaves. The
// result is the caller's own copy; on error it is the zero Balance.
func (s *BillingService) Balance(ctx context.Context, userID string, opts ...CallOption) (Balance, error) {
	if err := ready((*service)(s)); err != nil {
		return Balance{}, err
	}
	if ctx == nil { // refused before the cache, so a hit and a miss answer alike
		return Balance{}, nilContextError()
	}
	cc, err := newCallConfig(opts)
	if err != nil {
		return Balance{}, err
	}
	st := &s.client.billing
	b, ok := st.cached(userID)
	if st.ttl > 0 && st.shared == nil { // a shared cache's lookups are counted once answered
		s.client.core.tel.cacheLookup(ctx, RouteBalance, cacheBalance, userID, ok)
	}
	if ok {
		cc.recordCached()
		// The caller's copy is a value in its frame, sharing the cache's
		// buckets, which nothing writes (Buckets hands out copies): a hit
		// allocates nothing.
		return *b, nil
	}
	v, hit, err := s.loadBalance(ctx, userID, &cc, opts)
	if st.ttl > 0 && st.shared != nil {
		s.client.core.tel.cacheLookup(ctx, RouteBalance, cacheBalance, userID, hit)
	}
	return v, err
}

// RefreshBalance asks the worker for userID's balance, ignoring any cached
// value, and caches the answer for later Balance calls. The result is the
// caller's own copy; on error it is the zero Balance.
func (s *BillingService) RefreshBalance(ctx context.Context, userID string, opts ...CallOption) (Balance, error) {
	if err := ready((*service)(s)); err != nil {
		return Balance{}, err
	}
	if ctx == nil { // refused before the cached balance is dropped
		return Balance{}, nilContextError()
	}
	cc, err := newCallConfig(opts)
	if err != nil {
		return Balance{}, err
	}
	s.client.billing.invalidate(userID)
	b, _, err := s.loadBalance(ctx, userID, &cc, opts)
	return b, err
}

// LegacyBalance reads userID's balance from /v1/billing/legacy-balance,
// where the deployed worker still serves the v2.1 shape (welcome bonus,
// daily gift, usage, daily reset). It is never cached. On error it returns
// the zero Balance.
func (s *BillingService) LegacyBalance(ctx context.Context, userID string, opts ...CallOption) (Balance, error) {
	return s.fetchBalance(ctx, RouteLegacyBalance, userID, opts)
}

// InvalidateBalance drops userID's cached balance, so the next Balance call
// asks the worker. A request already under way is not cached either.
func (s *BillingService) InvalidateBalance(userID string) {
	if ready((*service)(s)) != nil {
		return
	}
	s.client.billing.invalidate(userID)
}

// fetchBalance asks the worker for userID's balance on route.
func (s *BillingService) fetchBalance(ctx context.Context, route, userID string, opts []CallOption) (Balance, error) {
	var w balanceWire
	if err := (*service)(s).send(ctx, call{route: route, params: []string{userID}, out: &w, userID: userID}, opts); err != nil {
		return Balance{}, err
	}
	return w.toBalance(), nil
}

// CheckSufficient asks whether req.UserID can afford an operation. "Not
// enough" is an answer, not a failure: a 200 with sufficient:false and a 402
// (whatever its body, even an empty one) both give Sufficient == false and a
// nil error. Unknown operation types or sizes are refused with a
// *ValidationError before any request; other failures are typed errors.
func (s *BillingService) CheckSufficient(ctx context.Context, req CheckSufficientRequest, opts ...CallOption) (*SufficientCheck, error) {
	c, _, err := s.checkSufficient(ctx, req, opts...)
	return c, err
}

// checkSufficient is CheckSufficient that also returns the answer as an
// *InsufficientBalanceError: the worker's 402, or for a 200 one whose
// APIError is nil.
func (s *BillingService) checkSufficient(ctx context.Context, req CheckSufficientRequest, opts ...CallOption) (*SufficientCheck, *InsufficientBalanceError, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, nil, err
	}
	if err := req.validate(); err != nil {
		return nil, nil, err
	}
	var w checkSufficientWire
	err := (*service)(s).send(ctx, call{route: RouteCheckSufficient, in: checkSufficientBody(req), out: &w, userID: req.UserID, safe: true}, opts)
	var ib *InsufficientBalanceError
	switch {
	case errors.As(err, &ib):
		c := ib.check()
		c.PaymentRequired = ib
		return c, ib, nil
	case err != nil:
		return nil, nil, err
	}
	ib = &InsufficientBalanceError{}
	ib.fill(w.errorWire)
	c := ib.check()
	c.Sufficient = w.sufficient()
	return c, ib, nil
}

// CheckBatch asks whether req.UserID can afford 1 to 10 operations run in
// order; the results come in the same order. Bad input is refused with a
// *ValidationError before any request.
func (s *BillingService) CheckBatch(ctx context.Context, req CheckBatchRequest, opts ...CallOption) ([]BatchResult, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	if err := req.validate(); err != nil {
		return nil, err
	}
	var w []batchResultWire
	if err := (*service)(s).send(ctx, call{route: RouteCheckBatch, in: newCheckBatchBody(req), out: &w, userID: req.UserID, safe: true}, opts); err != nil {
		return nil, err
	}
	out := make([]BatchResult, len(w))
	for i, r := range w {
		out[i] = r.toBatchResult()
	}
	return out, nil
}

// Usage returns userID's AI-time usage over period; an empty period lets
// the worker choose.
func (s *BillingService) Usage(ctx context.Context, userID string, period UsagePeriod, opts ...CallOption) (*UsageReport, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	if period != "" && !period.valid() {
		return nil, &ValidationError{Field: "period", Reason: fmt.Sprintf("%q is not one of day, month", period)}
	}
	var q url.Values
	if period != "" {
		q = url.Values{"period": {string(period)}}
	}
	var w usageWire
	if err := (*service)(s).send(ctx, call{route: RouteUsage, params: []string{userID}, query: q, out: &w}, opts); err != nil {
		return nil, err
	}
	return w.toUsageReport(), nil
}

// History returns userID's latest billing events, newest first as the worker
// orders them. limit is 1 to 100; 0 lets the worker choose.
func (s *BillingService) History(ctx context.Context, userID string, limit int, opts ...CallOption) ([]BillingEvent, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	if limit < 0 || limit > maxHistoryLimit {
		return nil, &ValidationError{Field: "limit", Reason: fmt.Sprintf("%d is outside 1 to %d", limit, maxHistoryLimit)}
	}
	var q url.Values
	if limit > 0 {
		q = url.Values{"limit": {strconv.Itoa(limit)}}
	}
	var w historyWire
	if err := (*service)(s).send(ctx, call{route: RouteBillingEvents, params: []string{userID}, query: q, out: &w}, opts); err != nil {
		return nil, err
	}
	return w.toEvents(), nil
}

// maxHistoryLimit is the most events History asks for.
const maxHistoryLimit = 100
