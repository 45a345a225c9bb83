package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	sheen "github.com/sheenapps/sheen-go"
)

// Exit codes, by kind of failure. The package documentation and --help
// show exitTable; keep the three in step.
const (
	exitOK           = 0
	exitFailure      = 1
	exitUsage        = 2
	exitAuth         = 3
	exitInsufficient = 4
	exitNotFound     = 5
	exitRateLimited  = 6
	exitServer       = 7
	exitNetwork      = 8
	exitUnknown      = 9
	exitFailed       = 10
	exitExists       = 11
	exitInterrupted  = 130
)

// exitTable documents the exit codes for --help.
var exitTable = []struct {
	code    int
	kind    string
	meaning string
}{
	{exitOK, "ok", "success (check: affordable; verify: signature valid)"},
	{exitFailure, "failure", "any other refusal (400, 409 conflict, 413) or a local error"},
	{exitUsage, "usage", "bad command line or configuration, or input refused before sending"},
	{exitAuth, "auth", "signature or access refused (401, 403, 408, 409 replay); verify: invalid"},
	{exitInsufficient, "insufficient_balance", "not enough AI time (402; check: not affordable)"},
	{exitNotFound, "not_found", "no such user, build, project, version or archive (404)"},
	{exitRateLimited, "rate_limited", "rate limited for longer than the client waits (429)"},
	{exitServer, "server", "the worker failed (5xx) or sent an unusable answer"},
	{exitNetwork, "network", "the worker or the object store could not be reached, or timed out"},
	{exitUnknown, "outcome_unknown", "a build, rollback or generation may have started: check first"},
	{exitFailed, "build_failed", "the build (or generation) ran and failed"},
	{exitExists, "file_exists", "the output file exists and was left as it was (--force replaces it)"},
	{exitInterrupted, "interrupted", "interrupted (Ctrl-C)"},
}

// kindOf names an exit code for JSON error documents.
func kindOf(code int) string {
	for _, e := range exitTable {
		if e.code == code {
			return e.kind
		}
	}
	return "failure"
}

// exitCode chooses the exit code for an error. The order matters: an
// *OutcomeUnknownError wraps the 5xx that caused it, and a *DownloadError
// wraps whatever broke the download.
func exitCode(err error) int {
	var ue *usageError
	var ve *sheen.ValidationError
	var bf *sheen.BuildFailedError
	var ge *sheen.GenerateError
	var re *sheen.ResponseError
	var done *answered
	var exists *fileExistsError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &done):
		return done.code
	case errors.As(err, &exists):
		return exitExists
	case errors.As(err, &ue), errors.As(err, &ve):
		return exitUsage
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.Is(err, sheen.ErrOutcomeUnknown):
		return exitUnknown
	case errors.As(err, &bf), errors.As(err, &ge):
		return exitFailed
	case errors.Is(err, sheen.ErrInsufficientBalance):
		return exitInsufficient
	case errors.Is(err, sheen.ErrRateLimited):
		return exitRateLimited
	case errors.Is(err, sheen.ErrUnauthorized), errors.Is(err, sheen.ErrLinkExpired):
		return exitAuth
	case errors.Is(err, sheen.ErrNotFound):
		return exitNotFound
	case errors.Is(err, sheen.ErrServer), errors.As(err, &re):
		return exitServer
	case isNetwork(err):
		return exitNetwork
	}
	return exitFailure
}

// isNetwork reports a failure to reach or hear from the worker or the
// object store.
func isNetwork(err error) bool {
	var ne net.Error
	var de *sheen.DownloadError
	return errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sheen.ErrTruncated) || errors.As(err, &de)
}

// answered ends a command whose answer is printed already but calls for
// an exit code other than 0: check's "not affordable" (4), verify's
// "invalid" (3). Nothing more is printed for it.
type answered struct{ code int }

func (e *answered) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// explainContext is what explain may mention: how the client was set up.
type explainContext struct {
	baseURL string
	fake    bool
}

func (a *app) explainContext() explainContext {
	ec := explainContext{fake: a.fake}
	if a.client != nil {
		ec.baseURL = a.client.BaseURL()
	}
	return ec
}

// explain turns an error into lines a person can act on: what happened,
// what the worker said, and what to do next. It never shows the secret,
// a signature or a signed URL's query: the SDK's errors carry none. The
// SDK's option names in its messages become the flags that set them.
func explain(err error, ec explainContext) string {
	return flagWords(explainSDK(err, ec))
}

