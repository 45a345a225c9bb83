package sheen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sheenapps/sheen-go/internal/jsonx"
)

// Sentinels for errors.Is. Every error the worker answers with is an
// *APIError (possibly inside a typed error) that matches the sentinel of its
// status or code.
var (
	ErrInsufficientBalance = errors.New("sheen: insufficient AI time balance")
	ErrPayloadTooLarge     = errors.New("sheen: payload too large")
	ErrRateLimited         = errors.New("sheen: rate limited")
	ErrUnauthorized        = errors.New("sheen: request not authorised")
	ErrNotFound            = errors.New("sheen: not found")
	ErrConflict            = errors.New("sheen: conflict")
	ErrGone                = errors.New("sheen: gone")
	ErrServer              = errors.New("sheen: worker server error")
	// ErrOutcomeUnknown is matched by the failure of a call that is not
	// safe to repeat (it may start and bill a build) when the worker may
	// have acted on it: a gateway's 502/503/504, a 5xx, a connection lost
	// or an attempt timeout after the request was sent, an answer cut
	// short. The SDK does not send such a call again; reconcile (list the
	// project's builds, ask the worker with the correlation id) before
	// trying again yourself.
	ErrOutcomeUnknown = errors.New("sheen: outcome unknown: the worker may have acted on the request")
	// ErrNotConfigured is returned by the methods of a WorkerClient (or
	// service) that was not made by NewWorkerClient.
	ErrNotConfigured = errors.New("sheen: client not configured: make it with NewWorkerClient")
	// ErrInvalidResponse is matched by errors about a response the SDK
	// could not make sense of (HTML where JSON was due, a body cut short).
	ErrInvalidResponse = errors.New("sheen: invalid response from worker")
)

// Codes the worker sends in error bodies that the SDK gives meaning to.
const (
	CodeMissingSignature     = "MISSING_SIGNATURE"
	CodeInvalidSignature     = "INVALID_SIGNATURE"
	CodeTimestampOutOfRange  = "TIMESTAMP_OUT_OF_RANGE"
	CodeReplayAttackDetected = "REPLAY_ATTACK_DETECTED"
	CodeInsufficientAITime   = "insufficient_ai_time"
	CodeBodyTooLarge         = "FST_ERR_CTP_BODY_TOO_LARGE"
	CodeProjectCreation      = "project_creation_in_progress"
	CodeRollbackInProgress   = "rollback_in_progress"
)

// insufficientFallbackMessage is what v2.1 shows when a 402 came without a
// usable body.
const insufficientFallbackMessage = "Please add AI time credits to continue building"

// maxErrorBody caps how much of an error body is kept in APIError.Body.
const maxErrorBody = 8 << 10

// APIError is an answer from the worker that is not a success. Typed errors
// (InsufficientBalanceError, RateLimitError, ...) wrap one, so errors.As can
// always reach it.
type APIError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Code is the machine-readable code: the body's "code", else
	// "error.code", else a code-shaped "error" string, else one derived from
	// the status (for example "http_404").
	Code string
	// Message is a human-readable explanation, never empty.
	Message string
	// CorrelationID is the X-Correlation-Id the worker echoed (or the one
	// the SDK sent), for support requests.
	CorrelationID string
	// RetryAfter is the wait the worker asked for (Retry-After or
	// retryAfter in the body), zero when none.
	RetryAfter time.Duration
	// Method and Path say which call failed. Path has no query string.
	Method, Path string
	// Body is the raw response body, at most 8 KiB of it, for debugging.
	Body []byte
	// Header is the response header.
	Header http.Header
}

// Error returns "sheen: METHOD PATH: STATUS CODE: message (correlation id)".
func (e *APIError) Error() string {
	if e == nil {
		return "sheen: <nil APIError>"
	}
	var sb strings.Builder
	sb.WriteString("sheen: ")
	if e.Method != "" {
		sb.WriteString(e.Method + " " + e.Path + ": ")
	}
	sb.WriteString(strconv.Itoa(e.StatusCode))
	if e.Code != "" {
		sb.WriteString(" " + e.Code)
	}
	sb.WriteString(": " + e.Message)
	if e.CorrelationID != "" {
		sb.WriteString(" (correlation id " + e.CorrelationID + ")")
	}
	return sb.String()
}

// Is matches the sentinel that fits the status and code.
func (e *APIError) Is(target error) bool {
	if e == nil {
		return false
	}
	switch target {
	case ErrInsufficientBalance:
		return e.StatusCode == http.StatusPaymentRequired || strings.EqualFold(e.Code, CodeInsufficientAITime)
	case ErrPayloadTooLarge:
		return e.StatusCode == http.StatusRequestEntityTooLarge
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests
	case ErrUnauthorized:
		return isAuthStatus(e.StatusCode, e.Code)
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrConflict:
		return e.StatusCode == http.StatusConflict && e.Code != CodeReplayAttackDetected
	case ErrGone:
		return e.StatusCode == http.StatusGone
	case ErrServer:
		return e.StatusCode >= 500
	}
	return false
}

