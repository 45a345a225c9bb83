package sheen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
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

// balanceCacheMaxUsers bounds the balance cache.
const balanceCacheMaxUsers = 10_000

// maxBatchOperations is how many operations check-sufficient-batch takes.
const maxBatchOperations = 10

// ErrBalanceTimeout is matched by the *BalanceTimeoutError of a
// WaitForBalance that gave up.
var ErrBalanceTimeout = errors.New("sheen: balance did not reach the expected amount in time")

// BalanceBreakdown is a balance split by source, as v2.1 reports it.
type BalanceBreakdown struct {
	WelcomeBonus time.Duration
	DailyGift    time.Duration
	Paid         time.Duration
	Total        time.Duration
}

// Estimate is the worker's estimate of an operation's AI time.
type Estimate struct {
	// Duration is the estimated AI time.
	Duration time.Duration
	// Confidence is "high", "medium" or "low".
	Confidence string
	// BasedOnSamples is how many past operations the estimate rests on.
	BasedOnSamples int
}

// Suggestion is a purchase that would cover a deficit: a package (Key,
// Duration) or a plan upgrade (Plan).
type Suggestion struct {
	Type     string
	Key      string
	Plan     string
	Duration time.Duration
}

// Recommendation is v2.1's advice when the balance is short.
type Recommendation struct {
	SuggestedPackage string
	CostToComplete   float64
	PurchaseURL      string
}

// BalanceShape says which of the worker's two balance responses a Balance
// was read from.
type BalanceShape string

// The balance shapes the worker serves.
const (
	// BalanceShapeV21 is v2.1's {"balance":{...},"usage":{...},
	// "dailyResetAt":...}, also served at /v1/billing/legacy-balance.
	BalanceShapeV21 BalanceShape = "v2.1"
	// BalanceShapeBucketed is the deployed worker's {"totals":{...},
	// "buckets":[...],"bonus":{...}}.
	BalanceShapeBucketed BalanceShape = "bucketed"
)

// Balance is a user's AI-time balance. It holds either shape the worker
// serves: Total, Paid and Bonus are always filled; the other fields are
// filled when the shape carries them (see each field) and zero otherwise.
type Balance struct {
	// Shape says which response this was read from.
	Shape BalanceShape
	// Total is all the AI time the user can spend now.
	Total time.Duration
	// Paid is the purchased (or subscription) part of Total.
	Paid time.Duration
	// Bonus is the free part of Total: welcome bonus plus daily gift
	// (v2.1), or the bonus buckets (bucketed).
	Bonus time.Duration

	// WelcomeBonus and DailyGift split Bonus (v2.1 only).
	WelcomeBonus, DailyGift time.Duration
	// Usage is what the user has spent (v2.1 only; nil otherwise).
	Usage *BalanceUsage
	// DailyResetAt is when the daily gift is next renewed (v2.1 only).
	DailyResetAt time.Time

	// NextExpiryAt is when the next bucket expires (bucketed only; zero
	// when none expires).
	NextExpiryAt time.Time
	// Buckets are the balance's parts by source (bucketed only).
	Buckets []BalanceBucket
	// BonusAllowance is the free-time policy (bucketed only; nil otherwise).
	BonusAllowance *BonusAllowance
	// Plan is the plan key, "paid" or "free" (bucketed only).
	Plan string
	// SubscriptionStatus is "active" or "inactive" (bucketed only).
	SubscriptionStatus string
	// CatalogVersion is the pricing catalog version (bucketed only).
	CatalogVersion string
	// Version is the balance record's version, as the worker wrote it
	// (bucketed only).
	Version string
}

// BalanceUsage is AI time spent, as v2.1's balance reports it.
type BalanceUsage struct {
	// TodayUsed is the AI time spent today.
	TodayUsed time.Duration
	// LifetimeUsed is the AI time spent since the account began.
	LifetimeUsed time.Duration
}