// sdkWords are the names of the SDK's options in its messages, and what a
// person at the command line sets instead. Longer names come first: at one
// position the first match wins.
var sdkWords = strings.NewReplacer(
	"sheen.WithSigning(sheen.SigningDual)", "--signing dual",
	"WithSigning", "--signing",
	"WithInsecureHTTP", "--insecure-http",
	"WithBaseURL", "--base-url",
	"WithSecretV2", "$"+sheen.EnvSecretV2,
	"WithSecret", "the shared secret ($"+sheen.EnvSecret+" or --secret-file)",
	"WithRetry: MaxAttempts", "--attempts",
)

// flagWords rewrites the SDK's option names in s into the flags and
// variables of the command line.
func flagWords(s string) string { return sdkWords.Replace(s) }

// explainSDK is explain in the SDK's own words.
func explainSDK(err error, ec explainContext) string {
	var (
		short   *sheen.InsufficientBalanceError
		limited *sheen.RateLimitError
		auth    *sheen.AuthError
		missing *sheen.ArtifactMissingError
		unknown *sheen.OutcomeUnknownError
		failed  *sheen.BuildFailedError
		api     *sheen.APIError
		marked  *explained
	)
	switch {
	case errors.As(err, &marked):
		return "sheen: " + marked.text
	case errors.Is(err, context.Canceled):
		return "sheen: interrupted"
	case errors.As(err, &unknown):
		return explainUnknown(unknown)
	case errors.As(err, &failed):
		return explainFailed(failed)
	case errors.As(err, &short):
		return explainInsufficient(short)
	case errors.As(err, &limited):
		return explainRateLimit(limited, time.Now())
	case errors.As(err, &auth):
		return explainAuth(auth)
	case errors.As(err, &missing):
		s := fmt.Sprintf("sheen: the archive is gone (%s): %s", status(missing.APIError), missing.Message)
		if missing.CanRebuild {
			s += "\n  the worker can rebuild it: run the same command with --rebuild"
		}
		return s
	case errors.Is(err, sheen.ErrNotFound) && errors.As(err, &api):
		return fmt.Sprintf("sheen: not found (%s): %s%s", status(api), api.Message, correlation(api.CorrelationID))
	case errors.Is(err, sheen.ErrServer) && errors.As(err, &api):
		return fmt.Sprintf("sheen: the worker failed (%s): %s%s\n  nothing to fix on your side; try again later",
			status(api), api.Message, correlation(api.CorrelationID))
	case isNetwork(err) && !errors.As(err, &api):
		return explainNetwork(err, ec)
	case errors.As(err, &api):
		return fmt.Sprintf("sheen: the worker refused (%s): %s%s", status(api), api.Message, correlation(api.CorrelationID))
	}
	return "sheen: " + strings.TrimPrefix(err.Error(), "sheen: ")
}

// explained is an error whose text is already written for a person.
type explained struct {
	text string
	err  error
}

func (e *explained) Error() string { return e.text }
func (e *explained) Unwrap() error { return e.err }

// status writes an answer's status and code, leaving out a code the SDK
// derived from the status ("http_404") because the worker sent none.
func status(api *sheen.APIError) string {
	if c := workerCode(api); c != "" {
		return fmt.Sprintf("%d %s", api.StatusCode, c)
	}
	return fmt.Sprint(api.StatusCode)
}

// workerCode is the code the worker sent, "" when the SDK derived one
// from the status.
func workerCode(api *sheen.APIError) string {
	if strings.HasPrefix(string(api.Code), "http_") {
		return ""
	}
	return string(api.Code)
}

func correlation(id string) string {
	if id == "" {
		return ""
	}
	return " (correlation id " + id + ")"
}

func explainInsufficient(e *sheen.InsufficientBalanceError) string {
	var b strings.Builder
	b.WriteString("sheen: not enough AI time")
	switch {
	case e.HasAvailable && e.Required > 0:
		fmt.Fprintf(&b, ": the balance is %s, the operation needs %s (short %s)",
			human(e.Available), human(e.Required), human(max(e.Required-e.Available, 0)))
	case e.HasAvailable:
		fmt.Fprintf(&b, ": the balance is %s", human(e.Available))
	case e.Required > 0:
		fmt.Fprintf(&b, ": the operation needs %s", human(e.Required))
	}
	fmt.Fprintf(&b, "\n  the worker said: %s (402 %s)%s", oneLine(e.Message), e.Code, correlation(e.CorrelationID))
	writeSuggestions(&b, e.Suggestions, e.Recommendation)
	if len(e.Suggestions) == 0 && e.Recommendation == nil {
		b.WriteString("\n  add AI time (a package or a plan upgrade), then try again")
	}
	return b.String()
}

