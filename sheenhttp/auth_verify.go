package sheenhttp

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/signing"
)

// Verifier checks signed requests the way the deployed worker does: for Go
// services that receive requests signed with the worker's schemes (v2.1
// webhooks, or calls from another service holding the shared secret), and
// for the fake worker (sheentest).
//
// Each scheme means one thing. SigningBodyPath (v2.1) wants
// x-sheen-signature over body and target; it carries no timestamp or nonce,
// so a captured request passes again whenever it is replayed.
// SigningTimestamp (v1) wants x-sheen-signature over timestamp and body.
// SigningDual wants a valid x-sheen-sig-v2 with its nonce (over method,
// target, timestamp, nonce and body), as the deployed worker does after its
// rollout window: the scheme that refuses replays. AcceptV1 relaxes it.
//
// Make one and share it by pointer: it holds the nonce store, and is safe
// for concurrent use. Its fields must not change once it is in use. A
// misconfigured Verifier (a secret shorter than MinSecretLength, an unknown
// scheme, AcceptV1 without SigningDual, a negative Skew or MaxBody, a
// MemoryNonceStore made with a negative setting or keeping nonces for less
// than twice Skew) refuses every request with a plain error that says what
// is wrong.
type Verifier struct {
	// Secret is the shared secret (at least MinSecretLength characters,
	// used as-is).
	Secret string
	// SecretV2, when set, is the secret of x-sheen-sig-v2 signatures.
	SecretV2 string
	// Scheme is what senders must sign with.
	Scheme sheen.Signing
	// AcceptV1, with SigningDual, also lets through a request whose only
	// valid signature is the v1 one (and a v2 one without a nonce), as the
	// deployed worker does during its rollout window. Set it only for
	// senders that cannot sign v2: the v1 signature covers neither the path
	// nor the nonce, so such a request can be sent to another path, or
	// replayed with a new nonce, inside the skew window.
	AcceptV1 bool
	// Skew is the accepted distance between a request's timestamp and now
	// for the timestamped schemes; zero means DefaultSkew (120 s).
	Skew time.Duration
	// Nonces remembers the nonces of timestamped requests, to refuse
	// replays; nil means an in-memory store that keeps each nonce for
	// DefaultNonceTTL (or twice Skew, if longer) and at most 100,000 of
	// them (under a larger flood the oldest are forgotten first); a nonce
	// is at most 128 bytes (see Verify). Share a store (Redis, a table) between
	// instances of a service behind a load balancer: sheenredis.NonceStore
	// is one, a NonceChecker. A store with a NonceTTL() time.Duration
	// method (MemoryNonceStore, sheenredis.NonceStore) must keep nonces for
	// at least twice Skew, or the Verifier refuses to run: a replay after
	// that would pass.
	Nonces NonceStore
	// MaxBody caps the request body VerifyRequest and Middleware read, in
	// bytes; zero means MaxRequestBody (1 MiB). Larger bodies are refused
	// with 413 FST_ERR_CTP_BODY_TOO_LARGE.
	MaxBody int64
	// Now tells the time; nil means time.Now.
	Now func() time.Time

	once    sync.Once
	checker signing.Checker
	nonces  NonceStore
	err     error // a configuration Verify refuses to run with
}

// NonceStore remembers nonces so a replayed request can be refused.
type NonceStore interface {
	// Seen records nonce as used at now and reports whether it had already
	// been used within the store's window.
	Seen(nonce string, now time.Time) bool
}

// NonceChecker is a NonceStore that can fail to answer, as a store shared
// over the network can (sheenredis.NonceStore). A Verifier calls Check
// instead of Seen when its store has it. When Check fails, the Verifier
// refuses the request rather than risk a replay: Verify returns an error
// that says so and wraps Check's (a NonceChecker that prefers to let
// requests through when its backend is down answers from a local store
// instead of failing), and Middleware answers 503 NONCE_STORE_UNAVAILABLE
// with Retry-After: 1.
type NonceChecker interface {
	NonceStore
	// Check records nonce as used at now and reports whether it had already
	// been used within the store's window, or fails when it cannot tell.
	Check(nonce string, now time.Time) (seen bool, err error)
}

// setup checks the configuration and makes the keys, once.
func (v *Verifier) setup() error {
	v.once.Do(func() {
		if v.err = v.checkConfig(); v.err != nil {
			return
		}
		v.nonces = v.Nonces
		if v.nonces == nil {
			v.nonces = NewMemoryNonceStore(max(sheen.DefaultNonceTTL, 2*cmp.Or(v.Skew, sheen.DefaultSkew)), 0)
		}
		v.checker = signing.Checker{
			Scheme:   signing.Scheme(v.Scheme),
			AcceptV1: v.AcceptV1,
			Key:      signing.NewKey([]byte(v.Secret)),
			KeyV2:    signing.NewKey([]byte(cmp.Or(v.SecretV2, v.Secret))),
			Skew:     cmp.Or(v.Skew, sheen.DefaultSkew),
			Seen:     v.nonceSeen,
		}
	})
	return v.err
}

