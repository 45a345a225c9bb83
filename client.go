package sheen

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/sheenapps/sheen-go/internal/jsonx"
)

// Version is the SDK's version, sent in the User-Agent.
const Version = "0.1.0"

// MaxRequestBody is the largest request body the worker accepts (1 MiB);
// larger bodies are refused before they are sent.
const MaxRequestBody = 1 << 20

// maxResponseBody caps how much of a successful JSON response is read.
const maxResponseBody = 32 << 20

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

	core   *core
	common service
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
	http        *http.Client
	signer      *signer
	limiter     *adaptiveLimiter
	logger      *slog.Logger
	clock       Clock
	maxAttempts int
	maxWait     time.Duration
	backoffBase time.Duration
	userAgent   string

	// Per-service state (caches and the like), declared in each service's
	// file and set up by its init method.
	billing billingState
	builds  buildsState
	exports exportsState

	// balanceChanged, when set, hears of every user whose balance the
	// client learnt has changed (a 402 for that user, a build started).
	balanceChanged func(userID string)
}

// NewWorkerClient makes a client. WithSecret is required; everything else
// has a default (the production worker, v2.1 signing, 60 requests per minute,
// 4 attempts, waits of at most 5 minutes).
func NewWorkerClient(opts ...Option) (*WorkerClient, error) {
	cfg := defaultConfig()
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	return newClient(cfg)
}

// NewWorkerClientFromEnv makes a client from WORKER_BASE_URL (default
// https://worker.sheenapps.com), WORKER_SHARED_SECRET, WORKER_SHARED_SECRET_V2
// and WORKER_SIGNING (bodypath, timestamp or dual). Options given here win
// over the environment.
func NewWorkerClientFromEnv(opts ...Option) (*WorkerClient, error) {
	return NewWorkerClient(append(fromEnv(), opts...)...)
}

