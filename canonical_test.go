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
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sheenapps/sheen-go/internal/signing"
)

// wireVectors is ../shared/spec/wire-vectors.json: canonical strings and
// signatures made by the deployed worker's own code.
type wireVectors struct {
	CanonicalV2 struct {
		Cases []struct {
			Name      string `json:"name"`
			Method    string `json:"method"`
			Target    string `json:"target"`
			Timestamp string `json:"timestamp"`
			Nonce     string `json:"nonce"`
			Body      string `json:"body"`
			Secret    string `json:"secret"`
			Canonical string `json:"canonical"`
			SigV2     string `json:"sig_v2"`
			SigV1     string `json:"sig_v1"`
		} `json:"cases"`
	} `json:"canonical_v2"`
	Stringify struct {
		Cases []struct {
			Name   string `json:"name"`
			Input  string `json:"input"`
			Output string `json:"output"`
		} `json:"cases"`
	} `json:"stringify"`
	Payload struct {
		Cases []struct {
			Name            string  `json:"name"`
			Method          string  `json:"method"`
			ContentType     *string `json:"content_type"`
			RawBody         *string `json:"raw_body"`
			SignedPayload   string  `json:"signed_payload"`
			InlineV1Payload string  `json:"inline_v1_payload"`
		} `json:"cases"`
	} `json:"payload"`
}

func loadWireVectors(t *testing.T) wireVectors {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "wire-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v wireVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.CanonicalV2.Cases) == 0 || len(v.Stringify.Cases) == 0 || len(v.Payload.Cases) == 0 {
		t.Fatal("wire vectors: a section is empty")
	}
	return v
}

func TestWireVectorsInSyncWithSpec(t *testing.T) {
	spec, err := os.ReadFile(filepath.Join("..", "shared", "spec", "wire-vectors.json"))
	if errors.Is(err, os.ErrNotExist) {
		t.Log("../shared/spec not beside the repo; nothing to compare")
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	ours, err := os.ReadFile(filepath.Join("testdata", "wire-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(spec, ours) {
		t.Fatal("testdata/wire-vectors.json differs from ../shared/spec/wire-vectors.json: copy the spec's file over")
	}
}

// Every canonical string and signature the worker's own code made is
// reproduced, and the Verifier (which sheentest and the middleware use)
// accepts each request under the dual scheme, by its v1 and by its v2
// signature alone.
func TestWireVectorsCanonicalV2(t *testing.T) {
	for _, tc := range loadWireVectors(t).CanonicalV2.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			body := []byte(tc.Body)
			if got := signing.CanonicalV2(tc.Method, tc.Target, tc.Timestamp, tc.Nonce, body); got != tc.Canonical {
				t.Errorf("canonical:\n%s", cmp.Diff(tc.Canonical, got))
			}
			key := signing.NewKey([]byte(tc.Secret))
			if got := signing.SignV2(key, tc.Method, tc.Target, tc.Timestamp, tc.Nonce, body); got != tc.SigV2 {
				t.Errorf("v2 signature = %s, want %s", got, tc.SigV2)
			}
			if got := signing.SignTimestamp(key, tc.Timestamp, body); got != tc.SigV1 {
				t.Errorf("v1 signature = %s, want %s", got, tc.SigV1)
			}
			at, _ := signing.ParseUnixSeconds(tc.Timestamp)
			if len(tc.Secret) < MinSecretLength {
				// The worker's own code signs with any secret; the Verifier
				// refuses to run with one this short.
				ver := &testVerifier{Secret: tc.Secret, Scheme: SigningDual}
				if err := ver.Verify(tc.Method, tc.Target, http.Header{}, body); err == nil || errors.As(err, new(*AuthError)) {
					t.Errorf("a Verifier with a %d-byte secret ran: %v", len(tc.Secret), err)
				}
				return
			}
			// v2 alone passes a dual Verifier when it comes with its nonce
			// (the deployed worker after its rollout window); v1 alone, and
			// v2 without a nonce, pass only with AcceptV1 (during it).
			for _, c := range []struct {
				name     string
				h        http.Header
				strictOK bool
			}{
				{"v2 only", http.Header{HeaderSignature: {zeroSig}, HeaderSignatureV2: {tc.SigV2}, HeaderTimestamp: {tc.Timestamp}, HeaderNonce: {tc.Nonce}}, tc.Nonce != ""},
				{"v1 only", http.Header{HeaderSignature: {tc.SigV1}, HeaderTimestamp: {tc.Timestamp}, HeaderNonce: {tc.Nonce}}, false},
			} {
				c.h.Set("Content-Type", "application/json")
				for _, acceptV1 := range []bool{false, true} {
					ver := &testVerifier{Secret: tc.Secret, Scheme: SigningDual, AcceptV1: acceptV1, Now: func() time.Time { return at }}
					err := ver.Verify(tc.Method, tc.Target, c.h.Clone(), body)
					if want := acceptV1 || c.strictOK; (err == nil) != want {
						t.Errorf("%s, AcceptV1=%v: %v, want accepted=%v", c.name, acceptV1, err, want)
					}
				}
			}
		})
	}
}

const zeroSig = "0000000000000000000000000000000000000000000000000000000000000000"

// The signer signs, and the Verifier checks, the payload the deployed
// worker's middleware signs for each body: nothing for GET, DELETE and falsy
// JSON, the text of a JSON string, the raw bytes otherwise.
func TestWireVectorsPayload(t *testing.T) {
	at := time.Unix(1767225600, 0)
	for _, tc := range loadWireVectors(t).Payload.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			var body []byte
			if tc.RawBody != nil {
				body = []byte(*tc.RawBody)
			}
			h := http.Header{}
			if tc.ContentType != nil {
				h.Set("Content-Type", *tc.ContentType)
			}
			s := newSigner(SigningDual, false, testSecret, "", newFakeClock(at), nil)
			if err := s.sign(h, tc.Method, "/v1/x", body); err != nil {
				t.Fatal(err)
			}
			key := signing.NewKey([]byte(testSecret))
			if got, want := h.Get(HeaderSignature), signing.SignTimestamp(key, "1767225600", []byte(tc.SignedPayload)); got != want {
				t.Errorf("v1 signed over another payload than %q", tc.SignedPayload)
			}
			ver := &testVerifier{Secret: testSecret, Scheme: SigningDual, Now: func() time.Time { return at }}
			if err := ver.Verify(tc.Method, "/v1/x", h, body); err != nil {
				t.Errorf("Verifier: %v", err)
			}
		})
	}
}

// Bodies given to Do as raw JSON go out in the form JSON.stringify writes
// back: every stringify vector's input is sent as its output.
func TestWireVectorsStringifyThroughDo(t *testing.T) {
	var sent []byte
	c := newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent, _ = io.ReadAll(r.Body)
		return jsonResponse(r, 200, `{}`), nil
	}))
	for _, tc := range loadWireVectors(t).Stringify.Cases {
		if err := c.Do(context.Background(), "POST", "/v1/versions/rollback", json.RawMessage(tc.Input), nil, WithIdempotencyKey("k")); err != nil {
			t.Fatalf("%s: %v", tc.Name, err)
		}
		if string(sent) != tc.Output {
			t.Errorf("%s: sent %q, want %q", tc.Name, sent, tc.Output)
		}
	}
}
