// Package signing holds the worker's HMAC signing schemes as pure
// functions: the signatures the client's signer adds (package sheen) and the
// checks sheenhttp.Verifier makes, so the two can never disagree.
//
// The schemes (worker-api.md 1.1):
//
//   - v2.1 (body+path): x-sheen-signature = hex(HMAC(secret, body + target)).
//   - v1 (timestamp): x-sheen-signature = hex(HMAC(secret, timestamp +
//     payload)), with x-sheen-timestamp.
//   - v2: x-sheen-sig-v2 = hex(HMAC(secretV2, CanonicalV2(...))), with
//     x-sheen-timestamp and x-sheen-nonce.
//
// The payload of the timestamped schemes is the body the deployed worker's
// middleware signs (Payload).
package signing

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sheenapps/sheen-go/internal/jsonx"
)

// Scheme is a signing scheme, numbered as sheen.Signing numbers them.
type Scheme int

// The schemes, in sheen.Signing's order.
const (
	BodyPath Scheme = iota
	Timestamp
	Dual
)

// Header names of the schemes (sheen.HeaderSignature and the others).
const (
	HeaderSignature   = "X-Sheen-Signature"
	HeaderSignatureV2 = "X-Sheen-Sig-V2"
	HeaderTimestamp   = "X-Sheen-Timestamp"
	HeaderNonce       = "X-Sheen-Nonce"
)

// Key is a secret with a pool of HMAC-SHA256 states keyed with it, so
// signing a request does not set up a new HMAC each time. It is safe for
// concurrent use.
type Key struct {
	pool sync.Pool // of *mac
}

// mac is a keyed HMAC state with the scratch space one signature needs, so
// that signing allocates only the signature's text.
type mac struct {
	h     hash.Hash
	chunk [256]byte // strings are hashed through it: hash.Hash takes bytes
	sum   [sha256.Size]byte
	hex   [2 * sha256.Size]byte
}

// NewKey makes the Key of secret (copied).
func NewKey(secret []byte) *Key {
	secret = bytes.Clone(secret)
	k := &Key{}
	k.pool.New = func() any { return &mac{h: hmac.New(sha256.New, secret)} }
	return k
}

// sum returns the lowercase hex HMAC of prefix + body + suffix. The body is
// hashed where it lies: signing never copies it.
func (k *Key) sum(prefix string, body []byte, suffix string) string {
	m := k.pool.Get().(*mac)
	m.h.Reset()
	m.writeString(prefix)
	m.h.Write(body)
	m.writeString(suffix)
	hex.Encode(m.hex[:], m.h.Sum(m.sum[:0]))
	out := string(m.hex[:])
	k.pool.Put(m)
	return out
}

// writeString hashes s a chunk at a time, without converting it to a
// []byte of its own.
func (m *mac) writeString(s string) {
	for len(s) > 0 {
		n := copy(m.chunk[:], s)
		m.h.Write(m.chunk[:n])
		s = s[n:]
	}
}

// SignBodyPath is the v2.1 signature: HMAC over body + pathWithQuery.
func SignBodyPath(k *Key, body []byte, target string) string {
	return k.sum("", body, target)
}

// SignTimestamp is the v1 signature: HMAC over timestamp + payload.
func SignTimestamp(k *Key, timestamp string, payload []byte) string {
	return k.sum(timestamp, payload, "")
}

// SignV2 is the deployed worker's v2 signature, over CanonicalV2.
func SignV2(k *Key, method, target, timestamp, nonce string, payload []byte) string {
	return k.sum(canonicalV2Head(method, target, timestamp, nonce), payload, "")
}

// Payload is the body the deployed worker's middleware signs (worker-api.md
// 1.1): nothing for GET and DELETE and for falsy JSON, the text of a JSON
// string, otherwise the bytes as sent.
func Payload(method, contentType string, body []byte) []byte {
	return jsonx.MiddlewarePayload(method, contentType, body)
}