func isAuthStatus(status int, code string) bool {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return true
	case http.StatusRequestTimeout:
		return code == CodeTimestampOutOfRange
	case http.StatusConflict:
		return code == CodeReplayAttackDetected
	}
	return false
}

// AuthError is a refused signature: 401 MISSING_SIGNATURE, 403
// INVALID_SIGNATURE (or any 401/403), 408 TIMESTAMP_OUT_OF_RANGE, 409
// REPLAY_ATTACK_DETECTED. It never contains the secret or a signature.
type AuthError struct {
	*APIError
	// ServerTime is the worker's clock when it said so (serverTime in the
	// body, else the Date header), zero when unknown.
	ServerTime time.Time
}

// Unwrap gives errors.As the *APIError.
func (e *AuthError) Unwrap() error {
	if e == nil || e.APIError == nil {
		return nil
	}
	return e.APIError
}

// RateLimitError is a 429, or a wait for quota that could not fit in the
// caller's context deadline or the configured maximum wait.
type RateLimitError struct {
	*APIError
	// Limit, Remaining and Reset are the last rate-limit headers seen;
	// Limit and Remaining are -1 when unknown, Reset zero.
	Limit, Remaining int
	Reset            time.Time
}

// Unwrap gives errors.As the *APIError.
func (e *RateLimitError) Unwrap() error {
	if e == nil || e.APIError == nil {
		return nil
	}
	return e.APIError
}

// PayloadTooLargeError is a 413: an export over the size limit, or a request
// body over the worker's 1 MiB limit.
type PayloadTooLargeError struct {
	*APIError
	// Size and Limit are in bytes, zero when the worker did not say.
	Size, Limit int64
	// Suggestion is the worker's advice, if any.
	Suggestion string
}

// Unwrap gives errors.As the *APIError.
func (e *PayloadTooLargeError) Unwrap() error {
	if e == nil || e.APIError == nil {
		return nil
	}
	return e.APIError
}

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

// ValidationError is bad input refused before any request is made.
type ValidationError struct {
	// Field names what was wrong ("userId", "request body", "path").
	Field string
	// Reason says what is wrong with it.
	Reason string
	// Err is a sentinel the error also matches, if any
	// (ErrPayloadTooLarge for an oversized body).
	Err error
}

// Error returns "sheen: invalid FIELD: reason".
func (e *ValidationError) Error() string {
	if e == nil {
		return "sheen: <nil ValidationError>"
	}
	return "sheen: invalid " + e.Field + ": " + e.Reason
}

// Unwrap returns the sentinel the error matches, if any.
func (e *ValidationError) Unwrap() error {
	if e == nil {
		return nil
	}
	return e.Err
}

// ResponseError is a response the SDK could not use: HTML or garbage where
// JSON was due, or a body cut short. It matches ErrInvalidResponse.
type ResponseError struct {
	StatusCode    int
	ContentType   string
	CorrelationID string
	Method, Path  string
	Err           error
}

// Error says which call got what kind of unusable answer, and why.
func (e *ResponseError) Error() string {
	if e == nil {
		return "sheen: <nil ResponseError>"
	}
	msg := fmt.Sprintf("sheen: %s %s: unusable %d response", e.Method, e.Path, e.StatusCode)
	if e.ContentType != "" {
		msg += " (" + e.ContentType + ")"
	}
	if e.CorrelationID != "" {
		msg += " (correlation id " + e.CorrelationID + ")"
	}
	if e.Err == nil {
		return msg
	}
	return msg + ": " + e.Err.Error()
}

// Unwrap returns the underlying decoding error.
func (e *ResponseError) Unwrap() error {
	if e == nil {
		return nil
	}
	return e.Err
}

// Is matches ErrInvalidResponse.
func (e *ResponseError) Is(target error) bool { return target == ErrInvalidResponse }

// OutcomeUnknownError is the failure of a call that is not safe to repeat
// when the worker may have acted on it (see ErrOutcomeUnknown, which it
// matches). Err is what happened: an *APIError for a 5xx (so errors.As and
// the status sentinels still work), a transport error, a *ResponseError.
type OutcomeUnknownError struct {
	// Method and Path say which call it was; Path has no query.
	Method, Path string
	// CorrelationID identifies the request for the worker's logs.
	CorrelationID string
	// Attempts is how many times the request was sent.
	Attempts int
	// Err is the last attempt's failure.
	Err error
}

