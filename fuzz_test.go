package sheen

import (
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Fuzz targets for the untrusted inputs of the request path. Each asserts
// what a user relies on, not only the absence of a panic.

// A request the client signed always passes the check the Verifier
// runs (sheenhttp's FuzzVerify checks the Verifier's other answers).
func FuzzVerifyOwnSignature(f *testing.F) {
	f.Add("GET", "/v1/x?b=1&a=2", []byte(`{"a":1}`))
	f.Add("POST", "/v1/x??%FF=1", []byte(`null`))
	f.Add("DELETE", "/", []byte{0xff})
	at := time.Unix(1767225600, 0)
	f.Fuzz(func(t *testing.T, method, target string, body []byte) {
		if !strings.HasPrefix(target, "/") || !utf8.ValidString(method) || method == "" {
			return
		}
		s := newSigner(SigningDual, false, testSecret, "", newFakeClock(at), nil)
		h := http.Header{"Content-Type": {"application/json"}}
		if err := s.sign(h, method, target, body); err != nil {
			t.Fatal(err)
		}
		v := &testVerifier{Secret: testSecret, Scheme: SigningDual, Now: func() time.Time { return at }}
		if err := v.Verify(method, target, h, body); err != nil {
			t.Fatalf("the client's own signature refused: %v", err)
		}
	})
}

// IDs either come out as one safe path segment of at most MaxIDLength
// characters, or are refused; targets that pass checkTarget are plain
// absolute paths; escapeNonASCII leaves only ASCII.
func FuzzIDsAndTargets(f *testing.F) {
	f.Add("u1")
	f.Add("../etc/passwd")
	f.Add("%2e%2e")
	f.Add("é\x00/")
	f.Fuzz(func(t *testing.T, s string) {
		if esc, err := escapeID("id", s); err == nil {
			if strings.ContainsAny(esc, "/?#\\") || len(esc) > MaxIDLength || esc == "" || esc == "." || esc == ".." {
				t.Fatalf("escapeID(%q) = %q", s, esc)
			}
			if checkTarget("/v1/x/"+esc) != nil {
				t.Fatalf("an escaped ID makes a bad target: %q", esc)
			}
		}
		out := escapeNonASCII(s)
		for i := 0; i < len(out); i++ {
			if out[i] >= utf8.RuneSelf {
				t.Fatalf("escapeNonASCII(%q) = %q", s, out)
			}
		}
		if checkTarget(s) == nil {
			path, _, _ := strings.Cut(s, "?")
			if !strings.HasPrefix(s, "/") || strings.Contains(path, "/../") || strings.HasSuffix(path, "/..") {
				t.Fatalf("checkTarget accepted %q", s)
			}
		}
	})
}

// The skew parser believes only plausible clocks, whatever the body says.
func FuzzServerTime(f *testing.F) {
	f.Add([]byte(`{"serverTime":1767225600000}`), "Thu, 01 Jan 2026 00:00:00 GMT")
	f.Add([]byte(`{"timestamp":"2026-01-01T00:00:00Z"}`), "")
	f.Add([]byte(`{"serverTime":1e308}`), "garbage")
	f.Fuzz(func(t *testing.T, body []byte, date string) {
		tm, ok := serverTime(http.Header{"Date": {date}}, body)
		if ok && (tm.Year() < 2000 || tm.Year() > 2200) {
			t.Fatalf("believed %v from %q / %q", tm, body, date)
		}
	})
}