// checkConfig says what is wrong with the configuration, without the
// secrets.
func (v *Verifier) checkConfig() error {
	switch {
	case len(v.Secret) < sheen.MinSecretLength:
		return fmt.Errorf("sheenhttp: Verifier.Secret is %d characters; it must be at least %d", len(v.Secret), sheen.MinSecretLength)
	case v.SecretV2 != "" && len(v.SecretV2) < sheen.MinSecretLength:
		return fmt.Errorf("sheenhttp: Verifier.SecretV2 is %d characters; it must be at least %d", len(v.SecretV2), sheen.MinSecretLength)
	case v.Scheme < sheen.SigningBodyPath || v.Scheme > sheen.SigningDual:
		return fmt.Errorf("sheenhttp: Verifier.Scheme: unknown scheme %v", v.Scheme)
	case v.AcceptV1 && v.Scheme != sheen.SigningDual:
		return fmt.Errorf("sheenhttp: Verifier.AcceptV1 needs Scheme SigningDual, not %v", v.Scheme)
	case v.MaxBody < 0:
		return errors.New("sheenhttp: Verifier.MaxBody is negative")
	case v.Skew < 0:
		return errors.New("sheenhttp: Verifier.Skew is negative")
	}
	if m, ok := v.Nonces.(*MemoryNonceStore); ok && v.Scheme != sheen.SigningBodyPath {
		if m == nil {
			return errors.New("sheenhttp: Verifier.Nonces is a nil *MemoryNonceStore")
		}
		ttl, err := m.protects()
		if err != nil {
			return fmt.Errorf("sheenhttp: Verifier.Nonces: %w", err)
		}
		if skew := cmp.Or(v.Skew, sheen.DefaultSkew); ttl < 2*skew {
			return fmt.Errorf("sheenhttp: Verifier.Nonces keeps each nonce for %s, less than twice Skew (%s): a request replayed after that would pass", ttl, 2*skew)
		}
	} else if s, ok := v.Nonces.(interface{ NonceTTL() time.Duration }); ok && v.Scheme != sheen.SigningBodyPath {
		if ttl, skew := s.NonceTTL(), cmp.Or(v.Skew, sheen.DefaultSkew); ttl < 2*skew {
			return fmt.Errorf("sheenhttp: Verifier.Nonces keeps each nonce for %s, less than twice Skew (%s): a request replayed after that would pass", ttl, 2*skew)
		}
	}
	return nil
}

// Verify checks the signature headers h of a request with the given method,
// request target (escaped path plus raw query, as on the wire) and body. It
// returns nil, an *AuthError carrying the status and code the deployed
// worker answers with (401 MISSING_SIGNATURE, 403 INVALID_SIGNATURE, 408
// TIMESTAMP_OUT_OF_RANGE, 409 REPLAY_ATTACK_DETECTED), ErrNotConfigured for
// a nil Verifier, a plain error for a misconfigured one, or an error that
// wraps a NonceChecker's when the nonce store could not answer.
//
// As on the deployed worker, the timestamp is checked first, then the nonce,
// then the signature; the nonce is used up before the signature is checked,
// so a request with a bad signature still burns its nonce. A nonce longer
// than 128 bytes or with a byte outside [0-9A-Za-z_-] is refused 403
// INVALID_SIGNATURE without being recorded, so unsigned requests cannot
// fill the nonce store with large values (the SDK's nonces are 32
// lowercase hex characters).
func (v *Verifier) Verify(method, target string, h http.Header, body []byte) error {
	if v == nil {
		return sheen.ErrNotConfigured
	}
	if err := v.setup(); err != nil {
		return err
	}
	at := time.Now()
	if v.Now != nil {
		at = v.Now()
	}
	failure, err := v.checker.Check(method, target, h, body, at)
	if err != nil {
		return fmt.Errorf("%w: %w", errNonceStore, err)
	}
	switch failure {
	case signing.Accepted:
		return nil
	case signing.Missing:
		return authFailure(http.StatusUnauthorized, sheen.CodeMissingSignature, "missing signature header")
	case signing.Stale:
		e := authFailure(http.StatusRequestTimeout, sheen.CodeTimestampOutOfRange, "request timestamp is missing or outside the allowed window")
		e.ServerTime = at.Truncate(time.Second)
		return e
	case signing.Replayed:
		return authFailure(http.StatusConflict, sheen.CodeReplayAttackDetected, "nonce has already been used")
	}
	return invalidSignature()
}