// Error says that the outcome is unknown, why, and the correlation id.
func (e *OutcomeUnknownError) Error() string {
	if e == nil {
		return "<nil>"
	}
	msg := "sheen: outcome unknown, not sent again (the worker may have acted on it)"
	inner := ""
	if e.Err != nil {
		inner = e.Err.Error()
	}
	if e.CorrelationID != "" && !strings.Contains(inner, e.CorrelationID) {
		msg += " (correlation id " + e.CorrelationID + ")"
	}
	if inner != "" {
		msg += ": " + strings.TrimPrefix(inner, "sheen: ")
	}
	return msg
}

// Unwrap returns the last attempt's failure.
func (e *OutcomeUnknownError) Unwrap() error {
	if e == nil {
		return nil
	}
	return e.Err
}

// Is matches ErrOutcomeUnknown.
func (e *OutcomeUnknownError) Is(target error) bool { return target == ErrOutcomeUnknown }

// envelope is the union of every error body shape the worker sends.
type envelope struct {
	Code       string          `json:"code"`
	Error      json.RawMessage `json:"error"`
	Message    string          `json:"message"`
	StatusCode int             `json:"statusCode"`
	RetryAfter looseNumber     `json:"retryAfter"`
	ServerTime json.RawMessage `json:"serverTime"`
	// Timestamp is the deployed middleware's name for its clock on a 408.
	Timestamp json.RawMessage `json:"timestamp"`
}

type nestedError struct {
	Code       string      `json:"code"`
	Message    string      `json:"message"`
	RetryAfter looseNumber `json:"retryAfter"`
	Hint       string      `json:"hint"`
}

