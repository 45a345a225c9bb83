package sheen

import (
	"bytes"
	"cmp"
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
	// ErrBalanceTimeout is matched by the *BalanceTimeoutError of a
	// WaitForBalance that gave up.
	ErrBalanceTimeout = errors.New("sheen: balance did not reach the expected amount in time")
	// ErrBuildFailed is matched (errors.Is) by the *BuildFailedError that Wait
	// returns when the build ends in failure.
	ErrBuildFailed = errors.New("sheen: build failed")
	// ErrBuildNotQueued is matched (errors.Is) by the error a build call returns
	// when the worker answered without a build id: the deployed worker can say
	// success with an empty id when queueing failed, and such an answer is not
	// a build that will ever run.
	ErrBuildNotQueued = errors.New("sheen: the worker did not queue the build")
	// ErrGenerationFailed is matched by a *GenerateError: the worker ran the
	// prompt and reported a failure.
	ErrGenerationFailed = errors.New("sheen: generation failed")
	// Sentinels a *DownloadError matches (besides context errors, the
	// network's errors and ErrPayloadTooLarge for DownloadOptions.MaxSize).
	// ErrTruncated: the archive stopped before its end (the body ended
	// before the announced length, or the connection broke or stalled in
	// the middle of it) and resuming did not bring the rest. The error
	// matches the cause too (for example syscall.ECONNRESET).
	ErrTruncated = errors.New("sheen: download truncated")
	// ErrLinkExpired: the object store refused the link (403) and no fresh
	// one could be had (the link was refreshed once already, or it was not
	// made by this client).
	ErrLinkExpired = errors.New("sheen: download link expired or refused")
	// ErrRangeIgnored: after a break, the object store sent the archive
	// from the start again and the writer cannot be reset.
	ErrRangeIgnored = errors.New("sheen: object store ignored the Range request and the writer cannot be reset")
	// ErrInsecureDownload: the link, or a redirect from the object store, is
	// plain http:// and the client did not opt into it. A signed link is a
	// bearer credential: it never crosses the network in clear unless the client
	// was made with WithInsecureHTTP. Plain http:// on a loopback host is
	// allowed (local stores, tests), but never after https:// (a downgrade).
	ErrInsecureDownload = errors.New("sheen: download refused: plain http:// would expose the signed link")
	// ErrSharedUnavailable marks an answer of a shared store (SharedLimiter,
	// SharedCache, sheenhttp.NonceChecker) that could not reach its backend
	// in time. For the limiter and the caches the client then falls back, for
	// that call, to its own local limiter or cache; a sheenhttp.Verifier
	// refuses the request (see sheenhttp.NonceChecker). Implementations
	// return it promptly (a short timeout, not the caller's whole context)
	// and wrap it with the cause.
	ErrSharedUnavailable = errors.New("sheen: shared store unavailable")
)

// ErrorCode is the worker's machine-readable code for a failure. The worker
// spells some codes in more than one case (insufficient_ai_time from the
// build routes, INSUFFICIENT_AI_TIME from billing): compare with Equal.
type ErrorCode string

// Equal reports whether c and other are the same code, ignoring case.
func (c ErrorCode) Equal(other ErrorCode) bool { return strings.EqualFold(string(c), string(other)) }

// Codes the worker sends in error bodies that the SDK gives meaning to.
const (
	CodeMissingSignature     ErrorCode = "MISSING_SIGNATURE"
	CodeInvalidSignature     ErrorCode = "INVALID_SIGNATURE"
	CodeTimestampOutOfRange  ErrorCode = "TIMESTAMP_OUT_OF_RANGE"
	CodeReplayAttackDetected ErrorCode = "REPLAY_ATTACK_DETECTED"
	CodeInsufficientAITime   ErrorCode = "insufficient_ai_time"
	CodeBodyTooLarge         ErrorCode = "FST_ERR_CTP_BODY_TOO_LARGE"
	CodeProjectCreation      ErrorCode = "project_creation_in_progress"
	CodeRollbackInProgress   ErrorCode = "rollback_in_progress"
)

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
	// the status (for example "http_404"). Compare with Code.Equal: the
	// worker's spelling varies in case.
	Code ErrorCode
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
		sb.WriteString(" " + string(e.Code))
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
		return e.StatusCode == http.StatusPaymentRequired || e.Code.Equal(CodeInsufficientAITime)
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