func newClient(cfg config) (*WorkerClient, error) {
	base, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	var inner http.RoundTripper = http.DefaultTransport
	var timeout time.Duration
	if cfg.httpClient != nil {
		if cfg.httpClient.Transport != nil {
			inner = cfg.httpClient.Transport
		}
		timeout = cfg.httpClient.Timeout
	}
	s := &signer{scheme: cfg.signing, key: newMACKey([]byte(cfg.secret)), clock: cfg.clock}
	s.keyV2 = s.key
	if cfg.secretV2 != "" {
		s.keyV2 = newMACKey([]byte(cfg.secretV2))
	}
	lim := newAdaptiveLimiter(cfg.perMinute, cfg.maxWait, cfg.clock)
	c := &core{
		baseURL:  base,
		basePath: strings.TrimSuffix(base.Path, "/"),
		http: &http.Client{
			Transport: &signingTransport{base: inner, signer: s, limiter: lim},
			Timeout:   timeout,
			// A redirect would carry signed headers to another target.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		signer:      s,
		limiter:     lim,
		logger:      cfg.logger,
		clock:       cfg.clock,
		maxAttempts: cfg.maxAttempts,
		maxWait:     cfg.maxWait,
		backoffBase: cfg.backoffBase,
		userAgent:   cfg.userAgent,
	}
	c.billing.init(c, cfg.billing)
	c.builds.init(c, cfg.builds)
	c.exports.init(c, cfg.exports)
	wc := &WorkerClient{core: c}
	wc.common.client = wc
	wc.Billing = (*BillingService)(&wc.common)
	wc.Builds = (*BuildsService)(&wc.common)
	wc.Exports = (*ExportsService)(&wc.common)
	return wc, nil
}

// BaseURL returns the worker's base URL.
func (c *WorkerClient) BaseURL() string { return c.core.baseURL.String() }

// Signing returns the signing scheme in use.
func (c *WorkerClient) Signing() Signing { return c.core.signer.scheme }

// RateLimit returns a snapshot of the client's rate limiter.
func (c *WorkerClient) RateLimit() LimiterSnapshot { return c.core.limiter.snapshot() }

// ClockOffset is how far the worker's clock is ahead of the local one, as
// learnt from a 408 TIMESTAMP_OUT_OF_RANGE; it is added to every signature's
// timestamp.
func (c *WorkerClient) ClockOffset() time.Duration {
	return time.Duration(c.core.signer.offset.Load()) * time.Second
}

// Do sends one request to the worker through the same signing, rate limiting,
// retries and error decoding as the services: the escape hatch for endpoints
// the SDK does not wrap yet.
//
// pathWithQuery is the request target below the base URL, already escaped,
// for example "/v1/billing/usage/u1?period=day"; use url.PathEscape for IDs.
// in is JSON-encoded (compact, no HTML escaping), or sent as-is when it is a
// []byte or json.RawMessage; it must be nil for GET, HEAD and DELETE. out,
// when non-nil, receives the JSON response (a *[]byte receives the raw bytes).
// Failures are typed: *APIError and the errors that wrap it, *ValidationError
// for bad input, *ResponseError for an unusable response.
func (c *WorkerClient) Do(ctx context.Context, method, pathWithQuery string, in, out any, opts ...CallOption) error {
	var cc callConfig
	for _, o := range opts {
		o(&cc)
	}
	return c.core.do(ctx, method, pathWithQuery, in, out, cc)
}

func (c *core) do(ctx context.Context, method, target string, in, out any, cc callConfig) error {
	if ctx == nil {
		return &ValidationError{Field: "context", Reason: "is nil"}
	}
	method = strings.ToUpper(method)
	if err := checkTarget(target); err != nil {
		return err
	}
	body, err := encodeBody(method, in)
	if err != nil {
		return err
	}
	req, err := c.newRequest(ctx, method, target, body, cc)
	if err != nil {
		return err
	}
	path, _, _ := strings.Cut(target, "?")
	policy := &retryPolicy{
		c:          c,
		method:     method,
		path:       c.basePath + path,
		idempotent: method == http.MethodGet || method == http.MethodHead || req.Header.Get("Idempotency-Key") != "",
	}
	req.SetResponseHandler(policy.readBody)
	rc := &retryablehttp.Client{
		HTTPClient:   c.http,
		RetryMax:     c.maxAttempts - 1,
		CheckRetry:   policy.checkRetry,
		Backoff:      policy.backoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	resp, err := rc.Do(req)
	if err != nil {
		return c.transportError(ctx, policy, err)
	}
	defer resp.Body.Close()
	correlationID := resp.Header.Get("X-Correlation-Id")
	if correlationID == "" {
		correlationID = req.Header.Get("X-Correlation-Id")
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		err := c.errorFromResponse(resp, policy, correlationID)
		if resp.StatusCode == http.StatusPaymentRequired {
			c.noteBalanceChanged(cc.userID)
		}
		return err
	}
	return decodeResponse(resp, out, policy, correlationID)
}

// noteBalanceChanged tells the balanceChanged hook that userID's balance is
// no longer what was last seen.
func (c *core) noteBalanceChanged(userID string) {
	if userID != "" && c.balanceChanged != nil {
		c.balanceChanged(userID)
	}
}

// newRequest builds the retryable request with the headers every attempt
// shares (the signature headers are the transport's).
func (c *core) newRequest(ctx context.Context, method, target string, body []byte, cc callConfig) (*retryablehttp.Request, error) {
	var raw any
	if body != nil {
		raw = body
		ctx = withBody(ctx, body)
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, c.baseURL.Scheme+"://"+c.baseURL.Host+c.basePath+target, raw)
	if err != nil {
		return nil, &ValidationError{Field: "path", Reason: redactedError(err)}
	}
	for k, vs := range cc.header {
		if strings.HasPrefix(strings.ToLower(k), "x-sheen-") {
			return nil, &ValidationError{Field: "header " + k, Reason: "x-sheen-* headers are set by the signer"}
		}
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	id := cc.correlationID
	if id == "" {
		id = uuid.NewString()
	}
	req.Header.Set("X-Correlation-Id", id)
	if cc.idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", cc.idempotencyKey)
	}
	return req, nil
}

// checkTarget refuses request targets that are not a plain absolute path:
// dot segments (also percent-encoded), fragments, control characters.
func checkTarget(target string) error {
	bad := func(reason string) error { return &ValidationError{Field: "path", Reason: reason} }
	if !strings.HasPrefix(target, "/") || strings.HasPrefix(target, "//") {
		return bad("must start with a single /")
	}
	if strings.ContainsAny(target, "#\\") || strings.ContainsFunc(target, func(r rune) bool { return r <= 0x20 || r == 0x7f }) {
		return bad("contains a fragment, a backslash, a space or a control character")
	}
	path, _, _ := strings.Cut(target, "?")
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
		body = v
	case json.RawMessage:
		body = v
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

// transportError turns a failure without a usable response into an error
// that names the call but not its URL.
func (c *core) transportError(ctx context.Context, p *retryPolicy, err error) error {
	var abort *clientAbort
	if errors.As(err, &abort) {
		return abort.err
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
	body, _ := p.responseBody(resp)
	e := newAPIError(resp.StatusCode, resp.Header, body)
	e.Method, e.Path = p.method, p.path
	if e.CorrelationID == "" {
		e.CorrelationID = correlationID
	}
	return typedError(e, body, c.limiter.snapshot())
}

// decodeResponse reads a 2xx response into out.
func decodeResponse(resp *http.Response, out any, p *retryPolicy, correlationID string) error {
	fail := func(err error) error {
		return &ResponseError{
			StatusCode: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"),
			CorrelationID: correlationID, Method: p.method, Path: p.path, Err: err,
		}
	}
	if out == nil {
		return nil
	}
	body, err := p.responseBody(resp)
	if err != nil {
		return fail(fmt.Errorf("reading body: %w", err))
	}
	if len(body) > maxResponseBody {
		return fail(fmt.Errorf("body is over %d bytes", maxResponseBody))
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = body
		return nil
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if resp.StatusCode == http.StatusNoContent {
			return nil
		}
		return fail(errors.New("empty body where JSON was expected"))
	}
	if looksHTML(body) {
		mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if !strings.Contains(mt, "json") {
			return fail(errors.New("got a page of " + cmp.Or(mt, "markup") + " where JSON was expected"))
		}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fail(fmt.Errorf("decoding JSON: %w", err))
	}
	return nil
}
