package sheen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sheenapps/sheen-go/internal/signing"
	"github.com/sheenapps/sheen-go/internal/wire"
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

// MarshalText returns the scheme's name, as String does; with
// UnmarshalText it makes a Signing usable with flag.TextVar, encoding/json
// and configuration decoders.
func (s Signing) MarshalText() ([]byte, error) {
	if !s.valid() {
		return nil, fmt.Errorf("sheen: %s is not a signing scheme", s)
	}
	return []byte(s.String()), nil
}

// UnmarshalText sets s from a scheme's name: "bodypath", "timestamp" or
// "dual" (any case; also "v2.1", "v1" and "v1+v2"), as WORKER_SIGNING
// takes them. An unknown name leaves s unchanged and is an error.
func (s *Signing) UnmarshalText(text []byte) error {
	switch strings.ToLower(strings.TrimSpace(string(text))) {
	case "bodypath", "v2.1", "body-path":
		*s = SigningBodyPath
	case "timestamp", "v1":
		*s = SigningTimestamp
	case "dual", "v1+v2":
		*s = SigningDual
	default:
		return fmt.Errorf("unknown signing scheme %q (want bodypath, timestamp or dual)", text)
	}
	return nil
}

// signer adds signature headers to outgoing requests. It is safe for
// concurrent use. What it learns from the worker's refusals (the worker's
// clock; that the worker is the deployed one, which wants SigningDual) is
// shared by every request of the client.
type signer struct {
	scheme atomic.Int32 // a Signing
	auto   bool         // the scheme was not chosen: it may move to SigningDual once
	key    *signing.Key
	keyV2  *signing.Key // the v2 signature's key: the v2 secret, or key
	clock  Clock
	logger *slog.Logger
	offset atomic.Int64  // server time minus local time, in seconds
	gen    atomic.Uint64 // bumped on every correction of offset or scheme
}

func newSigner(scheme Signing, auto bool, secret, secretV2 string, clock Clock, logger *slog.Logger) *signer {
	s := &signer{auto: auto, key: signing.NewKey([]byte(secret)), clock: clock, logger: logger}
	s.scheme.Store(int32(scheme))
	s.keyV2 = s.key
	if secretV2 != "" {
		s.keyV2 = signing.NewKey([]byte(secretV2))
	}
	return s
}

// current is the scheme requests are signed with now.
func (s *signer) current() Signing { return Signing(s.scheme.Load()) }

// generation counts the signer's corrections, so a caller can tell whether
// one happened since it last looked.
func (s *signer) generation() uint64 { return s.gen.Load() }

// sign sets the signature headers of one attempt. target is the request
// target exactly as written on the wire (escaped path plus raw query); body is
// the exact bytes sent. Every call uses a fresh timestamp and nonce.
func (s *signer) sign(h http.Header, method, target string, body []byte) error {
	scheme := s.current()
	if scheme == SigningBodyPath {
		h.Set(HeaderSignature, signing.SignBodyPath(s.key, body, target))
		return nil
	}
	ts := strconv.FormatInt(s.clock.Now().Unix()+s.offset.Load(), 10)
	nonce, err := signing.NewNonce()
	if err != nil {
		return err
	}
	payload := signing.Payload(method, h.Get("Content-Type"), body)
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderNonce, nonce)
	h.Set(HeaderSignature, signing.SignTimestamp(s.key, ts, payload))
	if scheme == SigningDual {
		h.Set(HeaderSignatureV2, signing.SignV2(s.keyV2, method, target, ts, nonce, payload))
	}
	return nil
}

// observe reads a refusal that only the deployed worker gives (see
// deployedRefusal) and learns from it: the worker's clock, and, when the
// scheme was left to the client, that SigningDual is needed. It leaves the
// response's body readable.
func (s *signer) observe(resp *http.Response) {
	if resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusUnauthorized {
		return
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(body), resp.Body), resp.Body}
	if !deployedRefusal(resp.StatusCode, body) {
		return
	}
	if s.auto && s.scheme.CompareAndSwap(int32(SigningBodyPath), int32(SigningDual)) {
		s.gen.Add(1)
		s.logger.LogAttrs(context.Background(), slog.LevelWarn,
			"sheen: the worker refused a v2.1 body+path signature as only the deployed worker does; signing with the dual v1+v2 scheme from now on (set WithSigning or "+EnvSigning+" to choose)")
	}
	t, ok := serverTime(resp.Header, body)
	if !ok {
		return
	}
	offset := t.Unix() - s.clock.Now().Unix()
	if old := s.offset.Load(); abs(offset-old) >= minClockCorrection && s.offset.CompareAndSwap(old, offset) {
		s.gen.Add(1)
		s.logger.LogAttrs(context.Background(), slog.LevelWarn, "sheen: local clock differs from the worker's; adjusting signatures",
			slog.Int64("offset_seconds", offset))
	}
}

// minClockCorrection is the smallest change of the clock offset, in
// seconds, worth a retry: the worker allows 120 s of skew, and its clock is
// read to the second.
const minClockCorrection = 5

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// deployedRefusal reports the answers that only the deployed worker's
// timestamp checks give: its middleware's 408 TIMESTAMP_OUT_OF_RANGE, and
// the inline checks' 401 with a serverTime field.
func deployedRefusal(status int, body []byte) bool {
	switch status {
	case http.StatusRequestTimeout:
		return newAPIError(status, nil, body, time.Time{}).Code == CodeTimestampOutOfRange
	case http.StatusUnauthorized:
		var b struct {
			ServerTime json.RawMessage `json:"serverTime"`
		}
		return json.Unmarshal(body, &b) == nil && len(b.ServerTime) > 0 && string(b.ServerTime) != "null"
	}
	return false
}

// escapeID path-escapes one ID for a route after checking that it cannot be
// mistaken for a path of its own. what names the ID in the error ("userId").
func escapeID(what, id string) (string, error) {
	esc, reason := wire.EscapeID(id, MaxIDLength)
	if reason != "" {
		return "", &ValidationError{Field: what, Reason: reason}
	}
	return esc, nil
}

// escapeNonASCII percent-encodes the bytes of target outside ASCII, which
// the worker's HTTP parser refuses raw (400). Everything else is kept as
// the caller wrote it.
func escapeNonASCII(target string) string {
	i := strings.IndexFunc(target, func(r rune) bool { return r >= utf8.RuneSelf })
	if i < 0 {
		return target
	}
	const hexUpper = "0123456789ABCDEF"
	var sb strings.Builder
	sb.Grow(len(target) + 16)
	sb.WriteString(target[:i])
	for j := i; j < len(target); j++ {
		if c := target[j]; c >= utf8.RuneSelf {
			sb.WriteByte('%')
			sb.WriteByte(hexUpper[c>>4])
			sb.WriteByte(hexUpper[c&15])
		} else {
			sb.WriteByte(c)
		}
	}
	return sb.String()
}