// BalanceBucket is one part of a bucketed balance.
type BalanceBucket struct {
	// Source is where the time came from ("paid", "bonus_daily", ...).
	Source string
	// Remaining is the AI time left in the bucket.
	Remaining time.Duration
	// ExpiresAt is when the bucket expires, zero when it does not.
	ExpiresAt time.Time
}

// BonusAllowance is the free AI time a bucketed balance grants.
type BonusAllowance struct {
	// Daily is the free time granted each day.
	Daily time.Duration
	// UsedThisMonth is the free time used this month.
	UsedThisMonth time.Duration
	// MonthlyCap is the most free time granted in a month.
	MonthlyCap time.Duration
}

func (b *Balance) clone() *Balance {
	if b == nil {
		return nil
	}
	c := *b
	c.Buckets = slices.Clone(b.Buckets)
	if b.Usage != nil {
		u := *b.Usage
		c.Usage = &u
	}
	if b.BonusAllowance != nil {
		a := *b.BonusAllowance
		c.BonusAllowance = &a
	}
	return &c
}

// OperationType is what CheckSufficient asks about.
type OperationType string

// The operation types check-sufficient knows.
const (
	OperationMainBuild          OperationType = "main_build"
	OperationMetadataGeneration OperationType = "metadata_generation"
	OperationUpdate             OperationType = "update"
)

func (o OperationType) valid() bool {
	switch o {
	case OperationMainBuild, OperationMetadataGeneration, OperationUpdate:
		return true
	}
	return false
}

// ProjectSize is a project's size class. The worker is told a class, never
// a byte count; EstimateProjectSize picks one from a file count.
type ProjectSize string

// The project sizes check-sufficient knows.
const (
	ProjectSizeSmall  ProjectSize = "small"
	ProjectSizeMedium ProjectSize = "medium"
	ProjectSizeLarge  ProjectSize = "large"
)

func (p ProjectSize) valid() bool {
	switch p {
	case ProjectSizeSmall, ProjectSizeMedium, ProjectSizeLarge:
		return true
	}
	return false
}

// EstimateProjectSize is v2.1's size rule: fewer than 10 files is small,
// fewer than 50 medium, anything else large.
func EstimateProjectSize(fileCount int) ProjectSize {
	switch {
	case fileCount < 10:
		return ProjectSizeSmall
	case fileCount < 50:
		return ProjectSizeMedium
	}
	return ProjectSizeLarge
}

// CheckSufficientRequest asks whether a user can afford an operation.
type CheckSufficientRequest struct {
	// UserID is the user who would pay.
	UserID string
	// OperationType is the operation; required.
	OperationType OperationType
	// ProjectSize is the project's size class; required (see
	// EstimateProjectSize).
	ProjectSize ProjectSize
	// IsUpdate says the operation changes an existing project.
	IsUpdate bool
}

// SufficientCheck is the answer to CheckSufficient. When the balance is
// short, Sufficient is false and the other fields hold whatever the worker
// said about it; a field the worker did not send stays zero.
type SufficientCheck struct {
	// Sufficient reports whether the user can afford the operation.
	Sufficient bool
	// Estimate is the worker's estimate for the operation, if any.
	Estimate *Estimate
	// Balance is the user's balance by source, if the worker sent it.
	Balance *BalanceBreakdown
	// Available is the usable balance; HasAvailable says whether the
	// worker told.
	Available    time.Duration
	HasAvailable bool
	// Required is what the operation needs ("required", else the
	// estimate), zero when unknown.
	Required time.Duration
	// Breakdown is the balance per source (bonus_daily, paid, ...).
	Breakdown map[string]time.Duration
	// Suggestions are packages or upgrades that would cover the deficit.
	Suggestions []Suggestion
	// Recommendation is v2.1's purchase advice, if any.
	Recommendation *Recommendation
	// ResumeToken lets the caller resume the operation after paying.
	ResumeToken string
	// CatalogVersion is the pricing catalog version the suggestions use.
	CatalogVersion string
	// PaymentRequired is the worker's 402 when it answered that way (the
	// deployed worker does), for its code, message and correlation id; nil
	// when it answered 200.
	PaymentRequired *InsufficientBalanceError
}

