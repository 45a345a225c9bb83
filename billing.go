package sheen

import (
	"encoding/json"
	"time"

	"github.com/sheenapps/sheen-go/internal/jsonx"
)

// BillingService checks AI-time balances and whether operations are
// affordable. Get it from WorkerClient.Billing.
type BillingService service

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

// billingConfig holds the Billing service's options.
type billingConfig struct{}

// billingState is the Billing service's share of the client's core.
type billingState struct{}

func (s *billingState) init(c *core, cfg billingConfig) {}
