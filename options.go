package sheen

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// The worker's limits the SDK checks before sending, and the SDK's version.
const (
	// Version is the SDK's version, sent in the User-Agent.
	Version = "0.1.0"

	// MaxRequestBody is the largest request body the worker accepts (1 MiB);
	// larger bodies are refused before they are sent.
	MaxRequestBody = 1 << 20

	// MaxIDLength is the longest ID the worker's router matches, counted as it
	// appears in the path (escaped): longer ones are answered 404 before any
	// other check, so the SDK refuses them before sending.
	MaxIDLength = 100

	// MinSecretLength is the shortest shared secret the worker accepts.
	MinSecretLength = 32

	// MaxGenerateOutput is the deployed worker's cap on a generation's output
	// (10 MiB): past it the worker stops the model and answers success:false
	// with "Output buffer exceeded", which Generate returns as a
	// *GenerateError matching ErrPayloadTooLarge.
	MaxGenerateOutput = 10 << 20
)

// Defaults, in one place: what a client does when no option says otherwise.
const (
	// DefaultBaseURL is the worker the SDK talks to when no base URL is given.
	DefaultBaseURL = "https://worker.sheenapps.com"

	// DefaultRatePerMinute is v2.1's limit: 60 requests per minute.
	DefaultRatePerMinute = 60

	// DefaultMaxAttempts is how many times a call is tried in all.
	DefaultMaxAttempts = 4

	// DefaultMaxWait caps any single wait between attempts (the seed's 5 minutes).
	DefaultMaxWait = 5 * time.Minute

	// DefaultAttemptTimeout bounds one attempt of a call to the worker, from
	// sending the request to the end of its answer (RetryConfig.AttemptTimeout).
	DefaultAttemptTimeout = 30 * time.Second

	// DefaultBalanceCacheTTL is how long a user's balance is reused (v2.1).
	DefaultBalanceCacheTTL = 5 * time.Minute

	// DefaultLinkMargin is how long before its expiry a cached download link
	// stops being handed out (v2.1's rule); see CacheConfig.LinkMargin.
	DefaultLinkMargin = time.Hour

	// DefaultLinkCacheSize is how many download links a client keeps at most;
	// see CacheConfig.MaxLinks.
	DefaultLinkCacheSize = 1000

	// DefaultMetadataWait is how long, by default, Follow and Wait keep
	// following the metadata phase after the deploy completed.
	DefaultMetadataWait = 30 * time.Second

	// DefaultMetadataStartWait is how long, by default, Follow and Wait wait
	// after the deploy completed for the metadata phase to show up at all,
	// before deciding the build has none.
	DefaultMetadataStartWait = 5 * time.Second

	// DefaultDownloadRetries is how many failed attempts in a row without
	// progress a download survives before it gives up (see
	// DownloadOptions.Retries).
	DefaultDownloadRetries = 5

	// DefaultStallTimeout is how long a download waits for the next byte
	// before it treats the connection as broken.
	DefaultStallTimeout = time.Minute

	// DefaultDownloadBackoffBase is the wait before resuming after an
	// attempt that made progress, and the first step of the backoff after
	// attempts that brought none.
	DefaultDownloadBackoffBase = 500 * time.Millisecond

	// DefaultDownloadBackoffMax caps the wait between two attempts of a
	// download (a Retry-After from the object store is bounded by
	// RetryConfig.MaxWait instead).
	DefaultDownloadBackoffMax = 30 * time.Second

	// DefaultGenerateStallTimeout is how long Generate waits for the next byte
	// of the worker's answer before it gives up on the attempt
	// (GenerateConfig.StallTimeout). The deployed worker sends one heartbeat space
	// at once and then nothing until the model is done, which takes minutes: a
	// shorter default would cut paid runs that are still going.
	DefaultGenerateStallTimeout = 10 * time.Minute

	// DefaultSkew is the clock skew the deployed worker accepts on timestamped
	// signatures.
	DefaultSkew = 120 * time.Second

	// DefaultNonceTTL is how long the deployed worker remembers a nonce.
	DefaultNonceTTL = 600 * time.Second
)

