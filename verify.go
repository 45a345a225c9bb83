package sheen

import (
	"cmp"
	"crypto/hmac"
	"encoding/hex"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// DefaultSkew is the clock skew the deployed worker accepts on timestamped
// signatures.
const DefaultSkew = 120 * time.Second

// DefaultNonceTTL is how long the deployed worker remembers a nonce.
const DefaultNonceTTL = 600 * time.Second

// Verifier checks signed requests the way the deployed worker does. The fake
// worker (sheentest) and inbound middleware use it. A Verifier is safe for
// concurrent use; its zero value is not usable: set at least Secret. Its
// fields must not change once Verify has been called.
type Verifier struct {
	// Secret is the shared secret, used as-is.
	Secret string
	// SecretV2, when set, is the secret of x-sheen-sig-v2 signatures.
	SecretV2 string
	// Scheme is what the caller must sign with. For SigningDual a request
	// passes when either its v1 or its v2 signature is valid, as on the
	// deployed worker.
	Scheme Signing
	// Skew is the accepted distance between the request's timestamp and
	// Now; zero means DefaultSkew.
	Skew time.Duration
	// Nonces remembers nonces of timestamped requests; nil means a bounded
	// in-memory store created on first use.
	Nonces NonceStore
	// Now tells the time; nil means time.Now.
	Now func() time.Time

	once       sync.Once
	key, keyV2 *macKey
	err        error // a configuration Verify refuses to run with
}

// NonceStore remembers nonces so a replayed request can be refused.
type NonceStore interface {
	// Seen records nonce as used at now and reports whether it had already
	// been used within the store's window.
	Seen(nonce string, now time.Time) bool
}

// Verify checks the signature headers h of a request with the given method,
// request target (escaped path plus raw query, as on the wire) and body. It
// returns nil or an *AuthError carrying the status and code the deployed
// worker answers with: 401 MISSING_SIGNATURE, 403 INVALID_SIGNATURE,
// 408 TIMESTAMP_OUT_OF_RANGE or 409 REPLAY_ATTACK_DETECTED.
//
// As on the deployed worker, the nonce is used up before the signature is
// checked, so a request with a bad signature still burns its nonce.
func (v *Verifier) Verify(method, target string, h http.Header, body []byte) error {
	if v == nil {
		return ErrNotConfigured
	}
	v.once.Do(func() {
		switch {
		case len(v.Secret) < MinSecretLength:
			v.err = fmt.Errorf("sheen: Verifier.Secret is %d characters; it must be at least %d", len(v.Secret), MinSecretLength)
			return
		case v.SecretV2 != "" && len(v.SecretV2) < MinSecretLength:
			v.err = fmt.Errorf("sheen: Verifier.SecretV2 is %d characters; it must be at least %d", len(v.SecretV2), MinSecretLength)
			return
		case !v.Scheme.valid():
			v.err = fmt.Errorf("sheen: Verifier.Scheme: unknown scheme %v", v.Scheme)
			return
		}
		if v.Nonces == nil {
			v.Nonces = NewMemoryNonceStore(DefaultNonceTTL, 100_000)
		}
		v.key, v.keyV2 = newMACKey([]byte(v.Secret)), newMACKey([]byte(cmp.Or(v.SecretV2, v.Secret)))
	})
	if v.err != nil {
		return v.err
	}
	sig := h.Get(HeaderSignature)
	sigV2 := h.Get(HeaderSignatureV2)
	if sig == "" && (v.Scheme != SigningDual || sigV2 == "") {
		return authFailure(http.StatusUnauthorized, CodeMissingSignature, "missing signature header")
	}
	if v.Scheme == SigningBodyPath {
		if !equalHex(sig, signBodyPath(v.key, body, target)) {
			return authFailure(http.StatusForbidden, CodeInvalidSignature, "signature validation failed")
		}
		return nil
	}

	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	at := now()
	ts := h.Get(HeaderTimestamp)
	sent, ok := parseUnixSeconds(ts)
	skew := v.Skew
	if skew <= 0 {
		skew = DefaultSkew
	}
	if !ok || sent.Sub(at).Abs() > skew {
		e := authFailure(http.StatusRequestTimeout, CodeTimestampOutOfRange, "request timestamp is missing or outside the allowed window")
		e.ServerTime = at.Truncate(time.Second)
		return e
	}
	nonce := h.Get(HeaderNonce)
	if nonce != "" && v.Nonces.Seen(nonce, at) {
		return authFailure(http.StatusConflict, CodeReplayAttackDetected, "nonce has already been used")
	}
	// The deployed middleware signs a payload chosen from the body, not
	// always the raw bytes (nothing for GET, DELETE and falsy JSON).
	payload := signedPayload(method, h.Get("Content-Type"), body)
	if equalHex(sig, signTimestamp(v.key, ts, payload)) {
		return nil
	}
	if v.Scheme == SigningDual && sigV2 != "" && equalHex(sigV2, signV2(v.keyV2, method, target, ts, nonce, payload)) {
		return nil
	}
	return authFailure(http.StatusForbidden, CodeInvalidSignature, "signature validation failed")
}

// VerifyRequest is Verify for an incoming *http.Request whose body has
// already been read into body. It checks the request target exactly as it
// arrived on the wire (r.RequestURI), not as net/url re-encodes it; for a
// request that has no RequestURI (one built by a client) it uses
// r.URL.RequestURI().
func (v *Verifier) VerifyRequest(r *http.Request, body []byte) error {
	return v.Verify(r.Method, requestTarget(r), r.Header, body)
}

// requestTarget is the target a request was signed over: as it arrived on
// the wire when it did, else as its URL writes it.
func requestTarget(r *http.Request) string {
	if t := r.RequestURI; t != "" && t[0] == '/' {
		return t
	}
	return r.URL.RequestURI()
}

// equalHex compares a received hex signature with the expected one in
// constant time; signatures of another length or not hex never match.
func equalHex(got, want string) bool {
	g, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	w, _ := hex.DecodeString(want)
	return len(g) == len(w) && hmac.Equal(g, w)
}

func authFailure(status int, code ErrorCode, msg string) *AuthError {
	return &AuthError{APIError: &APIError{StatusCode: status, Code: code, Message: msg}}
}

// MemoryNonceStore is a bounded in-memory NonceStore. When full it forgets
// the oldest nonces first, so memory stays bounded under a flood.
type MemoryNonceStore struct {
	mu    sync.Mutex
	ttl   time.Duration
	max   int
	seen  map[string]time.Time
	order []nonceEntry // insertion order, oldest first
	head  int
}

type nonceEntry struct {
	nonce string
	at    time.Time
}

// NewMemoryNonceStore keeps each nonce for ttl, and at most max of them.
func NewMemoryNonceStore(ttl time.Duration, max int) *MemoryNonceStore {
	if max <= 0 {
		max = 1
	}
	return &MemoryNonceStore{ttl: ttl, max: max, seen: make(map[string]time.Time)}
}

// Seen implements NonceStore. The zero MemoryNonceStore works, keeping
// nonces for DefaultNonceTTL, at most 100,000 of them.
func (s *MemoryNonceStore) Seen(nonce string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = make(map[string]time.Time)
		s.ttl = cmp.Or(s.ttl, DefaultNonceTTL)
		s.max = cmp.Or(s.max, 100_000)
	}
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
