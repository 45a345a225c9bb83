package sheen

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/textproto"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/sheenapps/sheen-go/internal/jsonx"
	"github.com/sheenapps/sheen-go/internal/wire"
)

// maxResponseBody caps a successful JSON answer (the worker's largest, a
// page of versions or events, is a few hundred KiB). Answers are decoded as
// they arrive: an oversized answer costs a small multiple of this, however
// large it is.
const maxResponseBody = 2 << 20

// WorkerClient talks to the SheenApps Worker API. Its services share one
// core: one signer, one rate limiter, one retry policy, one logger. It is
// safe for concurrent use; make one per worker and secret and share it.
type WorkerClient struct {
	// Billing checks balances and whether an operation is affordable.
	Billing *BillingService
	// Builds starts builds, follows their events and manages versions.
	Builds *BuildsService
	// Exports hands out download links and downloads archives.
	Exports *ExportsService
	// AI runs prompts on a project with the worker's model (/generate).
	AI *AIService

	core   *core
	common service

	// The services' own state and settings, beside the core's request path.
	billing billingState // the balance cache
	builds  buildsConfig // the pre-build check, the event source
	exports exportsState // the link cache and the download client
	ai      aiState
}

// ready reports ErrNotConfigured for a service of a client that
// NewWorkerClient did not make (the services of a zero WorkerClient are
// nil). Every exported service method checks it first.
func ready(s *service) error {
	if s == nil || s.client == nil || s.client.core == nil {
		return ErrNotConfigured
	}
	return nil
}

// call is one service call to the worker: a route of routes.go with the
// values of its parameters, an optional query and body, and where to decode
// the answer. Services describe their calls this way and send them.
type call struct {
	route  string
	params []string
	query  url.Values
	in     any
	out    any
	userID string // the user the call acts for: a 402 drops their cached balance
	safe   bool   // the call only reads: retried after ambiguous failures like a GET
}

// send makes one service call through the core, with the caller's
// CallOptions. A 402 for the call's user tells Billing that user's cached
// balance is stale: the service learns it from the error, the core knows
// nothing of balances.
func (s *service) send(ctx context.Context, c call, opts []CallOption) error {
	if err := ready(s); err != nil {
		return err
	}
	cc, err := newCallConfig(opts)
	if err != nil {
		return err
	}
	cc.safe, cc.route, cc.userID = c.safe, c.route, s.client.core.tel.telemetryUserID(&c)
	method, target, err := expandRoute(c.route, c.params...)
	if err != nil {
		return err
	}
	if len(c.query) > 0 {
		target += "?" + c.query.Encode()
	}
	err = s.client.core.do(ctx, method, target, c.in, c.out, cc)
	if c.userID != "" && errors.Is(err, ErrInsufficientBalance) {
		s.client.Billing.InvalidateBalance(c.userID)
	}
	return err
}

// service is what every service holds: the client it belongs to.
type service struct {
	client *WorkerClient
}

// core is the shared request path: build request -> send through the retry
// client (whose transport limits and signs each attempt) -> decode.
type core struct {
	baseURL     *url.URL
	basePath    string // baseURL's path without a trailing slash
	host        string // baseURL's host as a request's Host (no empty port)
	http        *http.Client
	signer      *signer
	limiter     *adaptiveLimiter
	logger      *slog.Logger
	clock       Clock
	maxAttempts int
	maxWait     time.Duration
	backoffBase time.Duration
	userAgent   string
	// userAgentHeader is userAgent as a header value, made once.
	userAgentHeader []string
	tel             *telemetry // traces and metrics (telemetry.go)

	// Per-service state (caches and the like), declared in each service's
	// file and set up by its init method.
}

// NewWorkerClient makes a client. WithSecret is required; everything else
// has a default (the production worker, v2.1 signing, 60 requests per minute,
// 4 attempts, waits of at most 5 minutes).
func NewWorkerClient(opts ...Option) (*WorkerClient, error) {
	cfg := defaultConfig()
	for i, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("sheen: NewWorkerClient: option %d is nil", i+1)
		}
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	return newClient(cfg)
}

