package sheen

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/sheenapps/sheen-go/internal/jsonx"
	"github.com/sheenapps/sheen-go/internal/wire"
)

// maxGenerateAnswer caps the bytes read of a /generate answer. The worker
// caps the output text at MaxGenerateOutput; the document that carries it
// is larger by its JSON escaping (a newline or a quote takes two bytes), so
// the cap is twice the text's, plus room for the envelope and heartbeats:
// an answer the worker sent whole is never refused for its escaping, and a
// runaway stream is still cut.
const maxGenerateAnswer = 2*MaxGenerateOutput + 64<<10

// errGenerateTooLarge ends the reading of an answer over maxGenerateAnswer.
var errGenerateTooLarge = fmt.Errorf("%w: the answer is over %d bytes", ErrPayloadTooLarge, maxGenerateAnswer)

// generation follows one Generate call through its attempts. The request
// path is the core's, without go-retryablehttp (which reads a whole answer
// under the attempt timeout): the shared limiter, a signature per attempt,
// the caller's transport, the retry rule (decideRetry) with the call never
// taken for safe to repeat, and the core's errors, logs and Response.
type generation struct {
	core   *core
	ai     *aiState
	cc     callConfig
	body   []byte
	sentID string         // the X-Correlation-Id sent
	p      retryPolicy    // the core's per-call record: attempt count, logs, outcome
	resp   *http.Response // the last attempt's answer, nil when it had none
	// fallback: the final failure is one GenerateConfig.Fallback answers.
	fallback bool
}

func newGeneration(c *WorkerClient, cc callConfig, body []byte) *generation {
	g := &generation{core: c.core, ai: &c.ai, cc: cc, body: body, sentID: cc.correlationID}
	if g.sentID == "" {
		g.sentID = newCorrelationID()
	}
	g.p = retryPolicy{c: c.core, method: http.MethodPost, path: c.ai.path}
	return g
}

// run makes attempts until one answers, or the retry rule, for a call
// never safe to repeat, stops: an ambiguous failure is wrapped in an
// *OutcomeUnknownError, unless it is one the fallback answers.
func (g *generation) run(ctx context.Context) (string, error) {
	rule := retryRule{maxAttempts: cmp.Or(g.cc.maxAttempts, g.core.maxAttempts), maxWait: g.core.maxWait, backoffBase: g.core.backoffBase}
	for {
		g.p.attempt++
		out, a, err := g.try(ctx)
		if err == nil {
			g.p.obs.endAttempt(ctx, a, g.resp, nil, false, 0)
			g.p.log(ctx, g.resp, nil, false, 0)
			return out, nil
		}
		retry, wait, ambiguous := decideRetry(a, false, rule)
		if unusable2xx(a, err) {
			// The worker sends its 200 and a heartbeat before the model
			// starts: any 2xx means the model ran, and an answer that
			// cannot be read leaves what it did unknown.
			ambiguous = true
		}
		g.fallback = g.ai.fallback != nil && fallbackCase(a, err)
		if g.fallback && a.status == http.StatusTooManyRequests {
			retry = false // the budget is hourly: the fallback, now
		}
		g.p.obs.endAttempt(ctx, a, g.resp, nil, retry, wait)
		g.p.log(ctx, g.resp, a.err, retry, wait)
		if !retry {
			g.p.ambiguous = ambiguous && !g.fallback
			return "", g.p.outcome(err, g.correlationID())
		}
		if serr := sleep(ctx, g.core.clock, wait); serr != nil {
			return "", fmt.Errorf("sheen: POST %s: %w (while waiting to retry after: %v)", g.ai.path, serr, err)
		}
	}
}

// unusable2xx reports an attempt that got a 2xx whose document could not
// be used: not JSON, no "success" flag, cut short, over the size cap. A
// success:false document (a *GenerateError) is the worker's word, not this.
func unusable2xx(a attempt, err error) bool {
	var re *ResponseError
	return a.status >= 200 && a.status <= 299 && errors.As(err, &re)
}

// fallbackCase reports the failures of an attempt that GenerateConfig.Fallback
// answers: the worker's 429, the client's own limiter refusing to wait, a
// worker unreachable, a gateway's 502/503/504 in place of the worker's
// immediate 200.
func fallbackCase(a attempt, err error) bool {
	switch a.status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	case 0:
		return a.err != nil && (neverReachedServer(a.err) || isClientAbort(a.err) && errors.Is(err, ErrRateLimited))
	}
	return false
}