func isAuthStatus(status int, code ErrorCode) bool {
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
	Code       string            `json:"code"`
	Error      json.RawMessage   `json:"error"`
	Message    string            `json:"message"`
	StatusCode int               `json:"statusCode"`
	RetryAfter jsonx.LooseNumber `json:"retryAfter"`
	ServerTime json.RawMessage   `json:"serverTime"`
	// Timestamp is the deployed middleware's name for its clock on a 408.
	Timestamp json.RawMessage `json:"timestamp"`
}

type nestedError struct {
	Code       string            `json:"code"`
	Message    string            `json:"message"`
	RetryAfter jsonx.LooseNumber `json:"retryAfter"`
	Hint       string            `json:"hint"`
}

var codeShaped = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)+$|^[A-Z][A-Z0-9]+$`)

// newAPIError reads the code and message out of any envelope of spec
// section 3. It never fails: an empty or HTML body gives a message from the
// status. now is the client's clock, against which a Retry-After date in
// header is read (unused without a header).
func newAPIError(status int, header http.Header, body []byte, now time.Time) *APIError {
	e := &APIError{StatusCode: status, Header: header}
	if len(body) > maxErrorBody {
		e.Body = bytes.Clone(body[:maxErrorBody])
	} else if len(body) > 0 {
		e.Body = bytes.Clone(body)
	}
	if header != nil {
		e.CorrelationID = header.Get("X-Correlation-Id")
		if d, ok := parseRetryAfter(header.Get("Retry-After"), now); ok {
			e.RetryAfter = d
		}
	}
	// Loosely: one field of an odd type must not lose the others.
	var env envelope
	if jsonx.DecodeLoosely(body, &env) {
		e.Code = ErrorCode(env.Code)
		e.Message = env.Message
		if env.RetryAfter.Valid && e.RetryAfter == 0 {
			e.RetryAfter = clampSeconds(env.RetryAfter.Float)
		}
		e.readErrorField(env.Error, env.StatusCode != 0)
	}
	if e.Code == "" {
		e.Code = ErrorCode("http_" + strconv.Itoa(status))
	}
	if e.Message == "" {
		e.Message = statusMessage(status, header, body)
	}
	return e
}

// readErrorField fills what the envelope's "error" field adds: a string
// (a code, or a message to put before the body's message unless the web
// framework's own envelope, framework true, already said it), or a nested
// object with code, message, hint and retryAfter.
func (e *APIError) readErrorField(raw json.RawMessage, framework bool) {
	if len(raw) == 0 {
		return
	}
	var s string
	var n nestedError
	switch {
	case json.Unmarshal(raw, &s) == nil:
		if e.Code == "" && codeShaped.MatchString(s) {
			e.Code = ErrorCode(s)
		}
		if e.Message == "" {
			e.Message = s
		} else if !codeShaped.MatchString(s) && s != e.Message && !framework {
			e.Message = s + ": " + e.Message
		}
	case jsonx.DecodeLoosely(raw, &n):
		e.Code = cmp.Or(e.Code, ErrorCode(n.Code))
		e.Message = cmp.Or(e.Message, n.Message)
		if n.Hint != "" {
			e.Message += " (" + n.Hint + ")"
		}
		if n.RetryAfter.Valid && e.RetryAfter == 0 {
			e.RetryAfter = clampSeconds(n.RetryAfter.Float)
		}
	}
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
	if jsonx.DecodeLoosely(body, &env) {
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