// Shortfall is how much AI time is missing: Required minus Available when
// both are known, zero when the balance is sufficient or the worker did not
// say enough to tell.
func (c *SufficientCheck) Shortfall() time.Duration {
	if c == nil || c.Sufficient || !c.HasAvailable || c.Required <= c.Available {
		return 0
	}
	return c.Required - c.Available
}

// BatchOperationType is an operation check-sufficient-batch knows.
type BatchOperationType string

// The operation types check-sufficient-batch knows.
const (
	BatchOperationBuild              BatchOperationType = "build"
	BatchOperationPlan               BatchOperationType = "plan"
	BatchOperationExport             BatchOperationType = "export"
	BatchOperationMetadataGeneration BatchOperationType = "metadata_generation"
)

func (o BatchOperationType) valid() bool {
	switch o {
	case BatchOperationBuild, BatchOperationPlan, BatchOperationExport, BatchOperationMetadataGeneration:
		return true
	}
	return false
}

// BatchOperation is one operation of a CheckBatch.
type BatchOperation struct {
	// Type is the operation.
	Type BatchOperationType
	// Estimate is the AI time it is expected to take (sent in whole
	// seconds, rounded up).
	Estimate time.Duration
}

// CheckBatchRequest asks whether a user can afford 1 to 10 operations run
// one after another.
type CheckBatchRequest struct {
	// UserID is the user who would pay.
	UserID string
	// Operations are checked in order; each one's usage counts against the
	// balance left for the next.
	Operations []BatchOperation
}

// BatchResult is the worker's answer for one operation of a CheckBatch.
type BatchResult struct {
	// Operation is the operation's type, as the worker echoed it.
	Operation BatchOperationType
	// OK reports whether the balance covers it (after the ones before it).
	OK bool
	// Deficit is the AI time missing, zero when OK.
	Deficit time.Duration
	// Suggestions are purchases that would cover the deficit.
	Suggestions []Suggestion
}

// UsagePeriod is the period a usage report covers.
type UsagePeriod string

// The periods the usage endpoint knows.
const (
	UsagePeriodDay   UsagePeriod = "day"
	UsagePeriodMonth UsagePeriod = "month"
)

// UsageReport is a user's AI-time usage over a period.
type UsageReport struct {
	// Total is the AI time used in the period.
	Total time.Duration
	// ByOperation splits Total by operation type.
	ByOperation map[string]time.Duration
	// DailyTrend is the usage per day.
	DailyTrend []UsageDay
}

// UsageDay is one day of a usage report's trend.
type UsageDay struct {
	// Date is the day as the worker wrote it (normally YYYY-MM-DD).
	Date string
	// Used is the AI time used that day.
	Used time.Duration
}

// BillingEvent is one entry of a user's billing history.
type BillingEvent struct {
	// Type is the event's kind, as the worker names it.
	Type string
	// Amount is the AI time involved (the worker's "seconds").
	Amount time.Duration
	// Reason says why, as the worker wrote it.
	Reason string
	// Timestamp is when it happened, zero when the worker's value could
	// not be read.
	Timestamp time.Time
}

// BalanceTimeoutError is a WaitForBalance that gave up before the balance
// reached the amount asked for. It matches ErrBalanceTimeout and
// context.DeadlineExceeded.
type BalanceTimeoutError struct {
	// UserID is the user whose balance was watched.
	UserID string
	// AtLeast is the total that was waited for.
	AtLeast time.Duration
	// Waited is how long the wait lasted (on the client's clock).
	Waited time.Duration
	// Polls counts the balance requests made.
	Polls int
	// Last is the last balance seen, nil when no request succeeded.
	Last *Balance
	// Err is the last request's error when the last request failed.
	Err error
}

