package sheen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type signingVector struct {
	Name             string `json:"name"`
	Method           string `json:"method"`
	Path             string `json:"path"`
	Body             string `json:"body"`
	Timestamp        string `json:"timestamp"`
	Nonce            string `json:"nonce"`
	SeedV21Canonical string `json:"seed_v21_canonical"`
	SeedV21Signature string `json:"seed_v21_signature"`
	V1Canonical      string `json:"v1_canonical"`
	V1Signature      string `json:"v1_signature"`
	V2Canonical      string `json:"v2_canonical"`
	V2Signature      string `json:"v2_signature"`
}

type signingVectors struct {
	Secret string          `json:"secret"`
	Cases  []signingVector `json:"cases"`
}

func loadVectors(t *testing.T) signingVectors {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "signing-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v signingVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Cases) != 10 {
		t.Fatalf("want the 10 cases of the spec, got %d", len(v.Cases))
	}
	return v
}

// The repo's copy must equal the spec's whenever the spec is beside the repo
// (it is in development and in CI).
func TestSigningVectorsInSyncWithSpec(t *testing.T) {
	spec, err := os.ReadFile(filepath.Join("..", "shared", "spec", "signing-vectors.json"))
	if errors.Is(err, os.ErrNotExist) {
		t.Log("../shared/spec not beside the repo; nothing to compare")
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	ours, err := os.ReadFile(filepath.Join("testdata", "signing-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(spec, ours) {
		t.Fatal("testdata/signing-vectors.json differs from ../shared/spec/signing-vectors.json: copy the spec's file over")
	}
}

func TestSigningVectors(t *testing.T) {
	v := loadVectors(t)
	secret := []byte(v.Secret)
	for _, tc := range v.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			body := []byte(tc.Body)
			if got := string(body) + tc.Path; got != tc.SeedV21Canonical {
				t.Errorf("v2.1 canonical = %q, want %q", got, tc.SeedV21Canonical)
			}
			if got := signBodyPath(newMACKey(secret), body, tc.Path); got != tc.SeedV21Signature {
				t.Errorf("v2.1 signature = %s, want %s", got, tc.SeedV21Signature)
			}
			if got := signTimestamp(newMACKey(secret), tc.Timestamp, body); got != tc.V1Signature {
				t.Errorf("v1 signature = %s, want %s", got, tc.V1Signature)
			}
			if got := canonicalV2(tc.Method, tc.Path, tc.Timestamp, tc.Nonce, body); got != tc.V2Canonical {
				t.Errorf("v2 canonical:\n%s", cmp.Diff(tc.V2Canonical, got))
			}
			if got := signV2(newMACKey(secret), tc.Method, tc.Path, tc.Timestamp, tc.Nonce, body); got != tc.V2Signature {
				t.Errorf("v2 signature = %s, want %s", got, tc.V2Signature)
			}
		})
	}
}

// Each vector also verifies with the Verifier, as the fake worker and the
// inbound middleware use it, under each scheme.
func TestVerifierAcceptsVectors(t *testing.T) {
	v := loadVectors(t)
	for _, tc := range v.Cases {
		at, _ := parseUnixSeconds(tc.Timestamp)
		now := func() time.Time { return at.Add(30 * time.Second) }
		schemes := map[Signing]http.Header{
			SigningBodyPath:  {HeaderSignature: {tc.SeedV21Signature}},
			SigningTimestamp: {HeaderSignature: {tc.V1Signature}, HeaderTimestamp: {tc.Timestamp}},
			// Only v2 valid: the deployed worker lets it through.
			SigningDual: {HeaderSignature: {strings.Repeat("0", 64)}, HeaderSignatureV2: {tc.V2Signature}, HeaderTimestamp: {tc.Timestamp}, HeaderNonce: {tc.Nonce}},
		}
		for scheme, h := range schemes {
			ver := &Verifier{Secret: v.Secret, Scheme: scheme, Now: now}
			if err := ver.Verify(tc.Method, tc.Path, h, []byte(tc.Body)); err != nil {
				t.Errorf("%s/%s: %v", tc.Name, scheme, err)
			}
		}
	}
}