var codeShaped = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)+$|^[A-Z][A-Z0-9]+$`)

// newAPIError reads the code and message out of any envelope of spec
// section 3. It never fails: an empty or HTML body gives a message from the
// status.
func newAPIError(status int, header http.Header, body []byte) *APIError {
	e := &APIError{StatusCode: status, Header: header}
	if len(body) > maxErrorBody {
		e.Body = bytes.Clone(body[:maxErrorBody])
	} else if len(body) > 0 {
		e.Body = bytes.Clone(body)
	}
	if header != nil {
		e.CorrelationID = header.Get("X-Correlation-Id")
		if d, ok := parseRetryAfter(header.Get("Retry-After"), time.Now()); ok {
			e.RetryAfter = d
		}
	}
	// Loosely: one field of an odd type must not lose the others.
	var env envelope
	if decodeLoosely(body, &env) {
		e.Code = env.Code
		e.Message = env.Message
		if env.RetryAfter.Valid && e.RetryAfter == 0 {
			e.RetryAfter = clampSeconds(env.RetryAfter.Float)
		}
		if len(env.Error) > 0 {
			var s string
			var n nestedError
			switch {
			case json.Unmarshal(env.Error, &s) == nil:
				if e.Code == "" && codeShaped.MatchString(s) {
					e.Code = s
				}
				if e.Message == "" {
					e.Message = s
				} else if !codeShaped.MatchString(s) && s != e.Message && env.StatusCode == 0 {
					e.Message = s + ": " + e.Message
				}
			case decodeLoosely(env.Error, &n):
				if e.Code == "" {
					e.Code = n.Code
				}
				if e.Message == "" {
					e.Message = n.Message
				}
				if n.Hint != "" {
					e.Message += " (" + n.Hint + ")"
				}
				if n.RetryAfter.Valid && e.RetryAfter == 0 {
					e.RetryAfter = clampSeconds(n.RetryAfter.Float)
				}
			}
		}
	}
	if e.Code == "" {
		e.Code = "http_" + strconv.Itoa(status)
	}
	if e.Message == "" {
		e.Message = statusMessage(status, header, body)
	}
	return e
}

// maxRetryAfter caps a wait the worker asks for; anything longer is read as
// a day, so no number on the wire can make a negative or absurd duration.
const maxRetryAfter = 24 * time.Hour

// clampSeconds turns a number of seconds from the wire into a duration in
// [0, maxRetryAfter].
func clampSeconds(s float64) time.Duration {
	switch {
	case !(s > 0): // also NaN
		return 0
	case s >= maxRetryAfter.Seconds():
		return maxRetryAfter
	}
	return time.Duration(s * float64(time.Second))
}

// statusMessage describes a response that carried no usable message.
func statusMessage(status int, header http.Header, body []byte) string {
	text := http.StatusText(status)
	if text == "" {
		text = "unexpected status"
	}
	switch {
	case len(bytes.TrimSpace(body)) == 0:
		return text + " (empty body)"
	case header != nil && strings.Contains(header.Get("Content-Type"), "html") || looksHTML(body):
		return text + " (an HTML page, probably from a proxy or CDN)"
	}
	return text + " (body is not a JSON error)"
}

func looksHTML(body []byte) bool {
	b := bytes.TrimSpace(body)
	return len(b) > 0 && b[0] == '<'
}

// serverTime returns the worker's clock from a serverTime body field (Unix
// seconds or milliseconds, or an ISO date) or else the Date header.
func serverTime(header http.Header, body []byte) (time.Time, bool) {
	var env envelope
	if decodeLoosely(body, &env) {
		for _, raw := range []json.RawMessage{env.ServerTime, env.Timestamp} {
			if t, ok := parseClock(raw); ok {
				return t, true
			}
		}
	}
	if header != nil {
		if t, err := http.ParseTime(header.Get("Date")); err == nil && plausibleClock(t) {
			return t, true
		}
	}
	return time.Time{}, false
}

// parseClock reads a clock reading from the wire: Unix seconds or
// milliseconds (a number or a numeric string), or an RFC 3339 date. Readings
// before 2000 or after 2200 are not believed.
func parseClock(raw json.RawMessage) (time.Time, bool) {
	var n jsonx.Number
	var t time.Time
	var s string
	switch {
	case len(raw) == 0:
		return time.Time{}, false
	case json.Unmarshal(raw, &n) == nil && n.Valid:
		if n.Float > 1e11 { // milliseconds
			t = time.UnixMilli(int64(n.Float))
		} else {
			t = time.Unix(int64(n.Float), 0)
		}
	case json.Unmarshal(raw, &s) == nil:
		var err error
		if t, err = time.Parse(time.RFC3339, s); err != nil {
			return time.Time{}, false
		}
	default:
		return time.Time{}, false
	}
	return t, plausibleClock(t)
}

// plausibleClock reports a clock reading between 2000 and 2200: anything
// else is a broken clock or a broken parse, not worth correcting towards.
func plausibleClock(t time.Time) bool { return t.Year() >= 2000 && t.Year() <= 2200 }

// typedError wraps the APIError of a response in the typed error that fits
// its status and code. snap is the rate limiter's view, for RateLimitError.
func typedError(e *APIError, body []byte, snap LimiterSnapshot) error {
	switch {
	case e.StatusCode == http.StatusPaymentRequired:
		return newInsufficientBalanceError(e, body)
	case isAuthStatus(e.StatusCode, e.Code):
		a := &AuthError{APIError: e}
		if t, ok := serverTime(e.Header, body); ok {
			a.ServerTime = t
		}
		return a
	case e.StatusCode == http.StatusTooManyRequests:
		return newRateLimitError(e, snap)
	case e.StatusCode == http.StatusRequestEntityTooLarge:
		p := &PayloadTooLargeError{APIError: e}
		var b struct {
			Size       jsonx.Number `json:"size"`
			Limit      jsonx.Number `json:"limit"`
			Suggestion string       `json:"suggestion"`
		}
		if json.Unmarshal(body, &b) == nil {
			p.Size, p.Limit, p.Suggestion = int64(b.Size.Float), int64(b.Limit.Float), b.Suggestion
		}
		return p
	}
	return e
}

func newRateLimitError(e *APIError, snap LimiterSnapshot) *RateLimitError {
	r := &RateLimitError{APIError: e, Limit: snap.AdvertisedLimit, Remaining: snap.Remaining, Reset: snap.Reset}
	if e.Header != nil {
		if info, ok := parseRateHeaders(e.Header, time.Now()); ok {
			r.Limit, r.Remaining, r.Reset = info.limit, info.remaining, info.reset
		}
	}
	return r
}

// errorWire is every field a 402 body is known to carry.
type errorWire struct {
	Balance          json.RawMessage        `json:"balance"`
	BalanceSeconds   looseNumber            `json:"balance_seconds"`
	Available        looseNumber            `json:"available"`
	Required         looseNumber            `json:"required"`
	Estimate         *estimateWire          `json:"estimate"`
	Breakdown        map[string]looseNumber `json:"breakdown"`
	BreakdownSeconds map[string]looseNumber `json:"breakdown_seconds"`
	Suggestions      []suggestionWire       `json:"suggestions"`
	Recommendation   *recommendationWire    `json:"recommendation"`
	ResumeToken      string                 `json:"resume_token"`
	CatalogVersion   string                 `json:"catalog_version"`
}

func newInsufficientBalanceError(e *APIError, body []byte) *InsufficientBalanceError {
	ib := &InsufficientBalanceError{APIError: e}
	var w errorWire
	if len(bytes.TrimSpace(body)) == 0 || !decodeLoosely(body, &w) {
		// A CDN stripped the body: v2.1's fallback.
		e.Code = CodeInsufficientAITime
		e.Message = insufficientFallbackMessage
		return ib
	}
	if strings.HasPrefix(e.Code, "http_") {
		e.Code = CodeInsufficientAITime
	}
	if strings.HasPrefix(e.Message, http.StatusText(http.StatusPaymentRequired)) || e.Message == e.Code {
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