// errNonceStore marks a request refused because the nonce store could not
// tell whether it is a replay (a NonceChecker failed).
var errNonceStore = errors.New("sheenhttp: Verifier: the nonce store cannot tell whether this request is a replay, so it is refused")

// nonceSeen uses nonce up, through Check when the store can fail.
func (v *Verifier) nonceSeen(nonce string, at time.Time) (bool, error) {
	if c, ok := v.nonces.(NonceChecker); ok {
		return c.Check(nonce, at)
	}
	return v.nonces.Seen(nonce, at), nil
}

// VerifyRequest reads r's body (at most MaxBody bytes) and checks its
// signature with Verify. The request target checked is the one received
// (r.RequestURI), not as net/url re-encodes it, so it works behind
// http.StripPrefix; for a request that has no RequestURI (one built by a
// client, as a RoundTripper sees it) it is r.URL.RequestURI().
//
// It returns the body, and leaves the same bytes in r.Body so handlers read
// it intact. Failures are an *AuthError (as Verify), a
// *PayloadTooLargeError (413), or a plain error for a misconfigured
// Verifier or a body that could not be read.
func (v *Verifier) VerifyRequest(r *http.Request) ([]byte, error) {
	if v == nil {
		return nil, sheen.ErrNotConfigured
	}
	if err := v.setup(); err != nil {
		return nil, err
	}
	body, err := v.readBody(r)
	if err != nil {
		return nil, err
	}
	if err := v.Verify(r.Method, requestTarget(r), r.Header, body); err != nil {
		return nil, err
	}
	return body, nil
}

// errReadingBody marks a request body that could not be read.
var errReadingBody = errors.New("sheenhttp: reading the request body")

// readBody reads r's body, capped at MaxBody, and puts the bytes back in
// r.Body. A request without a body keeps its r.Body.
func (v *Verifier) readBody(r *http.Request) ([]byte, error) {
	limit := cmp.Or(v.MaxBody, sheen.MaxRequestBody)
	tooLarge := func() error {
		return &sheen.PayloadTooLargeError{
			APIError: &sheen.APIError{StatusCode: http.StatusRequestEntityTooLarge, Code: sheen.CodeBodyTooLarge, Message: "Request body is too large"},
			Limit:    limit,
		}
	}
	if r.ContentLength > limit {
		return nil, tooLarge()
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	r.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errReadingBody, err)
	}
	if int64(len(body)) > limit {
		return nil, tooLarge()
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return body, nil
}

// Middleware returns next behind the Verifier: only requests VerifyRequest
// accepts reach it, with their body intact in r.Body. Others are answered
// the way the deployed worker answers them: 401 MISSING_SIGNATURE, 403
// INVALID_SIGNATURE, 408 TIMESTAMP_OUT_OF_RANGE (with serverTime, so senders
// can correct their clock), 409 REPLAY_ATTACK_DETECTED, as {"code": code,
// "error": message}, and 413 FST_ERR_CTP_BODY_TOO_LARGE in the web
// framework's shape. A body that cannot be read is a 400 BAD_REQUEST; a
// nonce store that cannot answer (see NonceChecker) a 503
// NONCE_STORE_UNAVAILABLE with Retry-After: 1.
//
// A misconfigured (or nil) Verifier answers every request 500
// INTERNAL_ERROR, saying nothing of why to the sender; Verify returns the
// reason, so a service can check its Verifier once at start-up.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := v.VerifyRequest(r); err != nil {
			writeVerifyError(w, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// codeNonceStoreUnavailable is Middleware's answer when the nonce store
// cannot tell whether a request is a replay.
const codeNonceStoreUnavailable sheen.ErrorCode = "NONCE_STORE_UNAVAILABLE"

// authErrorBody is how the deployed worker's middleware answers a refused
// signature.
type authErrorBody struct {
	Code       sheen.ErrorCode `json:"code"`
	Error      string          `json:"error"`
	ServerTime int64           `json:"serverTime,omitempty"`
}

// writeVerifyError answers a refused request with the worker's status and
// JSON body.
func writeVerifyError(w http.ResponseWriter, err error) {
	var (
		ae *sheen.AuthError
		pe *sheen.PayloadTooLargeError
	)
	switch {
	case errors.As(err, &pe):
		writeError(w, http.StatusRequestEntityTooLarge, sheen.CodeBodyTooLarge, pe.Message)
	case errors.As(err, &ae):
		body := authErrorBody{Code: ae.Code, Error: ae.Message}
		if !ae.ServerTime.IsZero() {
			body.ServerTime = ae.ServerTime.Unix()
		}
		writeJSON(w, ae.StatusCode, body)
	case errors.Is(err, errReadingBody):
		writeError(w, http.StatusBadRequest, codeBadRequest, "Could not read the request body")
	case errors.Is(err, errNonceStore):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, codeNonceStoreUnavailable, "Replay protection is unavailable; try again")
	default:
		writeError(w, http.StatusInternalServerError, codeInternal, "Internal error")
	}
}

