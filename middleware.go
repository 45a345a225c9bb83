package sheen

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sheenapps/sheen-go/internal/jsonx"
)

// VerifyConfig configures VerifyMiddleware and VerifyHTTPRequest, for Go
// services that receive requests signed with the worker's schemes (v2.1
// webhooks, or calls from another service holding the shared secret).
//
// SigningBodyPath (v2.1) carries no timestamp or nonce, so a captured request
// passes again whenever it is replayed; SigningDual (which by default
// requires the v2 signature, over method, path, timestamp, nonce and body)
// is the scheme that refuses replays.
//
// Make one and share it by pointer: it holds the nonce store, and is safe for
// concurrent use once in use. Do not change it after its first use.
type VerifyConfig struct {
	// Secret is the shared secret (at least MinSecretLength characters,
	// used as-is).
	Secret string
	// SecretV2, when set, is the secret of x-sheen-sig-v2 signatures.
	SecretV2 string
	// Scheme is what senders must sign with. For SigningDual a request
	// needs a valid x-sheen-sig-v2 (the deployed worker's behaviour after
	// its rollout window), unless AcceptV1 is set.
	Scheme Signing
	// AcceptV1, with SigningDual, also lets through a request whose only
	// valid signature is the v1 one, as the deployed worker does during its
	// rollout window. Set it only for senders that cannot sign v2: the v1
	// signature covers neither the path nor the nonce, so such a request
	// can be sent to another path, or replayed with a new nonce, inside the
	// skew window.
	AcceptV1 bool
	// Skew is the accepted distance between a request's timestamp and now
	// for the timestamped schemes; zero means DefaultSkew (120 s).
	Skew time.Duration
	// Nonces remembers the nonces of timestamped requests, to refuse
	// replays; nil means an in-memory store that keeps each nonce for
	// DefaultNonceTTL and at most 100,000 of them (under a larger flood the
	// oldest are forgotten first). Share a store (Redis, a table) between
	// instances of a service behind a load balancer.
	Nonces NonceStore
	// MaxBody caps the request body in bytes; zero means MaxRequestBody
	// (1 MiB). Larger bodies answer 413 FST_ERR_CTP_BODY_TOO_LARGE.
	MaxBody int64
	// Now tells the time; nil means time.Now.
	Now func() time.Time

	once     sync.Once
	verifier *Verifier
	err      error
}

// setup checks the configuration and makes its Verifier, once.
func (c *VerifyConfig) setup() error {
	c.once.Do(func() {
		switch {
		case len(c.Secret) < MinSecretLength:
			c.err = fmt.Errorf("sheen: VerifyConfig.Secret must be at least %d characters", MinSecretLength)
		case c.SecretV2 != "" && len(c.SecretV2) < MinSecretLength:
			c.err = fmt.Errorf("sheen: VerifyConfig.SecretV2 must be at least %d characters", MinSecretLength)
		case !c.Scheme.valid():
			c.err = fmt.Errorf("sheen: VerifyConfig.Scheme: unknown scheme %v", c.Scheme)
		case c.AcceptV1 && c.Scheme != SigningDual:
			c.err = errors.New("sheen: VerifyConfig.AcceptV1 needs SigningDual")
		case c.MaxBody < 0:
			c.err = errors.New("sheen: VerifyConfig.MaxBody is negative")
		case c.Skew < 0:
			c.err = errors.New("sheen: VerifyConfig.Skew is negative")
		}
		if c.err == nil {
			c.verifier = &Verifier{Secret: c.Secret, SecretV2: c.SecretV2, Scheme: c.Scheme, Skew: c.Skew, Nonces: c.Nonces, Now: c.Now}
		}
	})
	return c.err
}

func (c *VerifyConfig) maxBody() int64 {
	if c.MaxBody > 0 {
		return c.MaxBody
	}
	return MaxRequestBody
}