// Error says whose balance was awaited, for how much, and what was last seen.
func (e *BalanceTimeoutError) Error() string {
	msg := fmt.Sprintf("sheen: balance of user %s did not reach %s within %s (%d polls", e.UserID, e.AtLeast, e.Waited, e.Polls)
	if e.Last != nil {
		msg += fmt.Sprintf("; last total %s", e.Last.Total)
	}
	msg += ")"
	if e.Err != nil {
		msg += ": last poll failed: " + e.Err.Error()
	}
	return msg
}

// Is matches ErrBalanceTimeout and context.DeadlineExceeded.
func (e *BalanceTimeoutError) Is(target error) bool {
	return target == ErrBalanceTimeout || target == context.DeadlineExceeded
}

// Unwrap returns the last poll's error, if the last poll failed.
func (e *BalanceTimeoutError) Unwrap() error { return e.Err }

// BalanceWaitOption changes one WaitForBalance call.
type BalanceWaitOption func(*balanceWait)

type balanceWait struct {
	interval time.Duration
	timeout  time.Duration
}

// WithBalancePollInterval sets how often WaitForBalance asks for the
// balance (default DefaultBalancePollInterval). It must be positive.
func WithBalancePollInterval(d time.Duration) BalanceWaitOption {
	return func(w *balanceWait) { w.interval = d }
}

// WithBalanceWaitTimeout sets how long WaitForBalance waits in all (default
// DefaultBalanceWaitTimeout). It must be positive.
func WithBalanceWaitTimeout(d time.Duration) BalanceWaitOption {
	return func(w *balanceWait) { w.timeout = d }
}

// WithBalanceCacheTTL sets how long a user's balance is reused (default
// DefaultBalanceCacheTTL). Zero turns the cache off.
func WithBalanceCacheTTL(ttl time.Duration) Option {
	return func(c *config) error {
		if ttl < 0 {
			return fmt.Errorf("sheen: WithBalanceCacheTTL: %s; it must not be negative", ttl)
		}
		c.billing.balanceTTL, c.billing.balanceTTLSet = ttl, true
		return nil
	}
}

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

// WaitForBalance polls userID's balance, bypassing the cache, until its
// Total is at least atLeast: what to do after a payment. It asks every
// DefaultBalancePollInterval for up to DefaultBalanceWaitTimeout (see
// WithBalancePollInterval and WithBalanceWaitTimeout), measured on the
// client's clock; a poll the worker does not answer is cut at the timeout
// (or after one interval, for the last poll).
// When time runs out it returns a *BalanceTimeoutError with the last
// balance seen; when ctx ends it returns at once with ctx's error.
// A failed poll is tried again at the next interval if the failure may pass
// (5xx, 429, network); other failures end the wait.
func (s *BillingService) WaitForBalance(ctx context.Context, userID string, atLeast time.Duration, opts ...BalanceWaitOption) (*Balance, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	if _, err := escapeID("userId", userID); err != nil {
		return nil, err
	}
	if ctx == nil {
		return nil, &ValidationError{Field: "context", Reason: "is nil"}
	}
	w := balanceWait{interval: DefaultBalancePollInterval, timeout: DefaultBalanceWaitTimeout}
	for _, o := range opts {
		o(&w)
	}
	if w.interval <= 0 {
		return nil, &ValidationError{Field: "poll interval", Reason: fmt.Sprintf("%s; it must be positive", w.interval)}
	}
	if w.timeout <= 0 {
		return nil, &ValidationError{Field: "wait timeout", Reason: fmt.Sprintf("%s; it must be positive", w.timeout)}
	}
	clock := s.client.core.clock
	start := clock.Now()
	deadline := start.Add(w.timeout)
	stopped := func() error {
		return fmt.Errorf("sheen: waiting for the balance of user %s: %w", userID, ctx.Err())
	}
	var last *Balance
	var lastErr error
	polls := 0
	timedOut := func(now time.Time) error {
		return &BalanceTimeoutError{UserID: userID, AtLeast: atLeast, Waited: now.Sub(start), Polls: polls, Last: last, Err: lastErr}
	}
	for {
		// The wait's timeout also bounds each poll (the last one, made at
		// the deadline, gets one interval), so a worker that never answers
		// cannot hold the wait for long past it.
		pollCtx, cancel := context.WithTimeout(ctx, max(deadline.Sub(clock.Now()), w.interval))
		b, err := s.RefreshBalance(pollCtx, userID)
		pollCut := err != nil && pollCtx.Err() != nil // an answer that made it counts
		cancel()
		polls++
		switch {
		case ctx.Err() != nil:
			return nil, stopped()
		case pollCut:
			lastErr = err
			return nil, timedOut(clock.Now())
		case err == nil:
			if b.Total >= atLeast {
				return b, nil
			}
			last, lastErr = b, nil
		case balanceWaitRetryable(err):
			lastErr = err
		default:
			return nil, err
		}
		now := clock.Now()
		left := deadline.Sub(now)
		if left <= 0 {
			return nil, timedOut(now)
		}
		if err := sleep(ctx, clock, min(w.interval, left)); err != nil {
			return nil, stopped()
		}
	}
}

