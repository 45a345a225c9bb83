package sheen

import (
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