// NewWorkerClientFromEnv makes a client from WORKER_BASE_URL (default
// https://worker.sheenapps.com), WORKER_SHARED_SECRET, WORKER_SHARED_SECRET_V2
// and WORKER_SIGNING (bodypath, timestamp or dual), and for AI.Generate
// CLAUDE_WORKER_URL and CLAUDE_SHARED_SECRET. Options given here win over
// the environment. An error about a setting that neither the environment
// nor an option gave names the variable to set (WORKER_SHARED_SECRET is not
// set), not an option the caller never used.
func NewWorkerClientFromEnv(opts ...Option) (*WorkerClient, error) {
	named := func(c *config) error { c.secretFrom, c.baseURLFrom = EnvSecret, EnvBaseURL; return nil }
	return NewWorkerClient(append(append([]Option{named}, fromEnv()...), opts...)...)
}

func newClient(cfg config) (*WorkerClient, error) {
	base, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	var timeout time.Duration
	if cfg.httpClient != nil {
		timeout = cfg.httpClient.Timeout
	}
	s := newSigner(cfg.signing, !cfg.signingSet, cfg.secret, cfg.secretV2, cfg.clock, cfg.logger)
	lim := newAdaptiveLimiter(cfg.perMinute, cfg.maxWait, cfg.clock)
	lim.shared = cfg.sharedLimiter
	c := &core{
		baseURL:  base,
		basePath: strings.TrimSuffix(base.Path, "/"),
		host:     strings.TrimSuffix(base.Host, ":"), // as http.NewRequest drops an empty port
		http: &http.Client{
			Transport: &signingTransport{user: cfg.httpClient, signer: s, limiter: lim, attemptTimeout: cfg.attemptTimeout, basePath: strings.TrimSuffix(base.Path, "/")},
			Timeout:   timeout,
			// A redirect would carry signed headers to another target.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		signer:          s,
		limiter:         lim,
		logger:          cfg.logger,
		clock:           cfg.clock,
		maxAttempts:     cfg.maxAttempts,
		maxWait:         cfg.maxWait,
		backoffBase:     cfg.backoffBase,
		userAgent:       cfg.userAgent,
		userAgentHeader: []string{cfg.userAgent},
		tel:             newTelemetry(cfg.telemetry, base),
	}
	wc := &WorkerClient{core: c}
	wc.builds = cfg.builds
	wc.billing.init(cfg.clock, cfg.billing)
	wc.exports.init(c, cfg.exports)
	wc.billing.cache.onEvict, wc.exports.links.onEvict = c.tel.evictions(cacheBalance), c.tel.evictions(cacheLinks)
	if err := wc.ai.init(c, &cfg); err != nil {
		return nil, err
	}
	wc.common.client = wc
	wc.Billing = (*BillingService)(&wc.common)
	wc.Builds = (*BuildsService)(&wc.common)
	wc.Exports = (*ExportsService)(&wc.common)
	wc.AI = (*AIService)(&wc.common)
	return wc, nil
}

// BaseURL returns the worker's base URL; "" for a client that
// NewWorkerClient did not make (nil or the zero WorkerClient).
func (c *WorkerClient) BaseURL() string {
	if c == nil || c.core == nil {
		return ""
	}
	return c.core.baseURL.String()
}

// Signing returns the signing scheme in use; the zero Signing for a client
// that NewWorkerClient did not make.
func (c *WorkerClient) Signing() Signing {
	if c == nil || c.core == nil {
		return 0
	}
	return c.core.signer.current()
}

// RateLimit returns a snapshot of the client's rate limiter; the zero
// LimiterSnapshot for a client that NewWorkerClient did not make.
func (c *WorkerClient) RateLimit() LimiterSnapshot {
	if c == nil || c.core == nil {
		return LimiterSnapshot{}
	}
	return c.core.limiter.snapshot()
}

// ClockOffset is how far the worker's clock is ahead of the local one, as
// learnt from a 408 TIMESTAMP_OUT_OF_RANGE; it is added to every signature's
// timestamp. It is 0 for a client that NewWorkerClient did not make.
func (c *WorkerClient) ClockOffset() time.Duration {
	if c == nil || c.core == nil {
		return 0
	}
	return time.Duration(c.core.signer.offset.Load()) * time.Second
}

// Do sends one request to the worker through the same signing, rate limiting,
// retries and error decoding as the services: the escape hatch for endpoints
// the SDK does not wrap yet.
//
// pathWithQuery is the request target below the base URL, already escaped,
// for example "/v1/billing/usage/u1?period=day"; use url.PathEscape for IDs.
// Bytes outside ASCII are percent-encoded before sending and signing. in is
// JSON-encoded the way JavaScript's JSON.stringify writes it; a []byte or
// json.RawMessage is sent as given, except that valid JSON is rewritten the
// way the worker's JSON.stringify(JSON.parse(body)) would (same value; white
// space dropped, integer-like keys first, numbers as JavaScript writes them)
// so the routes that re-serialise and compare accept it. in must be nil for
// GET, HEAD and DELETE. out, when non-nil, receives the JSON response (a *[]byte receives
// the raw bytes); it must be a non-nil pointer, or nil to discard the
// answer. method must be given (it is not taken for GET). Header values
// (WithHeader, WithCorrelationID, WithIdempotencyKey) may not hold CR, LF or
// other control characters. Bad input is refused before anything is sent.
// Failures are typed: *APIError and the errors that wrap it,
// *ValidationError for bad input, *ResponseError for an unusable response,
// and ErrOutcomeUnknown when a POST may have been acted on (see the retry
// rule in the package documentation).
func (c *WorkerClient) Do(ctx context.Context, method, pathWithQuery string, in, out any, opts ...CallOption) error {
	if c == nil || c.core == nil {
		return ErrNotConfigured
	}
	cc, err := newCallConfig(opts)
	if err != nil {
		return err
	}
	return c.core.do(ctx, method, escapeNonASCII(pathWithQuery), in, out, cc)
}

func (c *core) do(ctx context.Context, method, target string, in, out any, cc callConfig) error {
	if c == nil {
		return ErrNotConfigured
	}
	if ctx == nil {
		return &ValidationError{Field: "context", Reason: "is nil"}
	}
	if cc.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cc.timeout)
		defer cancel()
	}
	method = strings.ToUpper(method)
	if method == "" {
		return &ValidationError{Field: "method", Reason: "is empty"}
	}
	if err := checkTarget(target); err != nil {
		return err
	}
	if err := checkOut(out); err != nil {
		return err
	}
	if err := checkHeaders(&cc); err != nil {
		return err
	}
	body, err := encodeBody(method, in)
	if err != nil {
		return err
	}
	ctx, obs := c.tel.startCall(ctx, cc.route, method, cc.userID)
	u, err := c.targetURL(target)
	if err != nil {
		obs.endCall(ctx, err, nil, 0, "")
		return err
	}
	req, err := c.newRequest(ctx, method, u, body, cc)
	if err != nil {
		obs.endCall(ctx, err, nil, 0, "")
		return err
	}
	run := newRetryRun(c.http, retryPolicy{
		c:          c,
		method:     method,
		path:       cmp.Or(u.RawPath, u.Path), // as the caller escaped it
		idempotent: cc.safe || isIdempotent(method) || req.Header.Get("Idempotency-Key") != "" && !ignoresIdempotencyKey(cc.route, method, target),
		out:        out,
		rule:       retryRule{maxAttempts: cmp.Or(cc.maxAttempts, c.maxAttempts), maxWait: c.maxWait, backoffBase: c.backoffBase},
		signerGen:  c.signer.generation(),
		obs:        obs,
	})
	defer run.release()
	policy := &run.policy
	resp, err := run.client.Do(req)
	if resp != nil {
		resp.Body.Close() // read by the policy already
	}
	err = c.result(ctx, policy, req, resp, err)
	correlationID := req.Header.Get("X-Correlation-Id")
	obs.endCall(ctx, err, resp, policy.attempt, correlationID)
	cc.record(resp, policy.attempt, correlationID, c.limiter)
	return err
}