// try makes one attempt. a describes it for the retry rule; err is its
// failure as the caller would see it.
func (g *generation) try(ctx context.Context) (out string, a attempt, err error) {
	g.resp = nil
	a.n = g.p.attempt
	defer func() {
		a.now, a.done = g.core.clock.Now(), ctx.Err() != nil
		a.deadline, _ = ctx.Deadline()
	}()
	ctx, obs := beginAttempt(ctx) // the attempt's span, when the call is observed
	release, err := g.core.limiter.acquire(ctx)
	obs.acquired(ctx)
	if err != nil {
		a.err = &clientAbort{err}
		return "", a, g.core.transportError(ctx, &g.p, nil, a.err, g.sentID)
	}
	w := newAttemptContext(ctx, g.ai.stall)
	defer w.stop()
	req, err := g.newRequest(w.ctx)
	if err != nil {
		release(nil)
		a.err = &clientAbort{err}
		return "", a, err
	}
	obs.inject(w.ctx, req.Header) // traceparent: not signed (the signature covers the body and path)
	resp, err := g.ai.transport.RoundTrip(req)
	release(g.limiterView(resp))
	if err != nil {
		a.err = g.cause(w, err)
		return "", a, g.core.transportError(ctx, &g.p, nil, a.err, g.sentID)
	}
	w.resumeWatchdog()
	defer resp.Body.Close()
	g.resp = resp
	a.status, a.header = resp.StatusCode, resp.Header
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", a, g.refusal(ctx, w, resp)
	}
	out, a.err, err = g.readAnswer(w, resp)
	return out, a, err
}

// newRequest is one attempt's request, signed.
func (g *generation) newRequest(ctx context.Context) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.ai.url, bytes.NewReader(g.body))
	if err != nil {
		return nil, &ValidationError{Field: "generate URL", Reason: wire.RedactedError(err)}
	}
	for k, vs := range g.cc.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	h := req.Header
	h["Accept"] = acceptJSON
	h["User-Agent"] = g.core.userAgentHeader
	h["Content-Type"] = contentTypeJSON
	h.Set("X-Correlation-Id", g.sentID)
	if g.cc.idempotencyKey != "" {
		h.Set("Idempotency-Key", g.cc.idempotencyKey)
	}
	h.Set(HeaderSignature, g.ai.sign(g.core.signer.current(), req.URL.RequestURI(), g.body))
	return req, nil
}

// limiterView is what the client's limiter learns from a /generate answer.
// The worker answers 429 when its hourly generation budget is spent, with no
// Retry-After and no rate-limit headers; the limiter would read that as a
// pause of every call of the client. That budget is the route's own and
// says nothing of the /v1 routes' window, so such a 429 reaches the limiter
// as an answer without a status; a 429 that carries a hint is passed on.
func (g *generation) limiterView(resp *http.Response) *http.Response {
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "" {
		return resp
	}
	if _, ok := parseRateHeaders(resp.Header, g.core.clock.Now()); ok {
		return resp
	}
	return &http.Response{Header: resp.Header}
}

// stallError is an attempt the stall watchdog cut: no byte of the answer
// within the stall timeout. It matches context.DeadlineExceeded.
type stallError struct{ timeout time.Duration }

func (e *stallError) Error() string {
	return fmt.Sprintf("no byte of the answer within the stall timeout of %s", e.timeout)
}

// Is matches context.DeadlineExceeded.
func (e *stallError) Is(target error) bool { return target == context.DeadlineExceeded }

// cause names why an attempt broke off: the caller's context ending, or
// the stall watchdog, whatever the transport made of it. A dial the
// watchdog cut stays the dial error it is: nothing was sent.
func (g *generation) cause(w *attemptContext, err error) error {
	switch {
	case w.parent.Err() != nil:
		return w.parent.Err()
	case context.Cause(w.ctx) == errStalled && !neverReachedServer(err):
		return &stallError{timeout: g.ai.stall}
	}
	return err
}

// watchedBody reads an answer under the stall watchdog, at most left bytes.
type watchedBody struct {
	r    io.Reader
	w    *attemptContext
	left int64
}

func (b *watchedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errGenerateTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if n > 0 {
		b.w.resumeWatchdog()
	}
	return n, err
}

// refusal reads a non-2xx answer into its typed error. The status decides:
// a body cut short still leaves it what it is.
func (g *generation) refusal(ctx context.Context, w *attemptContext, resp *http.Response) error {
	body, _ := io.ReadAll(&watchedBody{r: resp.Body, w: w, left: maxErrorBody * 4})
	e := newAPIError(resp.StatusCode, resp.Header, body, g.core.clock.Now())
	e.Method, e.Path = http.MethodPost, g.ai.path
	if e.CorrelationID == "" {
		e.CorrelationID = g.sentID
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		e.Message += g.signatureHint()
	case http.StatusForbidden:
		if !e.Code.Equal(CodeInvalidSignature) {
			return e // the deployed /generate's 403 is an invalid project path, its bad signature a 401
		}
	case http.StatusTooManyRequests:
		if g.ai.refusals.add(g.core.clock.Now()) {
			g.core.logger.LogAttrs(ctx, slog.LevelWarn, "sheen: the worker refused more than 3 generations within 5 minutes (429): its hourly generation budget is spent")
		}
		r := newRateLimitError(e, LimiterSnapshot{AdvertisedLimit: -1, Remaining: -1})
		if info, ok := parseRateHeaders(resp.Header, g.core.clock.Now()); ok {
			r.Limit, r.Remaining, r.Reset = info.limit, info.remaining, info.reset
		}
		return r
	}
	return g.core.typedError(e, body)
}