func TestCanonicalPathRules(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/a", "/a"},
		{"/a?", "/a"},
		{"/a?&&", "/a"},
		{"/a?b=1&A=2&a=3", "/a?a=3&A=2&b=1"},
		{"/a?x=%zz", "/a?x=%25zz"},
		{"/a?k=caf%C3%A9&e=%E2%82%AC+x", "/a?e=%E2%82%AC+x&k=caf%C3%A9"},
		{"/p%2Fq?z=~", "/p%2Fq?z=%7E"},
		{"/a?flag", "/a?flag="},
	} {
		if got := canonicalPath(tc.in); got != tc.want {
			t.Errorf("canonicalPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzCanonicalPath(f *testing.F) {
	f.Add("/v1/projects/p1/versions?state=all&offset=20&limit=10&includePatches=true&Zeta=1&alpha=2")
	f.Add("/v1/projects/p%20q/versions?userId=a%20b~c&state=un+published")
	f.Add("/a?%=&=%&&")
	f.Fuzz(func(t *testing.T, target string) {
		c := canonicalPath(target)
		// Canonicalising is idempotent: the canonical query is already sorted
		// and form-encoded.
		if again := canonicalPath(c); again != c {
			t.Fatalf("not idempotent: %q -> %q -> %q", target, c, again)
		}
	})
}

func TestVerifierFailures(t *testing.T) {
	const secret = "verifier-secret-0123456789abcdef0123"
	now := time.Unix(1_800_000_000, 0)
	ts := "1800000000"
	body := []byte(`{"userId":"u1"}`)
	target := "/v1/billing/check-sufficient?x=1"
	good := func() http.Header {
		return http.Header{
			HeaderTimestamp:   {ts},
			HeaderNonce:       {"n1"},
			HeaderSignature:   {signTimestamp(newMACKey([]byte(secret)), ts, body)},
			HeaderSignatureV2: {signV2(newMACKey([]byte(secret)), "POST", target, ts, "n1", body)},
		}
	}
	type check struct {
		name   string
		scheme Signing
		header func() http.Header
		body   []byte
		target string
		status int
		code   ErrorCode
	}
	checks := []check{
		{"missing", SigningDual, func() http.Header { return http.Header{} }, body, target, 401, CodeMissingSignature},
		{"tampered body", SigningTimestamp, good, []byte(`{"userId":"u2"}`), target, 403, CodeInvalidSignature},
		{"tampered query (v1 ok: v1 does not sign the path)", SigningTimestamp, good, body, "/v1/billing/check-sufficient?x=2", 0, ""},
		{"tampered query, v2 only", SigningDual, func() http.Header { h := good(); h.Set(HeaderSignature, "00"); return h }, body, "/v1/billing/check-sufficient?x=2", 403, CodeInvalidSignature},
		{"stale", SigningDual, func() http.Header { h := good(); h.Set(HeaderTimestamp, "1799999000"); return h }, body, target, 408, CodeTimestampOutOfRange},
		{"no timestamp", SigningTimestamp, func() http.Header { h := good(); h.Del(HeaderTimestamp); return h }, body, target, 408, CodeTimestampOutOfRange},
		{"not hex", SigningBodyPath, func() http.Header { return http.Header{HeaderSignature: {"zz"}} }, body, target, 403, CodeInvalidSignature},
		{"short signature", SigningBodyPath, func() http.Header {
			return http.Header{HeaderSignature: {signBodyPath(newMACKey([]byte(secret)), body, target)[:62]}}
		}, body, target, 403, CodeInvalidSignature},
		{"body-path good", SigningBodyPath, func() http.Header {
			return http.Header{HeaderSignature: {signBodyPath(newMACKey([]byte(secret)), body, target)}}
		}, body, target, 0, ""},
		{"body-path tampered path", SigningBodyPath, func() http.Header {
			return http.Header{HeaderSignature: {signBodyPath(newMACKey([]byte(secret)), body, target)}}
		}, body, "/v1/billing/check-sufficient?x=1&userId=other", 403, CodeInvalidSignature},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			v := &Verifier{Secret: secret, Scheme: c.scheme, Now: func() time.Time { return now }}
			err := v.Verify("POST", c.target, c.header(), c.body)
			if c.status == 0 {
				if err != nil {
					t.Fatalf("want accepted, got %v", err)
				}
				return
			}
			var ae *AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("want *AuthError, got %T %v", err, err)
			}
			if ae.StatusCode != c.status || ae.Code != c.code {
				t.Fatalf("got %d %s, want %d %s", ae.StatusCode, ae.Code, c.status, c.code)
			}
			if !errors.Is(err, ErrUnauthorized) {
				t.Fatal("auth failures match ErrUnauthorized")
			}
		})
	}
}