// result turns how the retry loop ended into the call's error: nil, a
// typed error from the worker's answer, a *ResponseError for an answer that
// could not be used, or the transport's failure; wrapped in an
// *OutcomeUnknownError when the call must not be repeated and the worker
// may have acted on it.
func (c *core) result(ctx context.Context, p *retryPolicy, req *retryablehttp.Request, resp *http.Response, err error) error {
	correlationID := req.Header.Get("X-Correlation-Id")
	if resp != nil {
		correlationID = cmp.Or(resp.Header.Get("X-Correlation-Id"), correlationID)
	}
	var answerErr error
	switch {
	case err != nil || resp == nil:
		answerErr = c.transportError(ctx, p, resp, err, correlationID)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		answerErr = c.errorFromResponse(resp, p, correlationID)
	case p.answerErr != nil:
		answerErr = c.unusableAnswer(p, resp, correlationID)
	default:
		return nil
	}
	return p.outcome(answerErr, correlationID)
}

// unusableAnswer is the error of a 2xx the call could not use: the worker's
// own refusal when its wire type found one (success:false), named after the
// call; otherwise a *ResponseError.
func (c *core) unusableAnswer(p *retryPolicy, resp *http.Response, correlationID string) error {
	var refusal *APIError
	if errors.As(p.answerErr, &refusal) {
		refusal.StatusCode, refusal.Method, refusal.Path = resp.StatusCode, p.method, p.path
		refusal.CorrelationID = cmp.Or(refusal.CorrelationID, correlationID)
		return refusal
	}
	err := p.answerErr
	if !p.refused && errors.Is(err, ErrBuildNotQueued) {
		// No build id in an answer that is not the worker's word (null, an
		// array, a string): ErrBuildNotQueued would say no build started.
		err = errNotABuildAnswer
	}
	return &ResponseError{
		StatusCode: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"),
		CorrelationID: correlationID, Method: p.method, Path: p.path, Err: err,
	}
}

