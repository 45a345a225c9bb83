package sheen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sheenapps/sheen-go/internal/jsonx"
)

// insufficientFallbackMessage is what v2.1 shows when a 402 came without a
// usable body.
const insufficientFallbackMessage = "Please add AI time credits to continue building"

// InsufficientBalanceError is a 402: the user has too little AI time. Every
// 402 body the worker is known to send fills what it carries; an empty or
// non-JSON one still gives this error, with code insufficient_ai_time.
type InsufficientBalanceError struct {
	*APIError
	// Balance is the balance the worker reported, nil when it did not.
	Balance *BalanceBreakdown
	// Available is the usable balance (Balance.Total, "available" or
	// "balance_seconds"); HasAvailable says whether the worker told.
	Available    time.Duration
	HasAvailable bool
	// Required is what the operation needs, zero when unknown.
	Required time.Duration
	// Estimate is the worker's estimate for the operation, if any.
	Estimate *Estimate
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
}

// Unwrap gives errors.As the *APIError.
func (e *InsufficientBalanceError) Unwrap() error {
	if e == nil || e.APIError == nil {
		return nil
	}
	return e.APIError
}

// errorWire is every field a 402 body is known to carry.
type errorWire struct {
	Balance          json.RawMessage              `json:"balance"`
	BalanceSeconds   jsonx.LooseNumber            `json:"balance_seconds"`
	Available        jsonx.LooseNumber            `json:"available"`
	Required         jsonx.LooseNumber            `json:"required"`
	Estimate         *estimateWire                `json:"estimate"`
	Breakdown        map[string]jsonx.LooseNumber `json:"breakdown"`
	BreakdownSeconds map[string]jsonx.LooseNumber `json:"breakdown_seconds"`
	Suggestions      []suggestionWire             `json:"suggestions"`
	Recommendation   *recommendationWire          `json:"recommendation"`
	ResumeToken      string                       `json:"resume_token"`
	CatalogVersion   string                       `json:"catalog_version"`
}

func newInsufficientBalanceError(e *APIError, body []byte) *InsufficientBalanceError {
	ib := &InsufficientBalanceError{APIError: e}
	var w errorWire
	if len(bytes.TrimSpace(body)) == 0 || !jsonx.DecodeLoosely(body, &w) {
		// A CDN stripped the body: v2.1's fallback.
		e.Code = CodeInsufficientAITime
		e.Message = insufficientFallbackMessage
		return ib
	}
	if strings.HasPrefix(string(e.Code), "http_") {
		e.Code = CodeInsufficientAITime
	}
	if strings.HasPrefix(e.Message, http.StatusText(http.StatusPaymentRequired)) || e.Message == string(e.Code) {
		e.Message = insufficientFallbackMessage
	}
	ib.fill(w)
	return ib
}

func (ib *InsufficientBalanceError) fill(w errorWire) {
	if b := decodeBalanceBreakdown(w.Balance); b != nil {
		ib.Balance = b
		ib.Available, ib.HasAvailable = b.Total, true
	}
	if w.Available.Valid {
		ib.Available, ib.HasAvailable = w.Available.Seconds(), true
	}
	if w.BalanceSeconds.Valid {
		ib.Available, ib.HasAvailable = w.BalanceSeconds.Seconds(), true
	}
	ib.Required = w.Required.Seconds()
	if w.Estimate != nil {
		ib.Estimate = w.Estimate.toEstimate()
		if ib.Required == 0 && ib.Estimate != nil {
			ib.Required = ib.Estimate.Duration
		}
	}
	bd := w.BreakdownSeconds
	if bd == nil {
		bd = w.Breakdown
	}
	if len(bd) > 0 {
		ib.Breakdown = make(map[string]time.Duration, len(bd))
		for k, v := range bd {
			ib.Breakdown[k] = v.Seconds()
		}
	}
	for _, s := range w.Suggestions {
		ib.Suggestions = append(ib.Suggestions, s.toSuggestion())
	}
	if w.Recommendation != nil {
		ib.Recommendation = w.Recommendation.toRecommendation()
	}
	ib.ResumeToken = w.ResumeToken
	ib.CatalogVersion = w.CatalogVersion
}

// check is the SufficientCheck that says what ib says.
func (ib *InsufficientBalanceError) check() *SufficientCheck {
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
	// Last is the last balance seen; HasLast says whether any request
	// succeeded (Last is the zero Balance when none did).
	Last    Balance
	HasLast bool
	// Err is the last request's error when the last request failed.
	Err error
}

// Error says whose balance was awaited, for how much, and what was last seen.
func (e *BalanceTimeoutError) Error() string {
	msg := fmt.Sprintf("sheen: balance of user %s did not reach %s within %s (%d polls", e.UserID, e.AtLeast, e.Waited, e.Polls)
	if e.HasLast {
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
