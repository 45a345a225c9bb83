package sheen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sheenapps/sheen-go/internal/jsonx"
	"github.com/sheenapps/sheen-go/internal/signing"
	"github.com/sheenapps/sheen-go/internal/wire"
)

// generatePath is the endpoint's path below a base URL.
const generatePath = "/generate"

// AIService runs prompts on a project with the worker's model: the v2.1
// plan's prompt runner (the seed's "Claude runner").
//
// A generation runs a model on the project's working folder on the worker:
// it costs money and changes files, so it is never sent twice unless the
// worker provably did not start it. Generate shares the client's rate
// limiter, logger and error types; it has its own URL and secret
// (WithGenerate, or CLAUDE_WORKER_URL and CLAUDE_SHARED_SECRET), falling back to the worker's.
type AIService service

// aiConfig is what the client options say about Generate.
type aiConfig struct {
	url, urlFrom       string
	secret, secretFrom string
	stall              time.Duration
	fallback           func(context.Context, GenerateRequest) (string, error)
}

// GenerateConfig configures AIService.Generate; give it to the client with
// WithGenerate. Every field is optional: its zero value keeps the default.
type GenerateConfig struct {
	// URL is the generation endpoint (default: the worker's base URL, or
	// CLAUDE_WORKER_URL with NewWorkerClientFromEnv). A URL whose path ends
	// in /generate is the endpoint itself; any other is a base URL that
	// /generate is added to. The rules of WithBaseURL apply (https, or
	// http:// on loopback or with WithInsecureHTTP).
	URL string

	// Secret is the endpoint's secret (default: the main one, WithSecret,
	// or CLAUDE_SHARED_SECRET with NewWorkerClientFromEnv). Like the main
	// one it must be at least MinSecretLength characters. Printing,
	// logging or marshalling a GenerateConfig shows it as "REDACTED"
	// (String, Format, LogValue, MarshalJSON).
	Secret string

	// StallTimeout is how long Generate waits for the next byte of the
	// worker's answer: the request's headers, a heartbeat or the document
	// (0: DefaultGenerateStallTimeout; negative: as long as the call's
	// context allows). A generation may run for minutes; the attempt
	// timeout (RetryConfig.AttemptTimeout) does not apply to it, this does.
	//
	// The deployed worker sends one heartbeat (a space) at once and nothing
	// more until the model ends: against it, a run longer than the stall
	// timeout is cut (and reported as ErrOutcomeUnknown). Set it above the
	// longest run you expect, or negative, unless your worker heart-beats.
	StallTimeout time.Duration

	// Fallback is the model that answers a prompt when the worker cannot
	// take it: at its first 429 (the worker's budget is hourly, a retry
	// within seconds finds it spent; the client's own limiter refusing to
	// wait counts too), or once the retry rule gives up on a worker that is
	// unreachable (connection refused, DNS) or that a gateway answered 502,
	// 503 or 504 for in place of the worker's immediate 200. The result
	// says so (GenerateResult.Fallback, and FallbackCause the worker's
	// failure). It is not called for other failures, nor once ctx has
	// ended. Nil: no fallback.
	Fallback func(ctx context.Context, req GenerateRequest) (string, error)
}

// WithGenerate configures the prompt runner, AIService.Generate: its
// endpoint, secret, stall timeout and fallback. Fields left zero keep their
// defaults; a blank URL or Secret that is not empty is an error.
func WithGenerate(cfg GenerateConfig) Option {
	return func(c *config) error {
		if cfg.URL != "" && strings.TrimSpace(cfg.URL) == "" {
			return errors.New("sheen: WithGenerate: GenerateConfig.URL is blank")
		}
		if cfg.URL != "" {
			c.ai.url, c.ai.urlFrom = cfg.URL, "GenerateConfig.URL"
		}
		if cfg.Secret != "" {
			c.ai.secret, c.ai.secretFrom = cfg.Secret, "GenerateConfig.Secret"
		}
		if cfg.StallTimeout != 0 {
			c.ai.stall = cfg.StallTimeout
		}
		if cfg.Fallback != nil {
			c.ai.fallback = cfg.Fallback
		}
		return nil
	}
}

// aiFromEnv turns CLAUDE_WORKER_URL and CLAUDE_SHARED_SECRET into options;
// empty values count as unset.
func aiFromEnv() []Option {
	var opts []Option
	if v := os.Getenv(EnvGenerateURL); v != "" {
		opts = append(opts, func(c *config) error { c.ai.url, c.ai.urlFrom = v, EnvGenerateURL; return nil })
	}
	if v := os.Getenv(EnvGenerateSecret); v != "" {
		opts = append(opts, func(c *config) error { c.ai.secret, c.ai.secretFrom = v, EnvGenerateSecret; return nil })
	}
	return opts
}