// errNotABuildAnswer is a build call's 2xx that is not the worker's answer.
var errNotABuildAnswer = errors.New("the answer is not a JSON object saying success:true")

// isIdempotent reports the methods HTTP defines as idempotent.
func isIdempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions:
		return true
	}
	return false
}

// outcome wraps the final error of a call that is not safe to repeat, and
// whose last attempt the worker may have acted on, in an
// *OutcomeUnknownError.
func (p *retryPolicy) outcome(err error, correlationID string) error {
	if p.idempotent || !p.ambiguous || err == nil {
		return err
	}
	return &OutcomeUnknownError{Method: p.method, Path: p.path, CorrelationID: correlationID, Attempts: p.attempt, Err: err}
}

// targetURL is the URL of target (an escaped path and query, checked by
// checkTarget) below the base URL: the URL url.Parse would make of their
// concatenation, built from the base parsed once instead.
func (c *core) targetURL(target string) (url.URL, error) {
	path, query, hasQuery := strings.Cut(target, "?")
	escaped := c.basePath + path
	unescaped := escaped
	if strings.IndexByte(escaped, '%') >= 0 { // most paths have no escape to undo
		var err error
		if unescaped, err = url.PathUnescape(escaped); err != nil {
			return url.URL{}, &ValidationError{Field: "path", Reason: wire.RedactedError(err)}
		}
	}
	u := url.URL{Scheme: c.baseURL.Scheme, Host: c.host, Path: unescaped, RawQuery: query, ForceQuery: hasQuery && query == ""}
	if unescaped != escaped {
		u.RawPath = escaped // URL.EscapedPath keeps it when it is a valid escaping of Path
	}
	return u, nil
}

// newRequest builds the retryable request for u with the headers every
// attempt shares (the signature headers are the transport's).
func (c *core) newRequest(ctx context.Context, method string, u url.URL, body []byte, cc callConfig) (*retryablehttp.Request, error) {
	// An empty URL parses at no cost; the request then takes u.
	hreq, err := http.NewRequestWithContext(ctx, method, "", nil)
	if err != nil {
		return nil, &ValidationError{Field: "method", Reason: wire.RedactedError(err)}
	}
	*hreq.URL, hreq.Host = u, u.Host
	req, err := retryablehttp.FromRequest(hreq)
	if err == nil && body != nil {
		err = req.SetBody(retryablehttp.ReaderFunc(func() (io.Reader, error) { return newRequestBody(body), nil }))
	}
	if err != nil {
		return nil, &ValidationError{Field: "request body", Reason: wire.RedactedError(err)}
	}
	for k, vs := range cc.header { // checked by checkHeaders
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	h := req.Header
	h["Accept"] = acceptJSON
	h["User-Agent"] = c.userAgentHeader
	if body != nil {
		h["Content-Type"] = contentTypeJSON
	}
	id := cc.correlationID
	if id == "" {
		id = newCorrelationID()
	}
	h["X-Correlation-Id"] = []string{id} // canonical already
	if cc.idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", cc.idempotencyKey)
	}
	return req, nil
}

// Header values every call sends, shared so that setting them allocates
// nothing; nothing writes into them.
var (
	acceptJSON      = []string{"application/json"}
	contentTypeJSON = []string{"application/json"}
)