// Environment variables read by NewWorkerClientFromEnv.
const (
	EnvBaseURL  = "WORKER_BASE_URL"
	EnvSecret   = "WORKER_SHARED_SECRET"
	EnvSecretV2 = "WORKER_SHARED_SECRET_V2"
	EnvSigning  = "WORKER_SIGNING"

	// Read for AI.Generate; when unset, Generate uses the worker's base URL
	// and shared secret.
	// EnvGenerateURL is the generation endpoint: a base URL (/generate is
	// added) or the endpoint itself (a URL whose path ends in /generate).
	EnvGenerateURL = "CLAUDE_WORKER_URL"
	// EnvGenerateSecret is the generation endpoint's secret (at least 32
	// characters; it may equal the main one).
	EnvGenerateSecret = "CLAUDE_SHARED_SECRET"
)

// Option configures a WorkerClient.
type Option func(*config) error

type config struct {
	baseURL        string
	secret         string
	secretV2       string
	signing        Signing
	signingSet     bool // WithSigning or WORKER_SIGNING chose the scheme
	httpClient     *http.Client
	logger         *slog.Logger
	perMinute      int
	maxAttempts    int
	maxWait        time.Duration
	backoffBase    time.Duration
	attemptTimeout time.Duration
	allowInsecure  bool
	clock          Clock
	userAgent      string
	sharedLimiter  SharedLimiter // WithSharedLimiter (shared.go)

	// Per-service settings, declared in each service's file.
	billing billingConfig
	builds  buildsConfig
	exports exportsConfig
	ai      aiConfig

	telemetry telemetryConfig // telemetry.go

	// names say where each setting came from, for error messages.
	secretFrom, secretV2From, baseURLFrom string
}

func defaultConfig() config {
	return config{
		baseURL:        DefaultBaseURL,
		signing:        SigningBodyPath,
		perMinute:      DefaultRatePerMinute,
		maxAttempts:    DefaultMaxAttempts,
		maxWait:        DefaultMaxWait,
		backoffBase:    defaultBackoffBase,
		attemptTimeout: DefaultAttemptTimeout,
		clock:          systemClock{},
		logger:         slog.New(slog.DiscardHandler),
		secretFrom:     "WithSecret",
		secretV2From:   "WithSecretV2",
		baseURLFrom:    "WithBaseURL",
		userAgent:      "sheen-go/" + Version,
	}
}

// WithBaseURL sets the worker's base URL, for example
// "https://worker.sheenapps.com". A path prefix is kept. Plain http:// is
// refused unless the host is loopback or WithInsecureHTTP is given.
func WithBaseURL(baseURL string) Option {
	return func(c *config) error { c.baseURL, c.baseURLFrom = baseURL, "WithBaseURL"; return nil }
}

// WithSecret sets the shared secret (at least 32 characters, used as-is).
func WithSecret(secret string) Option {
	return func(c *config) error { c.secret, c.secretFrom = secret, "WithSecret"; return nil }
}

// WithSecretV2 sets a separate secret for x-sheen-sig-v2 signatures
// (SigningDual), for workers configured with HMAC_SECRET_V2.
func WithSecretV2(secret string) Option {
	return func(c *config) error { c.secretV2, c.secretV2From = secret, "WithSecretV2"; return nil }
}

// WithSigning selects the signing scheme; SigningDual is what the deployed
// worker wants. Without it (or WORKER_SIGNING) the client starts with
// SigningBodyPath (v2.1) and switches to SigningDual, once and for good, the
// first time the worker refuses a request in a way only the deployed worker
// does; with it, the scheme never changes and such a refusal is an
// *AuthError that says which scheme to choose.
func WithSigning(s Signing) Option {
	return func(c *config) error {
		if !s.valid() {
			return fmt.Errorf("sheen: WithSigning: unknown scheme %v", s)
		}
		c.signing, c.signingSet = s, true
		return nil
	}
}

// WithHTTPClient sets the HTTP client whose transport and timeout carry the
// requests. The SDK wraps its transport with signing and rate limiting and
// never follows redirects (a redirect would carry signatures elsewhere).
// The transport is looked up on every request, so one swapped in later (as
// httpmock.ActivateNonDefault does) is used from then on.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) error {
		if hc == nil {
			return errors.New("sheen: WithHTTPClient: client is nil")
		}
		c.httpClient = hc
		return nil
	}
}

// WithLogger sets the structured logger. The SDK logs one debug record per
// attempt (method, path without query, status, attempt, wait) and never logs
// secrets, signatures or signed URLs. The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("sheen: WithLogger: logger is nil")
		}
		c.logger = l
		return nil
	}
}

