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
	"slices"
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

func canonicalV2(method, target, timestamp, nonce string, body []byte) string {
	return method + "\n" + canonicalPath(target) + "\n" + timestamp + "\n" + nonce + "\n" + string(body)
}

// canonicalPath is the v2 canonical form of a request target: the path as
// sent, and the query parsed as a form, its pairs stably sorted by key with a
// case-insensitive, locale-style comparison and re-encoded as a form.
func canonicalPath(target string) string {
	path, query, ok := strings.Cut(target, "?")
	if !ok {
		return path
	}
	pairs := parseForm(query)
	if len(pairs) == 0 {
		return path
	}
	slices.SortStableFunc(pairs, func(a, b [2]string) int { return localeCompare(a[0], b[0]) })
	var sb strings.Builder
	sb.Grow(len(target) + 16)
	sb.WriteString(path)
	for i, p := range pairs {
		if i == 0 {
			sb.WriteByte('?')
		} else {
			sb.WriteByte('&')
		}
		formEscape(&sb, p[0])
		sb.WriteByte('=')
		formEscape(&sb, p[1])
	}
	return sb.String()
}

// parseForm splits a query like URLSearchParams does: '&'-separated pairs,
// '+' is a space, percent escapes decoded (invalid ones kept literally), empty
// pairs skipped, order kept.
func parseForm(query string) [][2]string {
	var pairs [][2]string
	for part := range strings.SplitSeq(query, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		pairs = append(pairs, [2]string{formUnescape(k), formUnescape(v)})
	}
	return pairs
}

func formUnescape(s string) string {
	s = strings.ReplaceAll(s, "+", " ")
	if !strings.Contains(s, "%") {
		return s
	}
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			out = append(out, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		out = append(out, s[i])
	}
	return string(out)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// formEscape writes s as application/x-www-form-urlencoded, the way
// URLSearchParams serialises: A-Za-z0-9 and *-._ bare, space as '+', every
// other byte of the UTF-8 encoding as %XX.
func formEscape(sb *strings.Builder, s string) {
	const hexUpper = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '*', c == '-', c == '.', c == '_':
			sb.WriteByte(c)
		case c == ' ':
			sb.WriteByte('+')
		default:
			sb.WriteByte('%')
			sb.WriteByte(hexUpper[c>>4])
			sb.WriteByte(hexUpper[c&15])
		}
	}
}

// localeCompare orders keys as JavaScript's localeCompare does for the ASCII
// keys the worker uses: case-insensitively first, and for keys equal but for
// case, lowercase before uppercase.
func localeCompare(a, b string) int {
	if c := strings.Compare(strings.ToLower(a), strings.ToLower(b)); c != 0 {
		return c
	}
	// Equal ignoring case: the lowercase letter sorts first, so compare with
	// cases swapped.
	return strings.Compare(swapCase(a), swapCase(b))
}

func swapCase(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z':
			return r - 'a' + 'A'
		case 'A' <= r && r <= 'Z':
			return r - 'A' + 'a'
		}
		return r
	}, s)
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