// aiState is the AI service's own state on the client.
type aiState struct {
	url        string // the endpoint
	path       string // its path, for errors and logs
	secretFrom string // the setting its secret came from, for errors
	key        *signing.Key
	transport  http.RoundTripper // the caller's transport, without signer or limiter
	stall      time.Duration
	fallback   func(context.Context, GenerateRequest) (string, error)
	refusals   refusalLog
}

// init checks the endpoint and its secret with the rules of the main ones
// and names the setting each came from in its errors.
func (a *aiState) init(c *core, cfg *config) error {
	v := *cfg
	v.secretV2 = ""
	if cfg.ai.url != "" {
		v.baseURL, v.baseURLFrom = cfg.ai.url, cfg.ai.urlFrom
	}
	if cfg.ai.secret != "" {
		v.secret, v.secretFrom = cfg.ai.secret, cfg.ai.secretFrom
	}
	u, err := v.validate()
	if err != nil {
		return err
	}
	if !strings.HasSuffix(u.EscapedPath(), generatePath) {
		u = u.JoinPath(generatePath)
	}
	a.url, a.path = u.String(), u.EscapedPath()
	a.key, a.secretFrom = signing.NewKey([]byte(v.secret)), v.secretFrom
	a.transport = http.DefaultTransport
	if st, ok := c.http.Transport.(*signingTransport); ok {
		a.transport = unsignedTransport{st}
	}
	switch {
	case cfg.ai.stall == 0:
		a.stall = DefaultGenerateStallTimeout
	case cfg.ai.stall > 0:
		a.stall = cfg.ai.stall
	}
	a.fallback = cfg.ai.fallback
	return nil
}

// sign is the x-sheen-signature of a generation: over body + path with
// v2.1's scheme, as every v2.1 route; over the body alone with the deployed
// worker's schemes, whose /generate checks neither v1 nor v2.
func (a *aiState) sign(scheme Signing, target string, body []byte) string {
	if scheme == SigningBodyPath {
		return signing.SignBodyPath(a.key, body, target)
	}
	return signing.SignBodyPath(a.key, body, "") // the body alone
}

// Generate runs req.Prompt on the project and returns the model's output.
//
// The worker answers at once with a heartbeat and then, when the model
// ends (seconds to minutes later), with one JSON document. The call is
// bounded by ctx and by the stall timeout (GenerateConfig.StallTimeout), not
// by the attempt timeout nor the HTTP client's Timeout. It is tried again
// only when the worker provably did not start it (connection refused, DNS,
// a 429); any other failure after the request may have reached the worker
// (a connection lost, a stall, a 5xx, a 2xx whose document cannot be read)
// is an *OutcomeUnknownError (ErrOutcomeUnknown): the model may have run
// and changed the project. The worker sends its 200 before the model
// starts, so a 2xx with an unusable document (not JSON, no "success" flag,
// cut short, over the size cap) is one too, wrapping a *ResponseError
// (ErrInvalidResponse); the fallback does not answer it.
// WithIdempotencyKey does not change that: the worker keeps no replay
// cache for /generate.
//
// Errors: a *GenerateError (ErrGenerationFailed) when the worker reports
// the run failed; an *APIError for a refusal (400 with the worker's
// message, 403 for an invalid project path, 404 ErrNotFound when the
// project has no working folder on the worker); *AuthError for a refused
// signature; *RateLimitError for a 429 without a fallback; *ValidationError
// for a request refused before sending. With GenerateConfig.Fallback, a 429 or
// an unavailable worker is answered by the fallback instead.
//
// Every CallOption applies; WithCallAttempts counts the attempts that the
// rule allows.
func (s *AIService) Generate(ctx context.Context, req GenerateRequest, opts ...CallOption) (*GenerateResult, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	if ctx == nil {
		return nil, &ValidationError{Field: "context", Reason: "is nil"}
	}
	cc, err := newCallConfig(opts)
	if err != nil {
		return nil, err
	}
	body, err := req.encode(cc)
	if err != nil {
		return nil, err
	}
	if cc.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cc.timeout)
		defer cancel()
	}
	g := newGeneration(s.client, cc, body)
	runCtx, obs := s.client.core.tel.startGenerate(ctx, s.client.ai.url)
	g.p.obs = obs
	out, err := g.run(runCtx)
	g.record()
	obs.endCall(runCtx, err, g.resp, g.p.attempt, g.correlationID())
	switch {
	case err == nil:
		return &GenerateResult{Output: out, CorrelationID: g.correlationID()}, nil
	case g.fallback && ctx.Err() == nil:
		return s.fallBack(ctx, req, err, g.correlationID())
	}
	return nil, err
}