// balanceWaitRetryable reports whether a failed poll may succeed later.
func balanceWaitRetryable(err error) bool {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		if isAuthStatus(ae.StatusCode, ae.Code) {
			return false
		}
		return ae.StatusCode == 0 || ae.StatusCode == http.StatusTooManyRequests || ae.StatusCode >= 500
	}
	return true // network trouble, an unusable response, a rate-limit wait
}

// billingConfig holds the Billing service's options.
type billingConfig struct {
	balanceTTL    time.Duration
	balanceTTLSet bool
}

// billingState is the Billing service's share of the client's core: the
// per-user balance cache.
type billingState struct {
	clock Clock
	ttl   time.Duration
	cache *ttlCache[*Balance]
	// invalidated, set by tests, hears of every balance dropped.
	invalidated func(userID string)
}

func (s *billingState) init(c *core, cfg billingConfig) {
	s.clock = c.clock
	s.ttl = DefaultBalanceCacheTTL
	if cfg.balanceTTLSet {
		s.ttl = cfg.balanceTTL
	}
	s.cache = newTTLCache[*Balance](c.clock, balanceCacheMaxUsers)
}

// invalidate drops userID's cached balance; the core calls it on a 402 for
// that user and when a build starts for that user.
func (s *billingState) invalidate(userID string) {
	if s.cache != nil {
		s.cache.Delete(userID)
	}
	if s.invalidated != nil {
		s.invalidated(userID)
	}
}

// ---- wire formats ----

type balanceBreakdownWire struct {
	WelcomeBonus jsonx.Number `json:"welcomeBonus"`
	DailyGift    jsonx.Number `json:"dailyGift"`
	Paid         jsonx.Number `json:"paid"`
	Total        jsonx.Number `json:"total"`
}

// decodeBalanceBreakdown reads a v2.1 balance object; nil for null, absent
// or another shape.
func decodeBalanceBreakdown(raw json.RawMessage) *BalanceBreakdown {
	var w balanceBreakdownWire
	if len(raw) == 0 || json.Unmarshal(raw, &w) != nil || !(w.Total.Valid || w.Paid.Valid || w.DailyGift.Valid || w.WelcomeBonus.Valid) {
		return nil
	}
	b := &BalanceBreakdown{
		WelcomeBonus: w.WelcomeBonus.Seconds(),
		DailyGift:    w.DailyGift.Seconds(),
		Paid:         w.Paid.Seconds(),
		Total:        w.Total.Seconds(),
	}
	if !w.Total.Valid {
		b.Total = b.WelcomeBonus + b.DailyGift + b.Paid
	}
	return b
}

