package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	sheen "github.com/sheenapps/sheen-go"
)

// writeJSON writes one JSON document to stdout, indented for reading.
func (a *app) writeJSON(v any) {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// writeJSONLine writes one compact JSON document on its own line, for
// streams (JSON lines).
func (a *app) writeJSONLine(v any) {
	enc := json.NewEncoder(a.stdout)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// printf writes text output to stdout.
func (a *app) printf(format string, args ...any) {
	fmt.Fprintf(a.stdout, format, args...)
}

// fprintf writes text to w; output errors (a closed pipe) are not the
// command's failure.
func fprintf(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, format, args...)
}

// notef writes a notice for a person to stderr (never with --json, whose
// stdout is the whole answer and whose stderr stays quiet).
func (a *app) notef(format string, args ...any) {
	if a.json {
		return
	}
	fmt.Fprintf(a.stderr, format, args...)
}

// table writes aligned columns.
func table(w io.Writer, header string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
}

// human writes an amount of AI time for people: whole seconds, as
// "1h5m0s", "2m30s", "45s", or "0s".
func human(d time.Duration) string {
	return d.Round(time.Second).String()
}

// seconds writes an amount of AI time for JSON: seconds as a number.
func seconds(d time.Duration) float64 {
	return math.Round(d.Seconds()*1000) / 1000
}

// stamp writes a time for JSON (RFC 3339, UTC), or nothing when zero.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// local writes a time for people, or "-" when unknown.
func local(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// percent writes a fraction in [0, 1] as a whole percentage.
func percent(f float64) int {
	return int(math.Round(f * 100))
}

// bytesHuman writes a byte count for people (SI units).
func bytesHuman(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// jsonSuggestion is a suggestion in JSON output.
type jsonSuggestion struct {
	Type            string  `json:"type"`
	Key             string  `json:"key,omitempty"`
	Plan            string  `json:"plan,omitempty"`
	DurationSeconds float64 `json:"durationSeconds,omitempty"`
}

func suggestionsJSON(in []sheen.Suggestion) []jsonSuggestion {
	out := make([]jsonSuggestion, 0, len(in))
	for _, s := range in {
		out = append(out, jsonSuggestion{Type: s.Type, Key: s.Key, Plan: s.Plan, DurationSeconds: seconds(s.Duration)})
	}
	return out
}

// jsonError is the document --json writes for a failure.
type jsonError struct {
	// Type is "error" when the document ends a stream of JSON lines.
	Type  string        `json:"type,omitempty"`
	Error jsonErrorBody `json:"error"`
}

type jsonErrorBody struct {
	Kind          string `json:"kind"`
	ExitCode      int    `json:"exitCode"`
	Message       string `json:"message"`
	Status        int    `json:"status,omitempty"`
	Code          string `json:"code,omitempty"`
	CorrelationID string `json:"correlationId,omitempty"`
	// 402
	AvailableSeconds *float64         `json:"availableSeconds,omitempty"`
	RequiredSeconds  *float64         `json:"requiredSeconds,omitempty"`
	Suggestions      []jsonSuggestion `json:"suggestions,omitempty"`
	// 429
	RetryAfterSeconds *float64 `json:"retryAfterSeconds,omitempty"`
	RetryAt           string   `json:"retryAt,omitempty"`
	// failed build
	BuildID string `json:"buildId,omitempty"`
	Phase   string `json:"phase,omitempty"`
}

// errorDocument describes err for --json.
func errorDocument(err error, code int) jsonError {
	body := jsonErrorBody{Kind: kindOf(code), ExitCode: code, Message: strings.TrimPrefix(explain(err, explainContext{}), "sheen: ")}
	var (
		api     *sheen.APIError
		short   *sheen.InsufficientBalanceError
		limited *sheen.RateLimitError
		failed  *sheen.BuildFailedError
	)
	if errors.As(err, &api) {
		body.Status, body.Code, body.CorrelationID = api.StatusCode, workerCode(api), api.CorrelationID
	}
	if errors.As(err, &short) {
		if short.HasAvailable {
			v := seconds(short.Available)
			body.AvailableSeconds = &v
		}
		if short.Required > 0 {
			v := seconds(short.Required)
			body.RequiredSeconds = &v
		}
		body.Suggestions = suggestionsJSON(short.Suggestions)
	}
	if errors.As(err, &limited) {
		if wait, at := retryWhen(limited, time.Now()); wait > 0 {
			v := seconds(wait)
			body.RetryAfterSeconds, body.RetryAt = &v, stamp(at)
		}
	}
	if errors.As(err, &failed) {
		body.BuildID, body.Phase, body.Code = failed.ID, string(failed.Phase), failed.Code
	}
	return jsonError{Error: body}
}
