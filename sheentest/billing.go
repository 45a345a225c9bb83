package sheentest

import (
	"math"
	"net/http"
	"strconv"
	"time"
)

// user is one user's AI-time ledger.
type user struct {
	id                      string
	welcome, daily, paid    time.Duration
	todayUsed, lifetimeUsed time.Duration
	byOperation             map[string]time.Duration
	events                  []billingEvent // oldest first
}

type billingEvent struct {
	Type      string    `json:"type"`
	Seconds   int64     `json:"seconds"`
	Reason    string    `json:"reason"`
	Timestamp time.Time `json:"timestamp"`
}

func (u *user) total() time.Duration { return u.welcome + u.daily + u.paid }

// charge takes d from the daily gift first, then the welcome bonus, then
// paid time.
func (u *user) charge(d time.Duration, operation, reason string, at time.Time) {
	take := func(b *time.Duration) {
		n := min(*b, d)
		*b -= n
		d -= n
	}
	charged := d
	take(&u.daily)
	take(&u.welcome)
	take(&u.paid)
	u.todayUsed += charged
	u.lifetimeUsed += charged
	if u.byOperation == nil {
		u.byOperation = map[string]time.Duration{}
	}
	u.byOperation[operation] += charged
	u.events = append(u.events, billingEvent{Type: "consumption", Seconds: int64(charged / time.Second), Reason: reason, Timestamp: at.UTC()})
}

// userLocked returns the user, creating one with the welcome bonus and
// daily gift on first sight. Called with s.mu held.
func (s *Server) userLocked(id string) *user {
	u := s.users[id]
	if u == nil {
		u = &user{id: id, welcome: s.cfg.welcomeBonus, daily: s.cfg.dailyGift}
		s.users[id] = u
	}
	return u
}

// Credit adds paid AI time to a user, as a payment landing would.
func (s *Server) Credit(userID string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userLocked(userID)
	u.paid += d
	u.events = append(u.events, billingEvent{Type: "purchase", Seconds: int64(d / time.Second), Reason: "payment", Timestamp: s.now().UTC()})
}

// SetBalance replaces a user's balance with paid AI time only.
func (s *Server) SetBalance(userID string, paid time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userLocked(userID)
	u.welcome, u.daily, u.paid = 0, 0, paid
}

// Balance returns a user's total AI time.
func (s *Server) Balance(userID string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.userLocked(userID).total()
}

func secs(d time.Duration) int64 { return int64(d / time.Second) }

func (s *Server) v21Balance(u *user) map[string]any {
	return map[string]any{
		"welcomeBonus": secs(u.welcome), "dailyGift": secs(u.daily), "paid": secs(u.paid), "total": secs(u.total()),
	}
}

func (s *Server) nextDailyReset() time.Time {
	now := s.now().UTC()
	return time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
}