type estimateWire struct {
	EstimatedSeconds jsonx.Number `json:"estimatedSeconds"`
	EstimatedMinutes jsonx.Number `json:"estimatedMinutes"`
	Confidence       string       `json:"confidence"`
	BasedOnSamples   jsonx.Number `json:"basedOnSamples"`
}

func (w *estimateWire) toEstimate() *Estimate {
	e := &Estimate{Confidence: w.Confidence, BasedOnSamples: int(w.BasedOnSamples.Int())}
	switch {
	case w.EstimatedSeconds.Valid:
		e.Duration = w.EstimatedSeconds.Seconds()
	case w.EstimatedMinutes.Valid:
		e.Duration = w.EstimatedMinutes.Minutes()
	}
	return e
}

type suggestionWire struct {
	Type    string       `json:"type"`
	Key     string       `json:"key"`
	Plan    string       `json:"plan"`
	Minutes jsonx.Number `json:"minutes"`
	Seconds jsonx.Number `json:"seconds"`
}

func (w suggestionWire) toSuggestion() Suggestion {
	s := Suggestion{Type: w.Type, Key: w.Key, Plan: w.Plan, Duration: w.Minutes.Minutes()}
	if w.Seconds.Valid {
		s.Duration = w.Seconds.Seconds()
	}
	return s
}

type recommendationWire struct {
	SuggestedPackage string       `json:"suggestedPackage"`
	CostToComplete   jsonx.Number `json:"costToComplete"`
	PurchaseURL      string       `json:"purchaseUrl"`
}

func (w *recommendationWire) toRecommendation() *Recommendation {
	return &Recommendation{SuggestedPackage: w.SuggestedPackage, CostToComplete: w.CostToComplete.Float, PurchaseURL: w.PurchaseURL}
}

// balanceWire is the union of both balance shapes.
type balanceWire struct {
	// v2.1
	Balance      json.RawMessage  `json:"balance"`
	Usage        *usageTotalsWire `json:"usage"`
	DailyResetAt jsonx.LooseTime  `json:"dailyResetAt"`
	// bucketed
	Version            billingText         `json:"version"`
	PlanKey            billingText         `json:"plan_key"`
	SubscriptionStatus billingText         `json:"subscription_status"`
	Totals             *balanceTotalsWire  `json:"totals"`
	Buckets            []balanceBucketWire `json:"buckets"`
	Bonus              *bonusAllowanceWire `json:"bonus"`
	CatalogVersion     billingText         `json:"catalog_version"`
}

type usageTotalsWire struct {
	TodayUsed    jsonx.Number `json:"todayUsed"`
	LifetimeUsed jsonx.Number `json:"lifetimeUsed"`
}

type balanceTotalsWire struct {
	TotalSeconds jsonx.Number    `json:"total_seconds"`
	PaidSeconds  jsonx.Number    `json:"paid_seconds"`
	BonusSeconds jsonx.Number    `json:"bonus_seconds"`
	NextExpiryAt jsonx.LooseTime `json:"next_expiry_at"`
}

type balanceBucketWire struct {
	Source    billingText     `json:"source"`
	Seconds   jsonx.Number    `json:"seconds"`
	ExpiresAt jsonx.LooseTime `json:"expires_at"`
}

type bonusAllowanceWire struct {
	DailyMinutes         jsonx.Number `json:"daily_minutes"`
	UsedThisMonthMinutes jsonx.Number `json:"used_this_month_minutes"`
	MonthlyCapMinutes    jsonx.Number `json:"monthly_cap_minutes"`
}