// WithRateLimit sets the client's own pace in requests per minute (default
// 60, v2.1's limit). The worker's rate-limit headers can only lower it.
func WithRateLimit(perMinute int) Option {
	return func(c *config) error {
		if perMinute <= 0 {
			return fmt.Errorf("sheen: WithRateLimit: %d requests per minute; it must be positive", perMinute)
		}
		c.perMinute = perMinute
		return nil
	}
}

// RetryConfig says how calls to the worker are tried; give it with
// WithRetry. A zero field keeps its current value (the default, or an
// earlier WithRetry's); a negative one is an error, except AttemptTimeout's,
// which means none.
type RetryConfig struct {
	// MaxAttempts is how many times a call is tried in all (default
	// DefaultMaxAttempts; 1 turns retries off; at most 100).
	MaxAttempts int
	// MaxWait caps any single wait between attempts or for rate-limit
	// quota (default DefaultMaxWait).
	MaxWait time.Duration
	// BackoffBase is the first step of the exponential backoff used when
	// the worker gives no Retry-After (default 1s); step n waits about 2^n
	// times it, with jitter, capped by MaxWait.
	BackoffBase time.Duration
	// AttemptTimeout bounds each attempt, from sending the request to the
	// end of its answer (default DefaultAttemptTimeout). An attempt that
	// runs out is a failed attempt like a dropped connection: retried when
	// the call is safe to retry, otherwise reported as ErrOutcomeUnknown.
	// The call as a whole is bounded by its context and the other fields;
	// downloads have their own stall timeout (DownloadOptions). When the
	// context's deadline comes first, it bounds the attempt instead, and
	// its end is reported as the context's own error.
	//
	// A negative AttemptTimeout means none: each attempt is bounded by the
	// call's context alone, which saves a timer and a context per attempt.
	// Use it only when every call's context has a deadline (a server
	// handler's usually does): a call under a context without one then
	// waits as long as a silent worker does.
	AttemptTimeout time.Duration
}

// WithRetry sets how calls to the worker are retried and timed; see
// RetryConfig. Downloads from the object store have their own settings
// (DownloadOptions, WithDownloadBackoff).
func WithRetry(cfg RetryConfig) Option {
	return func(c *config) error {
		switch {
		case cfg.MaxAttempts < 0 || cfg.MaxAttempts > 100:
			return fmt.Errorf("sheen: WithRetry: MaxAttempts %d; it must be between 1 and 100", cfg.MaxAttempts)
		case cfg.MaxWait < 0, cfg.BackoffBase < 0:
			return fmt.Errorf("sheen: WithRetry: MaxWait %s, BackoffBase %s; neither may be negative",
				cfg.MaxWait, cfg.BackoffBase)
		}
		maxWait := cmp.Or(cfg.MaxWait, c.maxWait)
		if cfg.BackoffBase > maxWait {
			return fmt.Errorf("sheen: WithRetry: BackoffBase %s is over MaxWait %s", cfg.BackoffBase, maxWait)
		}
		c.maxAttempts = cmp.Or(cfg.MaxAttempts, c.maxAttempts)
		c.maxWait = maxWait
		c.backoffBase = min(cmp.Or(cfg.BackoffBase, c.backoffBase), maxWait)
		c.attemptTimeout = cmp.Or(cfg.AttemptTimeout, c.attemptTimeout)
		return nil
	}
}

// WithInsecureHTTP allows a plain http:// base URL on a host that is not
// loopback. Signatures protect integrity, not secrecy: use it only inside a
// trusted network.
func WithInsecureHTTP() Option {
	return func(c *config) error { c.allowInsecure, c.exports.insecureHTTP = true, true; return nil }
}

// WithClock sets the clock used by the rate limiter, the caches and the
// signatures' timestamps. Tests use it to avoid sleeping.
func WithClock(clock Clock) Option {
	return func(c *config) error {
		if clock == nil {
			return errors.New("sheen: WithClock: clock is nil")
		}
		c.clock = clock
		return nil
	}
}

// WithUserAgent sets the User-Agent header sent to the worker. A value that
// is not a valid header value (empty, or with control characters) is refused.
func WithUserAgent(ua string) Option {
	return func(c *config) error {
		if strings.TrimSpace(ua) == "" || strings.ContainsFunc(ua, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
			return errors.New("sheen: WithUserAgent: not a valid header value")
		}
		c.userAgent = ua
		return nil
	}
}