// fallBack asks the caller's fallback model, after the worker's failure
// cause.
func (s *AIService) fallBack(ctx context.Context, req GenerateRequest, cause error, correlationID string) (*GenerateResult, error) {
	c := s.client
	c.core.logger.LogAttrs(ctx, slog.LevelDebug, "sheen: generate: the fallback answers",
		slog.String("cause", wire.RedactedError(cause)))
	out, err := c.ai.fallback(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("sheen: POST %s: the fallback failed: %w (after the worker's failure: %w)", c.ai.path, err, cause)
	}
	return &GenerateResult{Fallback: true, Output: out, CorrelationID: correlationID, FallbackCause: cause}, nil
}

// RateLimitRefusals reads the seed's alert rule: how many times /generate
// answered 429 in the last 5 minutes, and whether that is more than 3. A
// client that is not configured reports none.
func (s *AIService) RateLimitRefusals() RateLimitAlert {
	if ready((*service)(s)) != nil {
		return RateLimitAlert{Window: refusalWindow}
	}
	return s.client.ai.refusals.read(s.client.core.clock.Now())
}

// encode checks the request and returns its body, the exact bytes sent and
// signed. The ids name a folder on the worker: ones that would leave the
// project's (the worker's 403) are refused here.
func (r GenerateRequest) encode(cc callConfig) ([]byte, error) {
	if err := checkFolderID("userId", r.UserID); err != nil {
		return nil, err
	}
	if err := checkFolderID("projectId", r.ProjectID); err != nil {
		return nil, err
	}
	if r.Prompt == "" {
		return nil, &ValidationError{Field: "prompt", Reason: "is empty (the worker answers 400 Prompt is required)"}
	}
	if err := checkHeaders(&cc); err != nil {
		return nil, err
	}
	body, err := jsonx.Marshal(r)
	if err != nil {
		return nil, &ValidationError{Field: "request body", Reason: "cannot be encoded as JSON: " + err.Error()}
	}
	if len(body) > MaxRequestBody {
		return nil, &ValidationError{Field: "prompt", Reason: fmt.Sprintf("makes a body of %d bytes; the worker refuses bodies over %d", len(body), MaxRequestBody), Err: ErrPayloadTooLarge}
	}
	return body, nil
}

// checkFolderID refuses an id the worker would refuse or that would name a
// folder outside the project's: empty, a dot segment, a separator, a
// control character.
func checkFolderID(field, id string) error {
	switch {
	case strings.TrimSpace(id) == "":
		return &ValidationError{Field: field, Reason: "is empty or only white space"}
	case id == "." || id == ".." || strings.ContainsAny(id, `/\`):
		return &ValidationError{Field: field, Reason: fmt.Sprintf("%q would name a folder outside the project's", id)}
	case strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return &ValidationError{Field: field, Reason: "contains control characters"}
	}
	return nil
}

// refusalWindow and refusalAlert are the seed's alert rule: more than
// refusalAlert refusals within refusalWindow.
const (
	refusalWindow = 5 * time.Minute
	refusalAlert  = 3
)

// refusalSeconds is refusalWindow in whole seconds: one slot each.
const refusalSeconds = int64(refusalWindow / time.Second)

// refusalLog counts the 429s of /generate per second over the last
// refusalWindow, in fixed memory whatever their rate.
type refusalLog struct {
	mu       sync.Mutex
	slots    [refusalSeconds]refusalSlot
	last     time.Time
	alerting bool
}

type refusalSlot struct {
	sec int64 // the Unix second counted, 0 when unused
	n   int
}

// add counts a refusal at now and reports whether the alert starts with it.
func (l *refusalLog) add(now time.Time) (starts bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	sec := now.Unix()
	slot := &l.slots[sec%refusalSeconds]
	if slot.sec != sec {
		*slot = refusalSlot{sec: sec}
	}
	slot.n++
	if now.After(l.last) {
		l.last = now
	}
	alerting := l.countLocked(sec) > refusalAlert
	starts = alerting && !l.alerting
	l.alerting = alerting
	return starts
}

// read is the alert's state at now.
func (l *refusalLog) read(now time.Time) RateLimitAlert {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := RateLimitAlert{Count: l.countLocked(now.Unix()), Window: refusalWindow}
	a.Alerting = a.Count > refusalAlert
	if a.Count > 0 {
		a.Last = l.last
	}
	l.alerting = a.Alerting
	return a
}

// countLocked sums the slots of the window that ends at second sec.
func (l *refusalLog) countLocked(sec int64) int {
	n := 0
	for _, s := range l.slots {
		if s.sec > sec-refusalSeconds && s.sec <= sec {
			n += s.n
		}
	}
	return n
}
