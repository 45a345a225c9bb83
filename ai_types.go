package sheen

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// GenerateRequest is a prompt to run on a user's project. All three fields
// are required: the worker refuses a request without any of them.
type GenerateRequest struct {
	// UserID owns the project.
	UserID string `json:"userId"`
	// ProjectID names the project, whose working folder on the worker the
	// model reads and changes.
	ProjectID string `json:"projectId"`
	// Prompt is what the model is asked to do.
	Prompt string `json:"prompt"`
}

// GenerateResult is the answer to a prompt.
type GenerateResult struct {
	// Fallback is true when the caller's fallback (GenerateConfig.Fallback)
	// answered because the worker could not take the prompt; FallbackCause
	// says why. False when the worker's own model answered.
	Fallback bool
	// Output is the model's text.
	Output string
	// CorrelationID is the X-Correlation-Id of the worker call (the
	// worker's echo, or the one sent), also when the fallback answered.
	CorrelationID string
	// FallbackCause is why the fallback answered: the worker's failure (a
	// *RateLimitError, an *APIError for a 502/503/504, a connection
	// refused); nil when the worker answered.
	FallbackCause error
}

// outputExceeded is the worker's message for an output over
// MaxGenerateOutput.
const outputExceeded = "Output buffer exceeded"

// GenerateError is a generation the worker reported as failed: an answer
// {"success":false,"error":"..."} inside a 200. The model may have run and
// changed the project's files before it failed. It matches
// ErrGenerationFailed, and ErrPayloadTooLarge when the output went over
// MaxGenerateOutput.
type GenerateError struct {
	// Message is the worker's error message, never empty.
	Message string
	// CorrelationID is the X-Correlation-Id of the call.
	CorrelationID string
}

// Error returns "sheen: POST /generate: generation failed: message
// (correlation id)".
func (e *GenerateError) Error() string {
	if e == nil {
		return "sheen: <nil GenerateError>"
	}
	msg := "sheen: POST /generate: generation failed: " + e.Message
	if e.CorrelationID != "" {
		msg += " (correlation id " + e.CorrelationID + ")"
	}
	return msg
}

// Is matches ErrGenerationFailed, and ErrPayloadTooLarge for an output over
// the worker's cap.
func (e *GenerateError) Is(target error) bool {
	if e == nil {
		return false
	}
	switch target {
	case ErrGenerationFailed:
		return true
	case ErrPayloadTooLarge:
		return strings.EqualFold(strings.TrimSpace(e.Message), outputExceeded)
	}
	return false
}

// RateLimitAlert is the seed's alert rule on the worker's generation
// budget: more than 3 rate-limit refusals (429) of /generate in 5 minutes.
// See AIService.RateLimitRefusals.
type RateLimitAlert struct {
	// Count is how many 429s /generate answered within Window.
	Count int
	// Window is the span counted: 5 minutes.
	Window time.Duration
	// Alerting is Count > 3: the worker's hourly budget is spent, and
	// prompts go to the fallback (or fail) until it refills.
	Alerting bool
	// Last is when the last refusal came, zero when none did within Window.
	Last time.Time
}

// A GenerateConfig holds a secret: every way of printing it (fmt's verbs,
// slog, encoding/json) shows the secret as "REDACTED" and the URL without
// its user info or query. Only what reads the field itself sees the secret.

// redactedSecret is what the printed forms of a GenerateConfig show for a
// secret that is set.
const redactedSecret = "REDACTED"

// String describes the configuration with its secret redacted and the URL
// without user info or query, naming only the fields that are set:
// sheen.GenerateConfig{url=https://claude.test/generate secret=REDACTED
// stall=10m0s fallback}.
func (c GenerateConfig) String() string {
	var sb strings.Builder
	sb.WriteString("sheen.GenerateConfig{")
	sep := ""
	add := func(s string) { sb.WriteString(sep + s); sep = " " }
	if c.URL != "" {
		add("url=" + redactURL(c.URL))
	}
	if c.Secret != "" {
		add("secret=" + redactedSecret)
	}
	if c.StallTimeout != 0 {
		add("stall=" + c.StallTimeout.String())
	}
	if c.Fallback != nil {
		add("fallback")
	}
	sb.WriteString("}")
	return sb.String()
}

// GoString is String, so %#v redacts too.
func (c GenerateConfig) GoString() string { return c.String() }

// Format prints String for every verb (GoString for %#v), so that no verb
// (%d, %x, %+v) reaches the secret through fmt's reflection.
func (c GenerateConfig) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, c.GoString())
		return
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), c.String())
}

// LogValue makes slog log the configuration with its secret redacted and
// the URL without user info or query.
func (c GenerateConfig) LogValue() slog.Value {
	var attrs []slog.Attr
	if c.URL != "" {
		attrs = append(attrs, slog.String("url", redactURL(c.URL)))
	}
	if c.Secret != "" {
		attrs = append(attrs, slog.String("secret", redactedSecret))
	}
	if c.StallTimeout != 0 {
		attrs = append(attrs, slog.Duration("stall_timeout", c.StallTimeout))
	}
	attrs = append(attrs, slog.Bool("fallback", c.Fallback != nil))
	return slog.GroupValue(attrs...)
}

// MarshalJSON writes the configuration for logs, with its secret redacted
// and the URL without user info or query: {"url","secret","stallTimeout",
// "fallback"}, the first three only when set, the stall timeout as a Go
// duration ("10m0s"). What it writes cannot be read back into a working
// configuration.
func (c GenerateConfig) MarshalJSON() ([]byte, error) {
	j := struct {
		URL          string `json:"url,omitempty"`
		Secret       string `json:"secret,omitempty"`
		StallTimeout string `json:"stallTimeout,omitempty"`
		Fallback     bool   `json:"fallback"`
	}{Fallback: c.Fallback != nil}
	if c.URL != "" {
		j.URL = redactURL(c.URL)
	}
	if c.Secret != "" {
		j.Secret = redactedSecret
	}
	if c.StallTimeout != 0 {
		j.StallTimeout = c.StallTimeout.String()
	}
	return json.Marshal(j)
}
