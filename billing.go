package sheen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sheenapps/sheen-go/internal/jsonx"
)

// BillingService checks AI-time balances and whether operations are
// affordable. Get it from WorkerClient.Billing.
//
// Balances are cached per user (DefaultBalanceCacheTTL, see
// WithBalanceCacheTTL). The cached value is dropped when the client learns
// it changed: a 402 from any call made for that user, a build started for
// that user, or InvalidateBalance.
type BillingService service

// Defaults of the Billing service.
const (
	// DefaultBalanceCacheTTL is how long a user's balance is reused (v2.1).
	DefaultBalanceCacheTTL = 5 * time.Minute
	// DefaultBalancePollInterval is how often WaitForBalance asks.
	DefaultBalancePollInterval = 2 * time.Second
	// DefaultBalanceWaitTimeout is how long WaitForBalance waits in all.
	DefaultBalanceWaitTimeout = 60 * time.Second
)

// maxBatchOperations is how many operations check-sufficient-batch takes.
const maxBatchOperations = 10

// Balance returns userID's balance, from the cache when a value younger
// than the cache TTL is held. Concurrent calls for one user that miss the
// cache share one request. The result is the caller's own copy.
func (s *BillingService) Balance(ctx context.Context, userID string) (*Balance, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	_, err := escapeID("userId", userID)
	if err != nil {
		return nil, err
	}
	if ctx == nil {
		return nil, &ValidationError{Field: "context", Reason: "is nil"}
	}
	if err := ctx.Err(); err != nil {
		return nil, err // do not start a shared load for a caller already gone
	}
	st := &s.client.core.billing
	if st.ttl <= 0 {
		return s.fetchBalance(ctx, RouteBalance, userID)
	}
	b, err := st.cache.Fetch(ctx, userID, func(ctx context.Context) (*Balance, time.Time, error) {
		b, err := s.fetchBalance(ctx, RouteBalance, userID)
		if err != nil {
			return nil, time.Time{}, err
		}
		return b, st.clock.Now().Add(st.ttl), nil
	})
	if err != nil {
		return nil, err
	}
	return b.clone(), nil
}

// RefreshBalance asks the worker for userID's balance, ignoring any cached
// value, and caches the answer for later Balance calls.
func (s *BillingService) RefreshBalance(ctx context.Context, userID string) (*Balance, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	if _, err := escapeID("userId", userID); err != nil {
		return nil, err
	}
	s.client.core.billing.invalidate(userID)
	return s.Balance(ctx, userID)
}

// LegacyBalance reads userID's balance from /v1/billing/legacy-balance,
// where the deployed worker still serves the v2.1 shape (welcome bonus,
// daily gift, usage, daily reset). It is never cached.
func (s *BillingService) LegacyBalance(ctx context.Context, userID string) (*Balance, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	return s.fetchBalance(ctx, RouteLegacyBalance, userID)
}

// InvalidateBalance drops userID's cached balance, so the next Balance call
// asks the worker. A request already under way is not cached either.
func (s *BillingService) InvalidateBalance(userID string) {
	if ready((*service)(s)) != nil {
		return
	}
	s.client.core.billing.invalidate(userID)
}

func (s *BillingService) fetchBalance(ctx context.Context, route, userID string) (*Balance, error) {
	var w balanceWire
	if err := (*service)(s).send(ctx, call{route: route, params: []string{userID}, out: &w, userID: userID}, nil); err != nil {
		return nil, err
	}
	b, ok := w.toBalance()
	if !ok {
		return nil, &ResponseError{
			StatusCode: http.StatusOK, Method: http.MethodGet, Path: s.client.core.basePath + routePath(route, userID),
			Err: errors.New("balance response has neither a balance nor a totals object"),
		}
	}
	return b, nil
}

// CheckSufficient asks whether req.UserID can afford an operation. "Not
// enough" is an answer, not a failure: a 200 with sufficient:false and a 402
// (whatever its body, even an empty one) both give Sufficient == false and a
// nil error. Unknown operation types or sizes are refused with a
// *ValidationError before any request; other failures are typed errors.
func (s *BillingService) CheckSufficient(ctx context.Context, req CheckSufficientRequest) (*SufficientCheck, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	c, _, err := s.checkSufficient(ctx, req)
	return c, err
}

// checkSufficient is CheckSufficient that also returns the answer as an
// *InsufficientBalanceError: the worker's 402, or for a 200 one whose
// APIError is nil.
func (s *BillingService) checkSufficient(ctx context.Context, req CheckSufficientRequest) (*SufficientCheck, *InsufficientBalanceError, error) {
	if _, err := escapeID("userId", req.UserID); err != nil {
		return nil, nil, err
	}
	if !req.OperationType.valid() {
		return nil, nil, &ValidationError{Field: "operationType", Reason: fmt.Sprintf("%q is not one of main_build, metadata_generation, update", req.OperationType)}
	}
	if !req.ProjectSize.valid() {
		return nil, nil, &ValidationError{Field: "projectSize", Reason: fmt.Sprintf("%q is not one of small, medium, large (see EstimateProjectSize)", req.ProjectSize)}
	}
	body := checkSufficientBody(req)
	var w checkSufficientWire
	err := (*service)(s).send(ctx, call{route: RouteCheckSufficient, in: body, out: &w, userID: req.UserID, safe: true}, nil)
	if err != nil {
		var ib *InsufficientBalanceError
		if errors.As(err, &ib) {
			c := checkFromInsufficient(ib)
			c.PaymentRequired = ib
			return c, ib, nil
		}
		return nil, nil, err
	}
	sufficient := w.Sufficient
	if sufficient == nil {
		sufficient = w.OK
	}
	if sufficient == nil {
		return nil, nil, &ResponseError{
			StatusCode: http.StatusOK, Method: http.MethodPost, Path: s.client.core.basePath + "/v1/billing/check-sufficient",
			Err: errors.New(`check-sufficient response has no "sufficient" field`),
		}
	}
	ib := &InsufficientBalanceError{}
	ib.fill(w.errorWire)
	c := checkFromInsufficient(ib)
	c.Sufficient = *sufficient
	return c, ib, nil
}