// fromEnv turns the environment into options that explicit options, applied
// after them, override.
func fromEnv() []Option {
	var opts []Option
	if v, ok := os.LookupEnv(EnvBaseURL); ok && v != "" {
		opts = append(opts, func(c *config) error { c.baseURL, c.baseURLFrom = v, EnvBaseURL; return nil })
	}
	if v, ok := os.LookupEnv(EnvSecret); ok {
		opts = append(opts, func(c *config) error { c.secret, c.secretFrom = v, EnvSecret; return nil })
	}
	if v, ok := os.LookupEnv(EnvSecretV2); ok && v != "" {
		opts = append(opts, func(c *config) error { c.secretV2, c.secretV2From = v, EnvSecretV2; return nil })
	}
	opts = append(opts, aiFromEnv()...)
	if v, ok := os.LookupEnv(EnvSigning); ok && v != "" {
		opts = append(opts, func(c *config) error {
			var s Signing
			if err := s.UnmarshalText([]byte(v)); err != nil {
				return fmt.Errorf("sheen: %s: %w", EnvSigning, err)
			}
			c.signing, c.signingSet = s, true
			return nil
		})
	}
	return opts
}

// validate checks the finished configuration. Errors name the setting and
// what is wrong, never its value when it is a secret.
func (c *config) validate() (*url.URL, error) {
	if c.secret == "" {
		return nil, fmt.Errorf("sheen: %s is not set: the shared secret is required", c.secretFrom)
	}
	if n := len(c.secret); n < MinSecretLength {
		return nil, fmt.Errorf("sheen: %s is %d characters; it must be at least %d", c.secretFrom, n, MinSecretLength)
	}
	if c.secretV2 != "" && len(c.secretV2) < MinSecretLength {
		return nil, fmt.Errorf("sheen: %s is %d characters; it must be at least %d", c.secretV2From, len(c.secretV2), MinSecretLength)
	}
	u, err := url.Parse(strings.TrimSuffix(c.baseURL, "/"))
	if err != nil || u.Host == "" || u.Opaque != "" {
		// The value is not quoted: it may hold a password.
		return nil, fmt.Errorf("sheen: %s is not an absolute URL (want https://host or https://host/prefix)", c.baseURLFrom)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("sheen: %s must not carry credentials, a query or a fragment", c.baseURLFrom)
	}
	if u.RawPath != "" || strings.Contains(u.Path, "%") || strings.Contains(u.Path, "/./") || strings.Contains(u.Path, "/../") ||
		strings.HasSuffix(u.Path, "/.") || strings.HasSuffix(u.Path, "/..") {
		// An escaped '/' or '%' in the prefix would be signed one way and
		// routed another; dot segments would be resolved away. Other
		// escapes (%20) are plain characters and stay.
		return nil, fmt.Errorf("sheen: %s's path must not hold an escaped '/' or '%%' or a dot segment", c.baseURLFrom)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !c.allowInsecure && !isLoopback(u.Hostname()) {
			return nil, fmt.Errorf("sheen: %s uses plain http:// on %s, which is not loopback; use https:// (or WithInsecureHTTP inside a trusted network)", c.baseURLFrom, u.Hostname())
		}
	default:
		return nil, fmt.Errorf("sheen: %s has scheme %q; want https:// (or http:// on loopback)", c.baseURLFrom, u.Scheme)
	}
	return u, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CallOption changes one call made with WorkerClient.Do.
type CallOption func(*callConfig)

type callConfig struct {
	// safe marks a call that only reads (a POST that asks a question), so
	// it may be retried after ambiguous failures like a GET.
	safe           bool
	timeout        time.Duration
	maxAttempts    int
	timeoutSet     bool
	attemptsSet    bool
	response       *Response
	idempotencyKey string
	correlationID  string
	header         http.Header
	// route and userID describe a service call to telemetry (send sets
	// them; WorkerClient.Do leaves them empty).
	route, userID string
}

// newCallConfig applies opts, refusing nil ones.
func newCallConfig(opts []CallOption) (callConfig, error) {
	if len(opts) == 0 {
		return callConfig{}, nil
	}
	return applyCallOptions(opts)
}

// applyCallOptions is newCallConfig's work when there are options; apart,
// so that a call without options does not move its config to the heap.
func applyCallOptions(opts []CallOption) (callConfig, error) {
	var cc callConfig
	for i, o := range opts {
		if o == nil {
			return cc, &ValidationError{Field: "call option", Reason: fmt.Sprintf("option %d is nil", i+1)}
		}
		o(&cc)
	}
	switch {
	case cc.timeoutSet && cc.timeout <= 0:
		return cc, &ValidationError{Field: "WithCallTimeout", Reason: "must be positive"}
	case cc.attemptsSet && (cc.maxAttempts < 1 || cc.maxAttempts > 100):
		return cc, &ValidationError{Field: "WithCallAttempts", Reason: "must be between 1 and 100"}
	}
	return cc, nil
}

// WithResponse has the call fill *r with the worker's last answer: status,
// headers, correlation id, attempts and the rate limiter's view after it.
// For an answer served from the client's cache, r.Cached is true and the
// rest describes no request. r is filled whether the call succeeds or not.
func WithResponse(r *Response) CallOption {
	return func(c *callConfig) { c.response = r }
}

// WithCallTimeout bounds the whole call, every attempt and wait included,
// like a context deadline would. It must be positive.
func WithCallTimeout(d time.Duration) CallOption {
	return func(c *callConfig) { c.timeout, c.timeoutSet = d, true }
}

// WithCallAttempts sets how many times this call may be tried in all,
// overriding RetryConfig.MaxAttempts for it (1 turns retries off). The retry rule
// still decides which failures are retried.
func WithCallAttempts(n int) CallOption {
	return func(c *callConfig) { c.maxAttempts, c.attemptsSet = n, true }
}

// Response is what a call learnt from the worker's last answer, for
// callers that want more than the decoded value (see WithResponse).
type Response struct {
	// StatusCode and Header are the last answer's; zero when none came.
	StatusCode int
	Header     http.Header
	// CorrelationID is the X-Correlation-Id of the call (the worker's echo,
	// or the one the SDK sent).
	CorrelationID string
	// Attempts is how many attempts the call made, counting those that
	// never reached the worker (a refused connection, a DNS failure, the
	// client's own rate limiter refusing to wait).
	Attempts int
	// RateLimit is the client's rate limiter after the answer.
	RateLimit LimiterSnapshot
	// Cached reports an answer from the client's cache: no request was made.
	Cached bool
}

// record fills the caller's Response, if it asked for one, with the
// limiter's state read then (only then: a snapshot takes its lock).
func (c *callConfig) record(resp *http.Response, attempts int, correlationID string, lim *adaptiveLimiter) {
	if c.response == nil {
		return
	}
	r := Response{Attempts: attempts, CorrelationID: correlationID, RateLimit: lim.snapshot()}
	if resp != nil {
		r.StatusCode, r.Header = resp.StatusCode, resp.Header
		r.CorrelationID = cmp.Or(resp.Header.Get("X-Correlation-Id"), correlationID)
	}
	*c.response = r
}

// recordCached fills the caller's Response, if it asked for one, for an
// answer served from the client's cache: no request was made.
func (c *callConfig) recordCached() {
	if c.response != nil {
		*c.response = Response{Cached: true}
	}
}

// WithIdempotencyKey sends an Idempotency-Key header. Every attempt of the
// call carries the same key, and the call becomes safe to retry after
// ambiguous failures, except where the worker is known to ignore the key:
// it replays answers by key only for rollback, so CreatePreview,
// UpdateProject and Rebuild (and Do to their paths) are still never sent
// twice after a failure the worker may have acted on; such a failure is
// reported as ErrOutcomeUnknown, key or not.
func WithIdempotencyKey(key string) CallOption {
	return func(c *callConfig) { c.idempotencyKey = key }
}

// WithCorrelationID sends the given X-Correlation-Id instead of a fresh
// UUIDv4.
func WithCorrelationID(id string) CallOption {
	return func(c *callConfig) { c.correlationID = id }
}

// WithHeader adds a header to the call. Headers the SDK sets are refused
// with a *ValidationError before anything is sent: x-sheen-* (the signer
// owns them), X-Correlation-Id (use WithCorrelationID), User-Agent (use
// WithUserAgent), Accept and Content-Type (JSON). So are names that are not
// HTTP tokens and values with a control character.
func WithHeader(key, value string) CallOption {
	return func(c *callConfig) {
		if c.header == nil {
			c.header = make(http.Header)
		}
		c.header.Add(key, value)
	}
}