// NewNonce returns 16 random bytes as lowercase hex.
func NewNonce() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("sheen: making a nonce: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// ParseUnixSeconds parses a decimal Unix timestamp.
func ParseUnixSeconds(s string) (time.Time, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

// EqualHex compares a received hex signature with the expected one in
// constant time; signatures of another length or not hex never match.
func EqualHex(got, want string) bool {
	g, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	w, _ := hex.DecodeString(want)
	return len(g) == len(w) && hmac.Equal(g, w)
}

// Failure is why Checker.Check refused a request.
type Failure int

// Check's answers, with the deployed worker's status for each.
const (
	Accepted Failure = iota
	Missing          // 401 MISSING_SIGNATURE: no signature header
	Invalid          // 403 INVALID_SIGNATURE
	Stale            // 408 TIMESTAMP_OUT_OF_RANGE: timestamp missing or outside Skew
	Replayed         // 409 REPLAY_ATTACK_DETECTED: the nonce was used already
)

// Checker checks signed requests the way the deployed worker does. Its
// fields must not change once it is in use.
type Checker struct {
	Scheme Scheme
	// AcceptV1, with Dual, also accepts a valid v1 signature alone (and a
	// v2 one without a nonce), as the worker does in its rollout window.
	AcceptV1   bool
	Key, KeyV2 *Key
	Skew       time.Duration
	// Seen uses a nonce up and reports whether it had been used already;
	// nil remembers no nonces. An error refuses the request (Check
	// returns it).
	Seen func(nonce string, at time.Time) (bool, error)
}

// MaxNonceLength is the longest nonce Check accepts, in bytes. The SDK's
// nonces (NewNonce) are 32: 16 random bytes in lowercase hex.
const MaxNonceLength = 128

// ValidNonce reports whether a nonce is one Check lets reach Seen: at most
// MaxNonceLength bytes of [0-9A-Za-z_-]. Anything else could only make a
// nonce store hold more than a nonce's worth of bytes, unsigned.
func ValidNonce(nonce string) bool {
	if len(nonce) > MaxNonceLength {
		return false
	}
	for i := 0; i < len(nonce); i++ {
		c := nonce[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Check checks the signature headers h of a request with the given method,
// request target (as on the wire) and body, at now. As on the deployed
// worker, the timestamp is checked first, then the nonce, then the
// signature; the nonce is used up before the signature is checked. A
// nonce that is not ValidNonce is refused as Invalid before Seen is
// called, so it is never recorded. The error is Seen's, with Accepted.
func (c *Checker) Check(method, target string, h http.Header, body []byte, now time.Time) (Failure, error) {
	sig, sigV2 := h.Get(HeaderSignature), h.Get(HeaderSignatureV2)
	if sig == "" && (c.Scheme != Dual || sigV2 == "") {
		return Missing, nil
	}
	if c.Scheme == BodyPath {
		if !EqualHex(sig, SignBodyPath(c.Key, body, target)) {
			return Invalid, nil
		}
		return Accepted, nil
	}
	ts, nonce := h.Get(HeaderTimestamp), h.Get(HeaderNonce)
	sent, ok := ParseUnixSeconds(ts)
	if !ok || sent.Sub(now).Abs() > c.Skew {
		return Stale, nil
	}
	if !ValidNonce(nonce) {
		return Invalid, nil
	}
	if nonce != "" && c.Seen != nil {
		seen, err := c.Seen(nonce, now)
		if err != nil {
			return Accepted, err
		}
		if seen {
			return Replayed, nil
		}
	}
	// The deployed middleware signs a payload chosen from the body, not
	// always the raw bytes (nothing for GET, DELETE and falsy JSON).
	payload := Payload(method, h.Get("Content-Type"), body)
	if c.Scheme == Dual && sigV2 != "" && (nonce != "" || c.AcceptV1) &&
		EqualHex(sigV2, SignV2(c.KeyV2, method, target, ts, nonce, payload)) {
		return Accepted, nil
	}
	if (c.Scheme == Timestamp || c.AcceptV1) && EqualHex(sig, SignTimestamp(c.Key, ts, payload)) {
		return Accepted, nil
	}
	return Invalid, nil
}