func checkFromInsufficient(ib *InsufficientBalanceError) *SufficientCheck {
	return &SufficientCheck{
		Estimate:       ib.Estimate,
		Balance:        ib.Balance,
		Available:      ib.Available,
		HasAvailable:   ib.HasAvailable,
		Required:       ib.Required,
		Breakdown:      ib.Breakdown,
		Suggestions:    ib.Suggestions,
		Recommendation: ib.Recommendation,
		ResumeToken:    ib.ResumeToken,
		CatalogVersion: ib.CatalogVersion,
	}
}

// CheckBatch asks whether req.UserID can afford 1 to 10 operations run in
// order; the results come in the same order. Bad input is refused with a
// *ValidationError before any request.
func (s *BillingService) CheckBatch(ctx context.Context, req CheckBatchRequest) ([]BatchResult, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	if _, err := escapeID("userId", req.UserID); err != nil {
		return nil, err
	}
	if n := len(req.Operations); n < 1 || n > maxBatchOperations {
		return nil, &ValidationError{Field: "operations", Reason: fmt.Sprintf("has %d operations; it takes 1 to %d", n, maxBatchOperations)}
	}
	body := checkBatchBody{UserID: req.UserID, Operations: make([]batchOperationBody, len(req.Operations))}
	for i, op := range req.Operations {
		field := "operations[" + strconv.Itoa(i) + "]"
		if !op.Type.valid() {
			return nil, &ValidationError{Field: field, Reason: fmt.Sprintf("%q is not one of build, plan, export, metadata_generation", op.Type)}
		}
		if op.Estimate < 0 {
			return nil, &ValidationError{Field: field, Reason: fmt.Sprintf("estimate %s is negative", op.Estimate)}
		}
		body.Operations[i] = batchOperationBody{Operation: op.Type, EstimateSeconds: int64(math.Ceil(op.Estimate.Seconds()))}
	}
	var w []batchResultWire
	if err := (*service)(s).send(ctx, call{route: RouteCheckBatch, in: body, out: &w, userID: req.UserID, safe: true}, nil); err != nil {
		return nil, err
	}
	out := make([]BatchResult, len(w))
	for i, r := range w {
		out[i] = BatchResult{Operation: r.Operation, OK: r.OK, Deficit: r.DeficitSeconds.Seconds()}
		for _, sg := range r.Suggestions {
			out[i].Suggestions = append(out[i].Suggestions, sg.toSuggestion())
		}
	}
	return out, nil
}

// Usage returns userID's AI-time usage over period; an empty period lets
// the worker choose.
func (s *BillingService) Usage(ctx context.Context, userID string, period UsagePeriod) (*UsageReport, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	id, err := escapeID("userId", userID)
	if err != nil {
		return nil, err
	}
	target := "/v1/billing/usage/" + id
	switch period {
	case "":
	case UsagePeriodDay, UsagePeriodMonth:
		target += "?" + url.Values{"period": {string(period)}}.Encode()
	default:
		return nil, &ValidationError{Field: "period", Reason: fmt.Sprintf("%q is not one of day, month", period)}
	}
	var w usageWire
	if err := s.client.core.do(ctx, http.MethodGet, target, nil, &w, callConfig{}); err != nil {
		return nil, err
	}
	r := &UsageReport{Total: w.TotalSeconds.Seconds()}
	for op, raw := range w.ByOperation {
		var n jsonx.Number
		if json.Unmarshal(raw, &n) == nil && n.Valid {
			if r.ByOperation == nil {
				r.ByOperation = make(map[string]time.Duration, len(w.ByOperation))
			}
			r.ByOperation[op] = n.Seconds()
		}
	}
	for _, d := range w.DailyTrend {
		r.DailyTrend = append(r.DailyTrend, UsageDay{Date: string(d.Date), Used: d.Seconds.Seconds()})
	}
	return r, nil
}

// History returns userID's latest billing events, newest first as the worker
// orders them. limit is 1 to 100; 0 lets the worker choose.
func (s *BillingService) History(ctx context.Context, userID string, limit int) ([]BillingEvent, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	id, err := escapeID("userId", userID)
	if err != nil {
		return nil, err
	}
	target := "/v1/billing/events/" + id
	switch {
	case limit == 0:
	case limit >= 1 && limit <= 100:
		target += "?" + url.Values{"limit": {strconv.Itoa(limit)}}.Encode()
	default:
		return nil, &ValidationError{Field: "limit", Reason: fmt.Sprintf("%d is outside 1 to 100", limit)}
	}
	var w eventsWire
	if err := s.client.core.do(ctx, http.MethodGet, target, nil, &w, callConfig{}); err != nil {
		return nil, err
	}
	out := make([]BillingEvent, len(w.Events))
	for i, e := range w.Events {
		out[i] = BillingEvent{Type: string(e.Type), Amount: e.Seconds.Seconds(), Reason: string(e.Reason), Timestamp: e.Timestamp.Time}
	}
	return out, nil
}
