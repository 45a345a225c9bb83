package sheen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/sheenapps/sheen-go/internal/jsonx"
)

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
// balanceWire is a balance answer: the union of both shapes, checked at
// decode (an answer with neither is refused).
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

	breakdown *BalanceBreakdown // Balance read, set by UnmarshalJSON
}

// errNoBalance is a balance answer in neither shape.
var errNoBalance = errors.New("balance response has neither a balance nor a totals object")

// UnmarshalJSON decodes either shape and refuses an answer with neither.
func (w *balanceWire) UnmarshalJSON(data []byte) error {
	type plain balanceWire // without this method
	*w = balanceWire{}
	if err := json.Unmarshal(data, (*plain)(w)); err != nil {
		return err
	}
	if w.Totals == nil {
		w.breakdown = decodeBalanceBreakdown(w.Balance)
		if w.breakdown == nil {
			return errNoBalance
		}
	}
	return nil
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

// toBalance reads whichever shape w holds (bucketed first, as the deployed
// worker serves it). A w that did not go through UnmarshalJSON (an empty
// answer) reads as a zero v2.1 balance.
func (w *balanceWire) toBalance() Balance {
	if w.Totals != nil {
		return w.bucketed()
	}
	return w.v21()
}

func (w *balanceWire) bucketed() Balance {
	t := w.Totals
	b := Balance{
		Bucketed:           true,
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
		b.buckets = append(b.buckets, BalanceBucket{Source: string(k.Source), Remaining: d, ExpiresAt: k.ExpiresAt.Time})
	}
	switch {
	case t.TotalSeconds.Valid:
	case t.PaidSeconds.Valid || t.BonusSeconds.Valid:
		b.Total = b.Paid + b.Bonus
	default:
		b.Total = sum
	}
	if w.Bonus != nil {
		b.BonusAllowance = BonusAllowance{
			Daily:         w.Bonus.DailyMinutes.Minutes(),
			UsedThisMonth: w.Bonus.UsedThisMonthMinutes.Minutes(),
			MonthlyCap:    w.Bonus.MonthlyCapMinutes.Minutes(),
		}
	}
	return b
}

func (w *balanceWire) v21() Balance {
	bd := w.breakdown
	if bd == nil {
		bd = &BalanceBreakdown{}
	}
	b := Balance{
		Total:        bd.Total,
		Paid:         bd.Paid,
		Bonus:        bd.WelcomeBonus + bd.DailyGift,
		WelcomeBonus: bd.WelcomeBonus,
		DailyGift:    bd.DailyGift,
		DailyResetAt: w.DailyResetAt.Time,
	}
	if w.Usage != nil {
		b.Usage = BalanceUsage{TodayUsed: w.Usage.TodayUsed.Seconds(), LifetimeUsed: w.Usage.LifetimeUsed.Seconds()}
	}
	return b
}

type checkSufficientBody struct {
	UserID        string        `json:"userId"`
	OperationType OperationType `json:"operationType"`
	ProjectSize   ProjectSize   `json:"projectSize"`
	IsUpdate      bool          `json:"isUpdate"`
}

// checkSufficientWire is a check-sufficient 200: the sufficient flag plus
// every field a 402 body may carry, checked at decode (an answer without
// the flag is refused).
type checkSufficientWire struct {
	Sufficient *bool `json:"sufficient"`
	OK         *bool `json:"ok"`
	errorWire
}

// UnmarshalJSON decodes the answer and refuses one that does not say
// whether the balance suffices ("sufficient", or "ok" as some builds of
// the worker write it).
func (w *checkSufficientWire) UnmarshalJSON(data []byte) error {
	type plain checkSufficientWire // without this method
	*w = checkSufficientWire{}
	if err := json.Unmarshal(data, (*plain)(w)); err != nil {
		return err
	}
	if w.Sufficient == nil {
		w.Sufficient = w.OK
	}
	if w.Sufficient == nil {
		return errors.New(`check-sufficient response has no "sufficient" field`)
	}
	return nil
}

// sufficient is the answer's flag; false for a w that did not go through
// UnmarshalJSON.
func (w *checkSufficientWire) sufficient() bool {
	return w.Sufficient != nil && *w.Sufficient
}

type checkBatchBody struct {
	UserID     string               `json:"userId"`
	Operations []batchOperationBody `json:"operations"`
}

type batchOperationBody struct {
	Operation       BatchOperationType `json:"operation"`
	EstimateSeconds int64              `json:"estimate_seconds"`
}

// newCheckBatchBody is req as the worker takes it: estimates in whole
// seconds, rounded up.
func newCheckBatchBody(req CheckBatchRequest) checkBatchBody {
	body := checkBatchBody{UserID: req.UserID, Operations: make([]batchOperationBody, len(req.Operations))}
	for i, op := range req.Operations {
		body.Operations[i] = batchOperationBody{Operation: op.Type, EstimateSeconds: int64(math.Ceil(op.Estimate.Seconds()))}
	}
	return body
}

type batchResultWire struct {
	Operation      BatchOperationType `json:"operation"`
	OK             bool               `json:"ok"`
	DeficitSeconds jsonx.Number       `json:"deficit_seconds"`
	Suggestions    []suggestionWire   `json:"suggestions"`
}

func (w batchResultWire) toBatchResult() BatchResult {
	r := BatchResult{Operation: w.Operation, OK: w.OK, Deficit: w.DeficitSeconds.Seconds()}
	for _, sg := range w.Suggestions {
		r.Suggestions = append(r.Suggestions, sg.toSuggestion())
	}
	return r
}

type usageWire struct {
	TotalSeconds jsonx.Number                 `json:"total_seconds"`
	ByOperation  map[string]jsonx.LooseNumber `json:"by_operation"`
	DailyTrend   []struct {
		Date    billingText  `json:"date"`
		Seconds jsonx.Number `json:"seconds"`
	} `json:"daily_trend"`
}

// toUsageReport converts w, leaving out the per-operation totals that are
// not numbers.
func (w *usageWire) toUsageReport() *UsageReport {
	r := &UsageReport{Total: w.TotalSeconds.Seconds()}
	for op, n := range w.ByOperation {
		if !n.Valid {
			continue
		}
		if r.ByOperation == nil {
			r.ByOperation = make(map[string]time.Duration, len(w.ByOperation))
		}
		r.ByOperation[op] = n.Seconds()
	}
	for _, d := range w.DailyTrend {
		r.DailyTrend = append(r.DailyTrend, UsageDay{Date: string(d.Date), Used: d.Seconds.Seconds()})
	}
	return r
}

type historyWire struct {
	Events []struct {
		Type      billingText     `json:"type"`
		Seconds   jsonx.Number    `json:"seconds"`
		Reason    billingText     `json:"reason"`
		Timestamp jsonx.LooseTime `json:"timestamp"`
	} `json:"events"`
}

func (w *historyWire) toEvents() []BillingEvent {
	out := make([]BillingEvent, len(w.Events))
	for i, e := range w.Events {
		out[i] = BillingEvent{Type: string(e.Type), Amount: e.Seconds.Seconds(), Reason: string(e.Reason), Timestamp: e.Timestamp.Time}
	}
	return out
}

// billingText is a string field that may also arrive as a number or null.
type billingText string

// UnmarshalJSON accepts a string, null (empty), or a number or boolean
// (kept as written); an object or array is refused.
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