// toBalance reads whichever shape w holds; false when it holds neither.
func (w *balanceWire) toBalance() (*Balance, bool) {
	if w.Totals != nil {
		t := w.Totals
		b := &Balance{
			Shape:              BalanceShapeBucketed,
			Paid:               t.PaidSeconds.Seconds(),
			Bonus:              t.BonusSeconds.Seconds(),
			Total:              t.TotalSeconds.Seconds(),
			NextExpiryAt:       t.NextExpiryAt.Time,
			Plan:               string(w.PlanKey),
			SubscriptionStatus: string(w.SubscriptionStatus),
			CatalogVersion:     string(w.CatalogVersion),
			Version:            string(w.Version),
		}
		var sum time.Duration
		for _, k := range w.Buckets {
			d := k.Seconds.Seconds()
			sum += d
			b.Buckets = append(b.Buckets, BalanceBucket{Source: string(k.Source), Remaining: d, ExpiresAt: k.ExpiresAt.Time})
		}
		if !t.TotalSeconds.Valid {
			if t.PaidSeconds.Valid || t.BonusSeconds.Valid {
				b.Total = b.Paid + b.Bonus
			} else {
				b.Total = sum
			}
		}
		if w.Bonus != nil {
			b.BonusAllowance = &BonusAllowance{
				Daily:         w.Bonus.DailyMinutes.Minutes(),
				UsedThisMonth: w.Bonus.UsedThisMonthMinutes.Minutes(),
				MonthlyCap:    w.Bonus.MonthlyCapMinutes.Minutes(),
			}
		}
		return b, true
	}
	bd := decodeBalanceBreakdown(w.Balance)
	if bd == nil {
		return nil, false
	}
	b := &Balance{
		Shape:        BalanceShapeV21,
		Total:        bd.Total,
		Paid:         bd.Paid,
		Bonus:        bd.WelcomeBonus + bd.DailyGift,
		WelcomeBonus: bd.WelcomeBonus,
		DailyGift:    bd.DailyGift,
		DailyResetAt: w.DailyResetAt.Time,
	}
	if w.Usage != nil {
		b.Usage = &BalanceUsage{TodayUsed: w.Usage.TodayUsed.Seconds(), LifetimeUsed: w.Usage.LifetimeUsed.Seconds()}
	}
	return b, true
}

type checkSufficientBody struct {
	UserID        string        `json:"userId"`
	OperationType OperationType `json:"operationType"`
	ProjectSize   ProjectSize   `json:"projectSize"`
	IsUpdate      bool          `json:"isUpdate"`
}

// checkSufficientWire is a check-sufficient 200: the sufficient flag plus
// every field a 402 body may carry.
type checkSufficientWire struct {
	Sufficient *bool `json:"sufficient"`
	OK         *bool `json:"ok"`
	errorWire
}

type checkBatchBody struct {
	UserID     string               `json:"userId"`
	Operations []batchOperationBody `json:"operations"`
}

type batchOperationBody struct {
	Operation       BatchOperationType `json:"operation"`
	EstimateSeconds int64              `json:"estimate_seconds"`
}

type batchResultWire struct {
	Operation      BatchOperationType `json:"operation"`
	OK             bool               `json:"ok"`
	DeficitSeconds jsonx.Number       `json:"deficit_seconds"`
	Suggestions    []suggestionWire   `json:"suggestions"`
}

type usageWire struct {
	TotalSeconds jsonx.Number               `json:"total_seconds"`
	ByOperation  map[string]json.RawMessage `json:"by_operation"`
	DailyTrend   []struct {
		Date    billingText  `json:"date"`
		Seconds jsonx.Number `json:"seconds"`
	} `json:"daily_trend"`
}

type eventsWire struct {
	Events []struct {
		Type      billingText     `json:"type"`
		Seconds   jsonx.Number    `json:"seconds"`
		Reason    billingText     `json:"reason"`
		Timestamp jsonx.LooseTime `json:"timestamp"`
	} `json:"events"`
}

// billingText is a string field that may also arrive as a number or null.
type billingText string

func (s *billingText) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*s = ""
	case len(b) > 0 && b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = billingText(v)
	case len(b) > 0 && (b[0] == '{' || b[0] == '['):
		return fmt.Errorf("sheen: %.20s is not text", b)
	default:
		*s = billingText(b) // a number or a boolean, as written
	}
	return nil
}