// VerifyHTTPRequest reads r's body (at most cfg.MaxBody bytes) and checks
// its signature as the deployed worker does: the configured scheme, compared
// in constant time; for the timestamped schemes the skew window and the
// nonce, which is used up even when the signature is wrong. The request
// target checked is the one received (r.RequestURI), so it works behind
// http.StripPrefix.
//
// On success it returns the body and replaces r.Body with the same bytes, so
// handlers read it intact. Failures are an *AuthError (401
// MISSING_SIGNATURE, 403 INVALID_SIGNATURE, 408 TIMESTAMP_OUT_OF_RANGE, 409
// REPLAY_ATTACK_DETECTED), a *PayloadTooLargeError (413) or, for a bad
// configuration or a body that could not be read, a plain error.
func VerifyHTTPRequest(r *http.Request, cfg *VerifyConfig) ([]byte, error) {
	if cfg == nil {
		return nil, errors.New("sheen: VerifyHTTPRequest: config is nil")
	}
	if err := cfg.setup(); err != nil {
		return nil, err
	}
	limit := cfg.maxBody()
	tooLarge := func() error {
		return &PayloadTooLargeError{
			APIError: &APIError{StatusCode: http.StatusRequestEntityTooLarge, Code: CodeBodyTooLarge, Message: "Request body is too large"},
			Limit:    limit,
		}
	}
	if r.ContentLength > limit {
		return nil, tooLarge()
	}
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
		r.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("sheen: reading the request body: %w", err)
		}
		if int64(len(b)) > limit {
			return nil, tooLarge()
		}
		body = b
	}
	target := requestTarget(r)
	if err := cfg.verifier.Verify(r.Method, target, r.Header, body); err != nil {
		return nil, err
	}
	if cfg.Scheme == SigningDual && !cfg.AcceptV1 {
		// Verify has passed, so the verifier's keys are set up.
		sigV2 := r.Header.Get(HeaderSignatureV2)
		nonce := r.Header.Get(HeaderNonce)
		if nonce == "" || !equalHex(sigV2, signV2(cfg.verifier.keyV2, r.Method, target, r.Header.Get(HeaderTimestamp), nonce, signedPayload(r.Method, r.Header.Get("Content-Type"), body))) {
			return nil, authFailure(http.StatusForbidden, CodeInvalidSignature, "signature validation failed")
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return body, nil
}

// VerifyMiddleware returns middleware that lets through only requests whose
// signature VerifyHTTPRequest accepts, with their body intact in r.Body.
// Others are answered the way the deployed worker answers them: 401
// MISSING_SIGNATURE, 403 INVALID_SIGNATURE, 408 TIMESTAMP_OUT_OF_RANGE (with
// serverTime, so senders can correct their clock), 409
// REPLAY_ATTACK_DETECTED, as {"error": message, "code": code}, and 413
// FST_ERR_CTP_BODY_TOO_LARGE in the web framework's shape. It fails only on a
// bad configuration.
func VerifyMiddleware(cfg *VerifyConfig) (func(next http.Handler) http.Handler, error) {
	if cfg == nil {
		return nil, errors.New("sheen: VerifyMiddleware: config is nil")
	}
	if err := cfg.setup(); err != nil {
		return nil, err
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := VerifyHTTPRequest(r, cfg); err != nil {
				writeVerifyError(w, err)
				return
			}
			next.ServeHTTP(w, r)
		})
	}, nil
}

// writeVerifyError answers a refused request with the worker's status and
// JSON body.
func writeVerifyError(w http.ResponseWriter, err error) {
	var (
		ae *AuthError
		pe *PayloadTooLargeError
	)
	switch {
	case errors.As(err, &pe):
		writeProxyError(w, http.StatusRequestEntityTooLarge, CodeBodyTooLarge, pe.Message)
	case errors.As(err, &ae):
		body := map[string]any{"error": ae.Message, "code": ae.Code}
		if !ae.ServerTime.IsZero() {
			body["serverTime"] = ae.ServerTime.Unix()
		}
		b, _ := jsonx.Marshal(body)
		h := w.Header()
		h.Set("Content-Type", "application/json; charset=utf-8")
		h.Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(ae.StatusCode)
		_, _ = w.Write(b)
	default:
		writeProxyError(w, http.StatusBadRequest, proxyCodeBadRequest, "Could not read the request body")
	}
}
