package sheen

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Signing selects how requests to the worker are signed.
type Signing int

const (
	// SigningBodyPath is the v2.1 scheme and the default: one header,
	// x-sheen-signature = hex(HMAC-SHA256(secret, body + pathWithQuery)).
	SigningBodyPath Signing = iota
	// SigningTimestamp is the v1 scheme: x-sheen-timestamp and
	// x-sheen-signature = hex(HMAC-SHA256(secret, timestamp + body)).
	// The client also sends a fresh x-sheen-nonce so that servers which keep
	// nonces can refuse a replayed request (v1 does not sign the nonce).
	SigningTimestamp
	// SigningDual is what the deployed worker wants: the v1 headers plus
	// x-sheen-nonce and x-sheen-sig-v2 over
	// METHOD\ncanonicalPath\ntimestamp\nnonce\nbody.
	SigningDual
)

// Header names used by the signing schemes.
const (
	HeaderSignature   = "X-Sheen-Signature"
	HeaderSignatureV2 = "X-Sheen-Sig-V2"
	HeaderTimestamp   = "X-Sheen-Timestamp"
	HeaderNonce       = "X-Sheen-Nonce"
)

// String returns the name used by WORKER_SIGNING: bodypath, timestamp or dual.
func (s Signing) String() string {
	switch s {
	case SigningBodyPath:
		return "bodypath"
	case SigningTimestamp:
		return "timestamp"
	case SigningDual:
		return "dual"
	}
	return "Signing(" + strconv.Itoa(int(s)) + ")"
}

func (s Signing) valid() bool { return s >= SigningBodyPath && s <= SigningDual }

// ParseSigning turns "bodypath", "timestamp" or "dual" (any case) into a Signing.
func ParseSigning(name string) (Signing, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "bodypath", "v2.1", "body-path":
		return SigningBodyPath, nil
	case "timestamp", "v1":
		return SigningTimestamp, nil
	case "dual", "v1+v2":
		return SigningDual, nil
	}
	return 0, fmt.Errorf("unknown signing scheme %q (want bodypath, timestamp or dual)", name)
}

// signer adds signature headers to outgoing requests. It is safe for
// concurrent use; the clock offset learnt from the server is shared by every
// request of the client.
type signer struct {
	scheme Signing
	key    *macKey
	keyV2  *macKey // the v2 signature's key: the v2 secret, or key
	clock  Clock
	offset atomic.Int64 // server time minus local time, in seconds
}

// sign sets the signature headers of one attempt. target is the request
// target exactly as written on the wire (escaped path plus raw query); body is
// the exact bytes sent. Every call uses a fresh timestamp and nonce.
func (s *signer) sign(h http.Header, method, target string, body []byte) error {
	if s.scheme == SigningBodyPath {
		h.Set(HeaderSignature, signBodyPath(s.key, body, target))
		return nil
	}
	ts := strconv.FormatInt(s.clock.Now().Unix()+s.offset.Load(), 10)
	nonce, err := newNonce()
	if err != nil {
		return err
	}
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderNonce, nonce)
	h.Set(HeaderSignature, signTimestamp(s.key, ts, body))
	if s.scheme == SigningDual {
		h.Set(HeaderSignatureV2, signV2(s.keyV2, method, target, ts, nonce, body))
	}
	return nil
}

// newNonce returns 16 random bytes as lowercase hex.
func newNonce() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("sheen: making a nonce: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// macKey is a secret with a pool of HMAC-SHA256 states keyed with it, so
// signing a request does not set up a new HMAC each time.
type macKey struct {
	pool sync.Pool
}

func newMACKey(secret []byte) *macKey {
	secret = bytes.Clone(secret)
	k := &macKey{}
	k.pool.New = func() any { return hmac.New(sha256.New, secret) }
	return k
}

// sum returns the lowercase hex HMAC of the parts, concatenated.
func (k *macKey) sum(parts ...string) string {
	m := k.pool.Get().(hash.Hash)
	m.Reset()
	for _, p := range parts {
		io.WriteString(m, p)
	}
	var sum [sha256.Size]byte
	out := hex.EncodeToString(m.Sum(sum[:0]))
	k.pool.Put(m)
	return out
}

// signBodyPath is the v2.1 signature: HMAC over body + pathWithQuery.
func signBodyPath(k *macKey, body []byte, target string) string {
	return k.sum(string(body), target)
}

// signTimestamp is the v1 signature: HMAC over timestamp + body.
func signTimestamp(k *macKey, timestamp string, body []byte) string {
	return k.sum(timestamp, string(body))
}

// signV2 is the deployed worker's v2 signature.
func signV2(k *macKey, method, target, timestamp, nonce string, body []byte) string {
	return k.sum(canonicalV2(method, target, timestamp, nonce, body))
}

// escapeID path-escapes one ID for a route after checking that it cannot be
// mistaken for a path of its own. what names the ID in the error ("userId").
func escapeID(what, id string) (string, error) {
	switch {
	case id == "":
		return "", &ValidationError{Field: what, Reason: "is empty"}
	case len(id) > 256:
		return "", &ValidationError{Field: what, Reason: "is longer than 256 bytes"}
	case id == "." || id == ".." || strings.Contains(id, "/") || strings.Contains(id, `\`):
		return "", &ValidationError{Field: what, Reason: fmt.Sprintf("%q would change the request path", id)}
	case strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return "", &ValidationError{Field: what, Reason: "contains control characters"}
	}
	return url.PathEscape(id), nil
}

// parseUnixSeconds parses a decimal Unix timestamp.
func parseUnixSeconds(s string) (time.Time, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}
