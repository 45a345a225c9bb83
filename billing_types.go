package sheen

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
)

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

// Balance is a user's AI-time balance: a snapshot, handed out by value.
// It holds either shape the worker serves: Total, Paid and Bonus are
// always filled; the other fields are filled when the shape carries them
// (see each field, and Bucketed) and zero otherwise.
//
// The caller owns every Balance it receives: changing one changes nothing
// another caller (or the cache) sees. Its buckets are read with Buckets,
// which returns the caller's own copy; copies of a Balance share the
// buckets themselves, which nothing changes once the Balance is built.
type Balance struct {
	// Bucketed says which of the worker's two responses this was read
	// from: true for the deployed worker's {"totals":{...},"buckets":[...],
	// "bonus":{...}}, false for v2.1's {"balance":{...},"usage":{...},
	// "dailyResetAt":...} (also served at /v1/billing/legacy-balance).
	Bucketed bool
	// Total is all the AI time the user can spend now.
	Total time.Duration
	// Paid is the purchased (or subscription) part of Total.
	Paid time.Duration
	// Bonus is the free part of Total: welcome bonus plus daily gift
	// (v2.1), or the bonus buckets (bucketed).
	Bonus time.Duration

	// WelcomeBonus and DailyGift split Bonus (v2.1 only).
	WelcomeBonus, DailyGift time.Duration
	// Usage is what the user has spent (v2.1 only: zero when Bucketed).
	Usage BalanceUsage
	// DailyResetAt is when the daily gift is next renewed (v2.1 only).
	DailyResetAt time.Time

	// NextExpiryAt is when the next bucket expires (bucketed only; zero
	// when none expires).
	NextExpiryAt time.Time
	// buckets are the balance's parts by source (bucketed only), read with
	// Buckets. Never written once the Balance is built (the decoder,
	// WithBuckets and UnmarshalJSON each make a new slice): every copy of
	// the Balance, the cache's included, shares them.
	buckets []BalanceBucket
	// BonusAllowance is the free-time policy (bucketed only: zero when
	// not Bucketed, or when the worker sent none).
	BonusAllowance BonusAllowance
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

// Buckets returns the balance's parts by source (bucketed only), as the
// caller's own copy: nil when there are none, else a new slice on each call.
func (b Balance) Buckets() []BalanceBucket {
	if len(b.buckets) == 0 {
		return nil
	}
	return slices.Clone(b.buckets)
}

// WithBuckets returns a copy of b whose buckets are a copy of buckets (none
// when called without any), for code that builds Balances, such as a fake
// of BillingService in a test. b itself is unchanged.
func (b Balance) WithBuckets(buckets ...BalanceBucket) Balance {
	b.buckets = slices.Clone(buckets)
	return b
}

// Equal reports whether b and o say the same: every field, the buckets
// included, with times compared as instants (time.Time.Equal). go-cmp uses
// it, so cmp.Diff and cmp.Equal compare Balances without options.
func (b Balance) Equal(o Balance) bool {
	return b.Bucketed == o.Bucketed && b.Total == o.Total && b.Paid == o.Paid && b.Bonus == o.Bonus &&
		b.WelcomeBonus == o.WelcomeBonus && b.DailyGift == o.DailyGift && b.Usage == o.Usage &&
		b.DailyResetAt.Equal(o.DailyResetAt) && b.NextExpiryAt.Equal(o.NextExpiryAt) &&
		slices.EqualFunc(b.buckets, o.buckets, BalanceBucket.Equal) &&
		b.BonusAllowance == o.BonusAllowance && b.Plan == o.Plan && b.SubscriptionStatus == o.SubscriptionStatus &&
		b.CatalogVersion == o.CatalogVersion && b.Version == o.Version
}

// Equal reports whether k and o say the same, their expiries compared as
// instants.
func (k BalanceBucket) Equal(o BalanceBucket) bool {
	return k.Source == o.Source && k.Remaining == o.Remaining && k.ExpiresAt.Equal(o.ExpiresAt)
}

// plainBalance is Balance without its methods, for its JSON encoding.
type plainBalance Balance

// balanceJSON is Balance's JSON layout: every exported field as
// encoding/json lays it out by default, and the buckets under "Buckets"
// (after the other fields), as they were when Buckets was a field.
type balanceJSON struct {
	plainBalance
	Buckets []BalanceBucket
}

// MarshalJSON writes b as encoding/json writes its exported fields, with
// its buckets under "Buckets" (null when it has none, as a nil field was).
func (b Balance) MarshalJSON() ([]byte, error) {
	return json.Marshal(balanceJSON{plainBalance(b), b.buckets})
}

// UnmarshalJSON reads what MarshalJSON writes, with encoding/json's rules
// for each field: a key that is absent leaves the field as it was, a null
// "Buckets" leaves none. The buckets read are a new slice: b's are never
// written, as other copies of b may share them. On error b is unchanged.
func (b *Balance) UnmarshalJSON(data []byte) error {
	var read []BalanceBucket
	// Through a pointer to read: json sets it to nil on null, and leaves
	// read nil when the key is absent (an array, even [], makes it non-nil).
	aux := struct {
		plainBalance
		Buckets *[]BalanceBucket
	}{plainBalance(*b), &read}
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	switch {
	case aux.Buckets == nil: // "Buckets":null
		aux.buckets = nil
	case read != nil:
		aux.buckets = read
	}
	*b = Balance(aux.plainBalance)
	return nil
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

// validate refuses a request the worker would refuse, before it is sent.
// The user id goes in the body, not the path, but is held to the path's
// rule (the worker keys balances by it and routes other calls with it).
func (r CheckSufficientRequest) validate() error {
	if _, err := escapeID("userId", r.UserID); err != nil {
		return err
	}
	if !r.OperationType.valid() {
		return &ValidationError{Field: "operationType", Reason: fmt.Sprintf("%q is not one of main_build, metadata_generation, update", r.OperationType)}
	}
	if !r.ProjectSize.valid() {
		return &ValidationError{Field: "projectSize", Reason: fmt.Sprintf("%q is not one of small, medium, large (see EstimateProjectSize)", r.ProjectSize)}
	}
	return nil
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

// maxBatchOperations is how many operations check-sufficient-batch takes.
const maxBatchOperations = 10

// validate refuses a batch the worker would refuse, before it is sent (the
// user id as in CheckSufficientRequest).
func (r CheckBatchRequest) validate() error {
	if _, err := escapeID("userId", r.UserID); err != nil {
		return err
	}
	if n := len(r.Operations); n < 1 || n > maxBatchOperations {
		return &ValidationError{Field: "operations", Reason: fmt.Sprintf("has %d operations; it takes 1 to %d", n, maxBatchOperations)}
	}
	for i, op := range r.Operations {
		field := "operations[" + strconv.Itoa(i) + "]"
		if !op.Type.valid() {
			return &ValidationError{Field: field, Reason: fmt.Sprintf("%q is not one of build, plan, export, metadata_generation", op.Type)}
		}
		if op.Estimate < 0 {
			return &ValidationError{Field: field, Reason: fmt.Sprintf("estimate %s is negative", op.Estimate)}
		}
	}
	return nil
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

func (p UsagePeriod) valid() bool {
	return p == UsagePeriodDay || p == UsagePeriodMonth
}

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
