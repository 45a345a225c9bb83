package sheen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sheenapps/sheen-go/internal/signing"
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
			if got := signing.SignBodyPath(signing.NewKey(secret), body, tc.Path); got != tc.SeedV21Signature {
				t.Errorf("v2.1 signature = %s, want %s", got, tc.SeedV21Signature)
			}
			if got := signing.SignTimestamp(signing.NewKey(secret), tc.Timestamp, body); got != tc.V1Signature {
				t.Errorf("v1 signature = %s, want %s", got, tc.V1Signature)
			}
			if got := signing.CanonicalV2(tc.Method, tc.Path, tc.Timestamp, tc.Nonce, body); got != tc.V2Canonical {
				t.Errorf("v2 canonical:\n%s", cmp.Diff(tc.V2Canonical, got))
			}
			if got := signing.SignV2(signing.NewKey(secret), tc.Method, tc.Path, tc.Timestamp, tc.Nonce, body); got != tc.V2Signature {
				t.Errorf("v2 signature = %s, want %s", got, tc.V2Signature)
			}
		})
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
		if got := signing.CanonicalPath(tc.in); got != tc.want {
			t.Errorf("signing.CanonicalPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzCanonicalPath(f *testing.F) {
	f.Add("/v1/projects/p1/versions?state=all&offset=20&limit=10&includePatches=true&Zeta=1&alpha=2")
	f.Add("/v1/projects/p%20q/versions?userId=a%20b~c&state=un+published")
	f.Add("/a?%=&=%&&")
	f.Fuzz(func(t *testing.T, target string) {
		c := signing.CanonicalPath(target)
		// Canonicalising is idempotent: the canonical query is already sorted
		// and form-encoded.
		if again := signing.CanonicalPath(c); again != c {
			t.Fatalf("not idempotent: %q -> %q -> %q", target, c, again)
		}
	})
}

// The client signs every attempt afresh, and what it sends verifies with the
// Verifier under every scheme.
func TestClientSignaturesVerify(t *testing.T) {
	for _, scheme := range []Signing{SigningBodyPath, SigningTimestamp, SigningDual} {
		t.Run(scheme.String(), func(t *testing.T) {
			ver := &testVerifier{Secret: testSecret, Scheme: scheme}
			var mu sync.Mutex
			var nonces []string
			rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				mu.Lock()
				nonces = append(nonces, r.Header.Get(HeaderNonce))
				mu.Unlock()
				if _, err := ver.VerifyRequest(r); err != nil {
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