// requestTarget is the target a request was signed over: as it arrived on
// the wire when it did, else as its URL writes it.
func requestTarget(r *http.Request) string {
	if t := r.RequestURI; t != "" && t[0] == '/' {
		return t
	}
	return r.URL.RequestURI()
}

func authFailure(status int, code sheen.ErrorCode, msg string) *sheen.AuthError {
	return &sheen.AuthError{APIError: &sheen.APIError{StatusCode: status, Code: code, Message: msg}}
}

func invalidSignature() *sheen.AuthError {
	return authFailure(http.StatusForbidden, sheen.CodeInvalidSignature, "signature validation failed")
}

// defaultMaxNonces is how many nonces a MemoryNonceStore keeps unless told.
const defaultMaxNonces = 100_000

// MemoryNonceStore is a bounded in-memory NonceStore. When full it forgets
// the oldest nonces first, so memory stays bounded under a flood.
type MemoryNonceStore struct {
	mu    sync.Mutex
	ttl   time.Duration
	max   int
	err   error // a configuration that would protect nothing
	seen  map[string]time.Time
	order []nonceEntry // insertion order, oldest first
	head  int
}

type nonceEntry struct {
	nonce string
	at    time.Time
}

// NewMemoryNonceStore keeps each nonce for ttl, and at most max of them.
// Zero means the default, as for the zero MemoryNonceStore: ttl
// DefaultNonceTTL, max 100,000. A Verifier needs ttl to be at least twice
// its Skew, or a request replayed once its nonce is forgotten passes.
//
// A negative ttl or max would protect nothing, and is refused: such a store
// counts every nonce as seen (so every request that carries one is
// refused as a replay, rather than replays let through), and a Verifier
// whose Nonces it is refuses to run, with an error that says why.
func NewMemoryNonceStore(ttl time.Duration, max int) *MemoryNonceStore {
	s := &MemoryNonceStore{ttl: cmp.Or(ttl, sheen.DefaultNonceTTL), max: cmp.Or(max, defaultMaxNonces), seen: make(map[string]time.Time)}
	switch {
	case ttl < 0:
		s.err = fmt.Errorf("sheenhttp: NewMemoryNonceStore: ttl %s is negative: no nonce would be remembered (0 means DefaultNonceTTL)", ttl)
	case max < 0:
		s.err = fmt.Errorf("sheenhttp: NewMemoryNonceStore: max %d is negative (0 means 100,000)", max)
	}
	return s
}

// Seen implements NonceStore. The zero MemoryNonceStore works, keeping
// nonces for DefaultNonceTTL, at most 100,000 of them. A store made with
// a negative ttl or max reports every nonce as seen.
func (s *MemoryNonceStore) Seen(nonce string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return true
	}
	s.init()
	s.expire(now)
	if at, ok := s.seen[nonce]; ok && now.Sub(at) < s.ttl {
		return true
	}
	for len(s.seen) >= s.max {
		s.dropOldest()
	}
	s.seen[nonce] = now
	s.order = append(s.order, nonceEntry{nonce, now})
	return false
}

// init gives the zero MemoryNonceStore its defaults. s.mu is held.
func (s *MemoryNonceStore) init() {
	if s.seen == nil {
		s.seen = make(map[string]time.Time)
		s.ttl = cmp.Or(s.ttl, sheen.DefaultNonceTTL)
		s.max = cmp.Or(s.max, defaultMaxNonces)
	}
}

// protects says how long s keeps a nonce, or why it protects nothing.
func (s *MemoryNonceStore) protects() (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	return s.ttl, s.err
}

// Len reports how many nonces are remembered.
func (s *MemoryNonceStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

func (s *MemoryNonceStore) expire(now time.Time) {
	for s.head < len(s.order) && now.Sub(s.order[s.head].at) >= s.ttl {
		s.dropOldest()
	}
}

func (s *MemoryNonceStore) dropOldest() {
	e := s.order[s.head]
	s.order[s.head] = nonceEntry{}
	s.head++
	if at, ok := s.seen[e.nonce]; ok && at.Equal(e.at) {
		delete(s.seen, e.nonce)
	}
	if s.head > 1024 && s.head*2 > len(s.order) {
		s.order = append(s.order[:0:0], s.order[s.head:]...)
		s.head = 0
	}
}