func (s *Server) handleBalance(w http.ResponseWriter, r *http.Request) {
	if s.cfg.shapes == ShapesV21 {
		s.handleLegacyBalance(w, r)
		return
	}
	s.mu.Lock()
	u := s.userLocked(r.PathValue("userId"))
	reset := s.nextDailyReset()
	plan := "free"
	if u.paid > 0 {
		plan = "paid"
	}
	var nextExpiry any
	if u.daily > 0 {
		nextExpiry = reset.Format(time.RFC3339)
	}
	// The deployed worker sends some numbers as strings.
	body := map[string]any{
		"version":             "2025-09-01",
		"plan_key":            plan,
		"subscription_status": map[bool]string{true: "active", false: "inactive"}[u.paid > 0],
		"totals": map[string]any{
			"total_seconds":  strconv.FormatInt(secs(u.total()), 10),
			"paid_seconds":   secs(u.paid),
			"bonus_seconds":  strconv.FormatInt(secs(u.welcome+u.daily), 10),
			"next_expiry_at": nextExpiry,
		},
		"buckets": []map[string]any{
			{"source": "welcome", "seconds": secs(u.welcome), "expires_at": nil},
			{"source": "daily", "seconds": secs(u.daily), "expires_at": reset.Format(time.RFC3339)},
			{"source": "paid", "seconds": secs(u.paid), "expires_at": nil},
		},
		"bonus": map[string]any{
			"daily_minutes": int64(s.cfg.dailyGift / time.Minute), "used_this_month_minutes": int64(u.lifetimeUsed / time.Minute), "monthly_cap_minutes": 300,
		},
		"catalog_version": catalogVersion,
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

const catalogVersion = "2025-09-01"

func (s *Server) handleLegacyBalance(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	u := s.userLocked(r.PathValue("userId"))
	body := map[string]any{
		"balance":      s.v21Balance(u),
		"usage":        map[string]any{"todayUsed": secs(u.todayUsed), "lifetimeUsed": secs(u.lifetimeUsed)},
		"dailyResetAt": s.nextDailyReset().Format(time.RFC3339),
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

// estimate is the fake worker's estimate rule: a main build takes 2, 5 or
// 10 minutes for a small, medium or large project, an update half that,
// metadata 30 seconds.
func estimate(operation, size string, isUpdate bool) time.Duration {
	var d time.Duration
	switch size {
	case "small":
		d = 2 * time.Minute
	case "large":
		d = 10 * time.Minute
	default:
		d = 5 * time.Minute
	}
	switch {
	case operation == "metadata_generation":
		d = 30 * time.Second
	case operation == "update" || isUpdate:
		d /= 2
	}
	return d
}

func estimateBody(d time.Duration) map[string]any {
	return map[string]any{
		"estimatedSeconds": secs(d), "estimatedMinutes": int64(math.Ceil(d.Minutes())), "confidence": "medium", "basedOnSamples": 25,
	}
}

func (s *Server) handleCheckSufficient(w http.ResponseWriter, r *http.Request) {
	var in struct {
		UserID        string `json:"userId"`
		OperationType string `json:"operationType"`
		ProjectSize   string `json:"projectSize"`
		IsUpdate      bool   `json:"isUpdate"`
	}
	if !decodeBody(w, r, &in) { // checked against its schema (validate.go)
		return
	}
	need := estimate(in.OperationType, in.ProjectSize, in.IsUpdate)
	s.mu.Lock()
	u := s.userLocked(in.UserID)
	have := u.total()
	bal := s.v21Balance(u)
	breakdown := map[string]any{"bonus_daily": secs(u.daily), "welcome": secs(u.welcome), "paid": secs(u.paid)}
	s.mu.Unlock()
	if have >= need {
		writeJSON(w, http.StatusOK, map[string]any{"sufficient": true, "estimate": estimateBody(need), "balance": bal})
		return
	}
	if s.cfg.shapes == ShapesV21 {
		writeJSON(w, http.StatusOK, map[string]any{
			"sufficient": false, "estimate": estimateBody(need), "balance": bal,
			"recommendation": map[string]any{"suggestedPackage": "mini", "costToComplete": 5, "purchaseUrl": s.URL + "/purchase?package=mini"},
		})
		return
	}
	writeJSON(w, http.StatusPaymentRequired, map[string]any{
		"error": "INSUFFICIENT_AI_TIME", "http_status": 402,
		"balance_seconds": secs(have), "breakdown_seconds": breakdown,
		"suggestions":     suggestions(),
		"catalog_version": catalogVersion, "resume_token": newHex(16),
	})
}

func suggestions() []map[string]any {
	return []map[string]any{{"type": "package", "key": "mini", "minutes": 60}, {"type": "upgrade", "plan": "starter"}}
}

func (s *Server) handleCheckBatch(w http.ResponseWriter, r *http.Request) {
	var in struct {
		UserID     string `json:"userId"`
		Operations []struct {
			Operation       string  `json:"operation"`
			EstimateSeconds float64 `json:"estimate_seconds"`
		} `json:"operations"`
	}
	if !decodeBody(w, r, &in) { // checked against its schema (validate.go)
		return
	}
	s.mu.Lock()
	have := s.userLocked(in.UserID).total().Seconds()
	s.mu.Unlock()
	out := make([]map[string]any, 0, len(in.Operations))
	used := 0.0
	for _, op := range in.Operations {
		used += op.EstimateSeconds
		res := map[string]any{"operation": op.Operation, "ok": used <= have, "deficit_seconds": math.Max(0, used-have)}
		if used > have {
			res["suggestions"] = suggestions()
		}
		out = append(out, res)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleUsage(w http.ResponseWriter, r *http.Request) {
	period := r.URL.Query().Get("period")
	if period == "" {
		period = "month"
	}
	if period != "day" && period != "month" {
		validationError(w, "querystring/period must be equal to one of the allowed values")
		return
	}
	s.mu.Lock()
	u := s.userLocked(r.PathValue("userId"))
	total := u.lifetimeUsed
	if period == "day" {
		total = u.todayUsed
	}
	byOp := map[string]int64{}
	for k, v := range u.byOperation {
		byOp[k] = secs(v)
	}
	today := s.now().UTC().Format("2006-01-02")
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"total_seconds": secs(total), "by_operation": byOp,
		"daily_trend": []map[string]any{{"date": today, "seconds": secs(total)}},
	})
}

func (s *Server) handleBillingEvents(w http.ResponseWriter, r *http.Request) {
	limit := 20
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			validationError(w, "querystring/limit must be <= 100 and >= 1")
			return
		}
		limit = n
	}
	// The worker answers the latest events, newest first.
	s.mu.Lock()
	u := s.userLocked(r.PathValue("userId"))
	evs := u.events // oldest first
	out := make([]billingEvent, 0, min(limit, len(evs)))
	for i := len(evs) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, evs[i])
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"events": out})
}