// newCorrelationID returns a random UUIDv4 in its canonical text form, the
// X-Correlation-Id the worker echoes. The id names a call in logs and
// guards nothing, so it comes from math/rand/v2's generator (ChaCha8,
// seeded by the runtime from the system's entropy): 122 random bits, as
// unlikely to collide as crypto/rand's, without its cost on every call.
func newCorrelationID() string {
	var u uuid.UUID
	binary.LittleEndian.PutUint64(u[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(u[8:], rand.Uint64())
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return u.String()
}

// checkOut refuses an out that cannot receive an answer: anything but nil
// (discard the answer) or a non-nil pointer.
func checkOut(out any) error {
	if out == nil {
		return nil
	}
	if v := reflect.ValueOf(out); v.Kind() != reflect.Pointer || v.IsNil() {
		return &ValidationError{Field: "out", Reason: fmt.Sprintf("must be a non-nil pointer, or nil to discard the answer; got %T", out)}
	}
	return nil
}

// checkHeaders refuses the call's own headers that net/http would refuse
// only once the call is under way, or that are not the caller's to set:
// names that are not HTTP tokens, values with control characters (CR and
// LF above all), x-sheen-* headers (the signer's). The values are not
// quoted in the error: they may be secret.
func checkHeaders(cc *callConfig) error {
	bad := func(name, reason string) error { return &ValidationError{Field: "header " + name, Reason: reason} }
	const badValue = "has a control character (such as CR or LF), which no header value may hold"
	for k, vs := range cc.header {
		switch {
		case !validHeaderName(k):
			return bad(k, "is not a valid header name")
		case strings.HasPrefix(strings.ToLower(k), "x-sheen-"):
			return bad(k, "x-sheen-* headers are set by the signer")
		}
		// Headers the SDK sets itself would be overwritten: say so, and
		// where the one to use is.
		switch textproto.CanonicalMIMEHeaderKey(k) {
		case "X-Correlation-Id":
			return bad(k, "is set by the SDK: use WithCorrelationID")
		case "User-Agent":
			return bad(k, "is set by the SDK: use WithUserAgent")
		case "Accept", "Content-Type":
			return bad(k, "is set by the SDK: the worker speaks JSON")
		}
		for _, v := range vs {
			if !validHeaderValue(v) {
				return bad(k, badValue)
			}
		}
	}
	if !validHeaderValue(cc.correlationID) {
		return bad("X-Correlation-Id", badValue)
	}
	if !validHeaderValue(cc.idempotencyKey) {
		return bad("Idempotency-Key", badValue)
	}
	return nil
}

// validHeaderValue reports a header field value net/http sends (RFC 9110
// field-value, as golang.org/x/net/http/httpguts.ValidHeaderFieldValue
// checks it): no control character but tab.
func validHeaderValue(v string) bool {
	for i := range len(v) {
		if b := v[i]; b < ' ' && b != '\t' || b == 0x7f {
			return false
		}
	}
	return true
}

// validHeaderName reports a header field name net/http sends (an RFC 9110
// token, as httpguts.ValidHeaderFieldName checks it).
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := range len(k) {
		b := k[i]
		if ('a' <= b && b <= 'z') || ('A' <= b && b <= 'Z') || ('0' <= b && b <= '9') {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(b)) {
			return false
		}
	}
	return true
}

// checkTarget refuses request targets that are not a plain absolute path:
// dot segments (also percent-encoded), fragments, control characters.
func checkTarget(target string) error {
	bad := func(reason string) error { return &ValidationError{Field: "path", Reason: reason} }
	if !strings.HasPrefix(target, "/") || strings.HasPrefix(target, "//") {
		return bad("must start with a single /")
	}
	for i := range len(target) { // bytes: no byte of a multi-byte rune is below 0x80
		if b := target[i]; b <= 0x20 || b == 0x7f || b == '#' || b == '\\' {
			return bad("contains a fragment, a backslash, a space or a control character")
		}
	}
	path, _, _ := strings.Cut(target, "?")
	if !strings.ContainsAny(path, ".%") {
		return nil // no dot segment, plain or escaped, and no escape to check
	}
	for seg := range strings.SplitSeq(path, "/") {
		if s, err := url.PathUnescape(seg); err != nil {
			return bad("has an invalid percent escape")
		} else if s == "." || s == ".." {
			return bad("has a dot segment")
		}
	}
	return nil
}

// encodeBody turns in into the exact bytes to send and sign.
func encodeBody(method string, in any) ([]byte, error) {
	noBody := method == http.MethodGet || method == http.MethodHead || method == http.MethodDelete
	var body []byte
	switch v := in.(type) {
	case nil:
		return nil, nil
	case []byte:
		body = restringified(v)
	case json.RawMessage:
		body = restringified(v)
	default:
		if noBody {
			break
		}
		b, err := jsonx.Marshal(v)
		if err != nil {
			return nil, &ValidationError{Field: "request body", Reason: "cannot be encoded as JSON: " + err.Error()}
		}
		body = b
	}
	if noBody {
		return nil, &ValidationError{Field: "request body", Reason: method + " requests carry no body (the worker signs them with an empty one)"}
	}
	if len(body) > MaxRequestBody {
		return nil, &ValidationError{Field: "request body", Reason: fmt.Sprintf("is %d bytes; the worker refuses bodies over %d", len(body), MaxRequestBody), Err: ErrPayloadTooLarge}
	}
	return body, nil
}

// restringified is a raw JSON body in the form the worker's
// JSON.stringify(JSON.parse(body)) gives back, so the routes that re-serialise
// the body and compare accept it; the same bytes when they already are, and
// bytes that are not JSON untouched.
func restringified(body []byte) []byte {
	if out, err := jsonx.Restringify(body); err == nil {
		return out
	}
	return body
}

// transportError turns a failure without a usable response (none at all,
// or one whose body was cut short) into an error that names the call but
// not its URL.
func (c *core) transportError(ctx context.Context, p *retryPolicy, resp *http.Response, err error, correlationID string) error {
	var abort *clientAbort
	if errors.As(err, &abort) {
		return abort.err
	}
	var cut *bodyReadError
	if resp != nil && errors.As(err, &cut) && ctx.Err() == nil {
		return &ResponseError{
			StatusCode: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"),
			CorrelationID: correlationID, Method: p.method, Path: p.path, Err: cut,
		}
	}
	if ctxErr := ctx.Err(); ctxErr != nil && (errors.Is(err, ctxErr) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return fmt.Errorf("sheen: %s %s: %w", p.method, p.path, ctxErr)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("sheen: %s %s: after %d attempt(s): %w", p.method, p.path, max(p.attempt, 1), err)
}

// errorFromResponse reads an error response into the typed error it means.
func (c *core) errorFromResponse(resp *http.Response, p *retryPolicy, correlationID string) error {
	body := p.errBody
	e := newAPIError(resp.StatusCode, resp.Header, body, c.clock.Now())
	e.Method, e.Path = p.method, p.path
	if e.CorrelationID == "" {
		e.CorrelationID = correlationID
	}
	if c.signer.current() == SigningBodyPath && deployedRefusal(resp.StatusCode, body) {
		e.Message += "; this worker wants the deployed worker's timestamped signatures: use sheen.WithSigning(sheen.SigningDual) or set " + EnvSigning + "=dual"
	}
	return c.typedError(e, body)
}

// isJSONType reports a JSON media type (application/json, +json suffixes).
func isJSONType(contentType string) bool {
	return strings.Contains(mediaType(contentType, ""), "json")
}

// mediaType is contentType's media type, or def when there is none.
func mediaType(contentType, def string) string {
	mt, _, _ := mime.ParseMediaType(contentType)
	return cmp.Or(mt, def)
}

// typedError wraps the APIError of a response in the typed error that fits
// its status and code: the core's last step of decoding an answer.
func (c *core) typedError(e *APIError, body []byte) error {
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
		return c.newRateLimitError(e)
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

// newRateLimitError is a RateLimitError with the limiter's view snap.
func newRateLimitError(e *APIError, snap LimiterSnapshot) *RateLimitError {
	return &RateLimitError{APIError: e, Limit: snap.AdvertisedLimit, Remaining: snap.Remaining, Reset: snap.Reset}
}

// newRateLimitError fills a 429's RateLimitError from its headers, or from
// the limiter's view when the answer had none.
func (c *core) newRateLimitError(e *APIError) *RateLimitError {
	r := newRateLimitError(e, c.limiter.snapshot())
	if e.Header != nil {
		if info, ok := parseRateHeaders(e.Header, c.clock.Now()); ok {
			r.Limit, r.Remaining, r.Reset = info.limit, info.remaining, info.reset
		}
	}
	return r
}
