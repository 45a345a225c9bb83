package sheentest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/jsonx"
)

// This file holds the deployed worker's checks that go beyond its signature
// middleware (worker-api.md 1.1), applied when the server signs like the
// deployed worker (WithSigning(sheen.SigningTimestamp) or SigningDual), so
// a user's test fails where production would.

// maxParamLength is the worker router's limit on a route parameter, counted
// as it appears in the path (escaped).
const maxParamLength = 100

// inlineCheck describes a route whose handler checks a v1 signature itself.
type inlineCheck struct {
	middleware bool // the signature middleware runs first
	body       bool // the check signs JSON.stringify(parsed body), else ""
}

var inlineChecks = map[string]inlineCheck{
	"POST /v1/create-preview-for-new-project": {middleware: false, body: true},
	"POST /v1/versions/rollback":              {middleware: true, body: true},
	"POST /v1/versions/{versionId}/rebuild":   {middleware: true},
	"GET /v1/projects/{projectId}/export":     {middleware: true},
	"GET /v1/versions/{versionId}/download":   {middleware: true},
}

// paramTooLong reports a route parameter longer than the router matches;
// the worker answers such a request 404 before any other check.
func paramTooLong(pattern, escapedPath string) bool {
	_, route, _ := strings.Cut(pattern, " ")
	want := strings.Split(route, "/")
	got := strings.Split(escapedPath, "/")
	if len(want) != len(got) {
		return false
	}
	for i, seg := range want {
		if strings.HasPrefix(seg, "{") && len(got[i]) > maxParamLength {
			return true
		}
	}
	return false
}

// checkInline runs the inline v1 check of pattern's handler, if it has one:
// the v1 signature over timestamp + (JSON.stringify of the parsed body, or
// nothing), signed with the main secret, within the skew window. It answers
// a failure the way those handlers do, 401 with serverTime in milliseconds,
// and reports whether the request may go on.
func (s *Server) checkInline(w http.ResponseWriter, r *http.Request, check inlineCheck, body []byte) bool {
	ts := r.Header.Get(sheen.HeaderTimestamp)
	payload := ""
	if check.body {
		p, ok := jsonx.InlinePayload(r.Method, r.Header.Get("Content-Type"), body)
		payload = string(p)
		if !ok {
			payload = "undefined" // JSON.stringify(undefined), concatenated
		}
	}
	mac := hmac.New(sha256.New, []byte(s.Secret))
	mac.Write([]byte(ts + payload))
	want := mac.Sum(nil)
	got, err := hex.DecodeString(r.Header.Get(sheen.HeaderSignature))
	now := s.now()
	sent, tsErr := parseSeconds(ts)
	if err != nil || !hmac.Equal(got, want) || tsErr != nil || sent.Sub(now).Abs() > sheen.DefaultSkew {
		writeJSON(w, http.StatusUnauthorized, map[string]any{
			"success": false, "error": "Invalid signature", "serverTime": now.UnixMilli(),
		})
		return false
	}
	return true
}

// deployedMode reports whether the server behaves as the deployed worker
// (timestamped schemes) rather than as v2.1's design.
func (s *Server) deployedMode() bool { return s.cfg.signing != sheen.SigningBodyPath }

// middlewareError answers a refusal of the signature middleware as the
// deployed worker does: {"error","code"}, and on a 408 its clock as
// "timestamp".
func (s *Server) middlewareError(w http.ResponseWriter, ae *sheen.AuthError) {
	body := map[string]any{"error": ae.Message, "code": ae.Code}
	if ae.StatusCode == http.StatusRequestTimeout {
		body["timestamp"] = s.now().UTC().Format(time.RFC3339Nano)
	}
	writeJSON(w, ae.StatusCode, body)
}

func parseSeconds(s string) (time.Time, error) {
	var n int64
	if s == "" {
		return time.Time{}, errEmpty
	}
	for _, c := range s {
		if c < '0' || c > '9' || n > 1e15 {
			return time.Time{}, errEmpty
		}
		n = n*10 + int64(c-'0')
	}
	return time.Unix(n, 0), nil
}

var errEmpty = &sheen.ValidationError{Field: "x-sheen-timestamp", Reason: "is not Unix seconds"}