// writeSuggestions lists the purchases the worker suggested.
func writeSuggestions(b *strings.Builder, sug []sheen.Suggestion, rec *sheen.Recommendation) {
	for _, s := range sug {
		b.WriteString("\n  suggestion: " + describeSuggestion(s))
	}
	if rec != nil && rec.SuggestedPackage != "" {
		fmt.Fprintf(b, "\n  recommended: package %s", rec.SuggestedPackage)
		if rec.CostToComplete > 0 {
			fmt.Fprintf(b, " (%.2f to complete)", rec.CostToComplete)
		}
		if rec.PurchaseURL != "" {
			b.WriteString(", buy at " + rec.PurchaseURL)
		}
	}
}

func describeSuggestion(s sheen.Suggestion) string {
	switch {
	case s.Plan != "":
		return fmt.Sprintf("%s to the %s plan", s.Type, s.Plan)
	case s.Key != "" && s.Duration > 0:
		return fmt.Sprintf("%s %s (+%s)", s.Type, s.Key, human(s.Duration))
	case s.Key != "":
		return s.Type + " " + s.Key
	}
	return s.Type
}

func explainRateLimit(e *sheen.RateLimitError, now time.Time) string {
	wait, at := retryWhen(e, now)
	s := "sheen: rate limited by the worker"
	if e.APIError != nil && e.StatusCode != 429 {
		s = "sheen: rate limited: the wait for quota does not fit in the time allowed"
	}
	if wait > 0 {
		s += fmt.Sprintf(": try again in %s (at %s)", human(wait), at.Local().Format("15:04:05"))
	} else {
		s += ": try again in a minute"
	}
	if e.Limit > 0 {
		s += fmt.Sprintf("\n  the worker allows %d requests per window", e.Limit)
	}
	if e.APIError != nil {
		s += correlation(e.CorrelationID)
	}
	return s
}

// retryWhen is how long until a rate-limited call may be tried again, and
// when that is: the worker's Retry-After, else its window's reset.
func retryWhen(e *sheen.RateLimitError, now time.Time) (time.Duration, time.Time) {
	if e.APIError != nil && e.RetryAfter > 0 {
		return e.RetryAfter, now.Add(e.RetryAfter)
	}
	if !e.Reset.IsZero() && e.Reset.After(now) {
		return e.Reset.Sub(now).Round(time.Second), e.Reset
	}
	return 0, time.Time{}
}

func explainAuth(e *sheen.AuthError) string {
	s := fmt.Sprintf("sheen: the worker refused the request (%s): %s%s", status(e.APIError), e.Message, correlation(e.CorrelationID))
	switch {
	case e.Code.Equal(sheen.CodeMissingSignature), e.Code.Equal(sheen.CodeInvalidSignature):
		s += "\n  check the secret (" + sheen.EnvSecret + " or --secret-file) and the scheme (" +
			sheen.EnvSigning + " or --signing; the deployed worker wants dual)"
	case e.Code.Equal(sheen.CodeTimestampOutOfRange):
		s += "\n  this machine's clock is too far from the worker's: set it right (NTP) and try again"
		if !e.ServerTime.IsZero() {
			s += fmt.Sprintf(" (the worker's clock read %s)", e.ServerTime.UTC().Format(time.RFC3339))
		}
	case e.Code.Equal(sheen.CodeReplayAttackDetected):
		s += "\n  the request's nonce was used before: try again"
	}
	return s
}

func explainUnknown(e *sheen.OutcomeUnknownError) string {
	cause := strings.TrimPrefix(e.Err.Error(), "sheen: ")
	var api *sheen.APIError
	if errors.As(e.Err, &api) {
		cause = fmt.Sprintf("it answered %s: %s", status(api), api.Message)
	}
	return fmt.Sprintf("sheen: outcome unknown: the worker may have carried out %s %s (%s)\n"+
		"  check before trying again (sheen history USER, sheen versions PROJECT), or it may run twice%s",
		e.Method, e.Path, cause, correlation(e.CorrelationID))
}

func explainFailed(e *sheen.BuildFailedError) string {
	s := "sheen: build " + e.ID + " failed"
	if e.Phase != "" {
		s += " while in " + string(e.Phase)
	}
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	return s + ": " + e.Message
}

func explainNetwork(err error, ec explainContext) string {
	where := "the worker"
	if ec.baseURL != "" {
		where += " at " + ec.baseURL
	}
	var de *sheen.DownloadError
	if errors.As(err, &de) {
		where = "the object store"
	}
	msg := strings.TrimPrefix(err.Error(), "sheen: ")
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "sheen: timed out waiting for " + where + ": " + msg
	case errors.Is(err, syscall.ECONNREFUSED):
		return "sheen: cannot reach " + where + ": connection refused (is " + sheen.EnvBaseURL + " or --base-url right?)"
	}
	return "sheen: trouble talking to " + where + ": " + msg
}