// signatureHint says what to check when /generate refused the signature.
func (g *generation) signatureHint() string {
	if g.core.signer.current() == SigningBodyPath {
		return "; the deployed worker signs /generate over the body alone: use sheen.WithSigning(sheen.SigningDual) or set " + EnvSigning + "=dual"
	}
	return "; the signature was made with the generation secret from " + g.ai.secretFrom + ": check it"
}

// generateAnswer is the document that ends a 2xx answer.
type generateAnswer struct {
	Success jsonx.LooseBool `json:"success"`
	Output  *string         `json:"output"`
	Error   json.RawMessage `json:"error"`
	Message string          `json:"message"`
}

// readAnswer reads a 2xx answer: whitespace heartbeats, then one JSON
// document. cut is set when the stream broke or stalled before the
// document was whole; err is the call's failure: a *GenerateError for the
// worker's success:false, a *ResponseError for an answer that cannot be
// used (which run reports as an outcome unknown: the model ran).
func (g *generation) readAnswer(w *attemptContext, resp *http.Response) (out string, cut, err error) {
	br := bufio.NewReader(&watchedBody{r: resp.Body, w: w, left: maxGenerateAnswer})
	first, rerr := skipHeartbeats(br)
	switch {
	case rerr == io.EOF:
		rerr = errors.New("the answer ended after its heartbeats, without a document")
	case errors.Is(rerr, errGenerateTooLarge):
		return "", nil, g.unusable(resp, rerr)
	}
	if rerr != nil {
		return g.cut(w, resp, rerr)
	}
	ct := resp.Header.Get("Content-Type")
	if first == '<' && !isJSONType(ct) {
		return "", nil, g.unusable(resp, fmt.Errorf("got a page of %s where JSON was expected", mediaType(ct, "markup")))
	}
	var doc generateAnswer
	if derr := json.NewDecoder(br).Decode(&doc); derr != nil {
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		if errors.Is(derr, errGenerateTooLarge) || errors.As(derr, &syntax) || errors.As(derr, &typ) {
			return "", nil, g.unusable(resp, fmt.Errorf("decoding JSON: %w", derr))
		}
		return g.cut(w, resp, derr)
	}
	switch {
	case !doc.Success.Valid:
		return "", nil, g.unusable(resp, errors.New(`the document has no "success" flag`))
	case !doc.Success.Bool:
		return "", nil, &GenerateError{Message: doc.failure(), CorrelationID: g.correlationID()}
	case doc.Output == nil:
		return "", nil, nil
	}
	return *doc.Output, nil, nil
}

// skipHeartbeats reads past the whitespace the worker sends while the
// model runs and returns the first byte after it, left unread.
func skipHeartbeats(br *bufio.Reader) (byte, error) {
	for {
		c, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c, br.UnreadByte()
	}
}

// failure is the worker's message in a success:false document.
func (d *generateAnswer) failure() string {
	var s string
	var nested nestedError
	switch {
	case json.Unmarshal(d.Error, &s) == nil && s != "":
		return s
	case jsonx.DecodeLoosely(d.Error, &nested) && nested.Message != "":
		return nested.Message
	case d.Message != "":
		return d.Message
	}
	return "the worker reported a failure without a message"
}

// cut is the failure of an answer that broke off: a *ResponseError around
// the stream's error (a stall, a reset, an early end), which the retry rule
// sees as ambiguous.
func (g *generation) cut(w *attemptContext, resp *http.Response, err error) (string, error, error) {
	cut := &bodyReadError{g.cause(w, err)}
	return "", cut, g.unusable(resp, cut)
}

// unusable is a *ResponseError about a 2xx answer.
func (g *generation) unusable(resp *http.Response, err error) error {
	return &ResponseError{
		StatusCode: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"),
		CorrelationID: g.correlationID(), Method: http.MethodPost, Path: g.ai.path, Err: err,
	}
}

// correlationID is the call's X-Correlation-Id: the worker's echo, or the
// one sent.
func (g *generation) correlationID() string {
	if g.resp != nil {
		if id := g.resp.Header.Get("X-Correlation-Id"); id != "" {
			return id
		}
	}
	return g.sentID
}

// record fills the caller's Response (WithResponse).
func (g *generation) record() {
	g.cc.record(g.resp, g.p.attempt, g.sentID, g.core.limiter)
}