func TestVerifierRefusesReplayEvenAfterBadSignature(t *testing.T) {
	const secret = "verifier-secret-0123456789abcdef0123"
	now := time.Unix(1_800_000_000, 0)
	v := &Verifier{Secret: secret, Scheme: SigningDual, Now: func() time.Time { return now }}
	ts := "1800000000"
	h := http.Header{HeaderTimestamp: {ts}, HeaderNonce: {"abc"}, HeaderSignature: {strings.Repeat("1", 64)}}
	var ae *AuthError
	if err := v.Verify("GET", "/v1/x", h, nil); !errors.As(err, &ae) || ae.Code != CodeInvalidSignature {
		t.Fatalf("first: %v", err)
	}
	h.Set(HeaderSignature, signTimestamp(newMACKey([]byte(secret)), ts, nil))
	if err := v.Verify("GET", "/v1/x", h, nil); !errors.As(err, &ae) || ae.StatusCode != 409 || ae.Code != CodeReplayAttackDetected {
		t.Fatalf("a burnt nonce must be refused as a replay, got %v", err)
	}
}

func TestVerifierSecretV2(t *testing.T) {
	const s1, s2 = "first-secret-0123456789abcdef01234567", "second-secret-0123456789abcdef0123456"
	now := time.Unix(1_800_000_000, 0)
	ts := "1800000000"
	h := http.Header{HeaderTimestamp: {ts}, HeaderNonce: {"n"}, HeaderSignature: {"00"}, HeaderSignatureV2: {signV2(newMACKey([]byte(s2)), "GET", "/v1/x", ts, "n", nil)}}
	v := &Verifier{Secret: s1, SecretV2: s2, Scheme: SigningDual, Now: func() time.Time { return now }}
	if err := v.Verify("GET", "/v1/x", h, nil); err != nil {
		t.Fatalf("v2 signed with the v2 secret: %v", err)
	}
}

func TestMemoryNonceStoreBoundedAndExpiring(t *testing.T) {
	s := NewMemoryNonceStore(time.Minute, 3)
	t0 := time.Unix(0, 0)
	for i, n := range []string{"a", "b", "c", "d"} {
		if s.Seen(n, t0.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("%s seen too early", n)
		}
	}
	if s.Len() != 3 {
		t.Fatalf("store holds %d, want its bound 3", s.Len())
	}
	if !s.Seen("d", t0.Add(5*time.Second)) {
		t.Fatal("d was just used")
	}
	if s.Seen("d", t0.Add(2*time.Minute)) {
		t.Fatal("a nonce older than the ttl is forgotten")
	}
}

// The client signs every attempt afresh, and what it sends verifies with the
// Verifier under every scheme.
func TestClientSignaturesVerify(t *testing.T) {
	for _, scheme := range []Signing{SigningBodyPath, SigningTimestamp, SigningDual} {
		t.Run(scheme.String(), func(t *testing.T) {
			ver := &Verifier{Secret: testSecret, Scheme: scheme}
			var mu sync.Mutex
			var nonces []string
			rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				body, _ := io.ReadAll(r.Body)
				mu.Lock()
				nonces = append(nonces, r.Header.Get(HeaderNonce))
				mu.Unlock()
				if err := ver.VerifyRequest(r, body); err != nil {
					return jsonResponse(r, 403, `{"code":"INVALID_SIGNATURE","error":"bad"}`), nil
				}
				if len(nonces) < 3 {
					return jsonResponse(r, 503, `{"error":"busy"}`), nil
				}
				return jsonResponse(r, 200, `{"ok":true}`), nil
			})
			c := newTestClient(t, rt, WithSigning(scheme))
			var out struct{ OK bool }
			err := c.Do(context.Background(), "POST", "/v1/projects/p%20q/versions?userId=a%20b~c&state=un+published&Zeta=1&alpha=2", map[string]string{"prompt": "<b>&</b>"}, &out, WithIdempotencyKey("sig-test"))
			if err != nil || !out.OK {
				t.Fatalf("Do: %v (out %+v)", err, out)
			}
			if len(nonces) != 3 {
				t.Fatalf("%d attempts, want 3", len(nonces))
			}
			if scheme != SigningBodyPath && (nonces[0] == nonces[1] || nonces[1] == nonces[2] || nonces[0] == "") {
				t.Fatalf("every attempt needs a fresh nonce, got %q", nonces)
			}
		})
	}
}
