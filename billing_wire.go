package sheen

import (
	"bytes"
	"encoding/json"
	"fmt"
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
