package sheenhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/signing"
)

// Inbound verification as a Go service receiving signed requests meets it.

const mwSecret = "inbound-secret-0123456789abcdef0123456"

// mwSigned makes a request the way a WorkerClient signs it with the given
// scheme (its clock at now), as it arrives at a server.
func mwSigned(t *testing.T, scheme sheen.Signing, now time.Time, method, target string, body []byte) *http.Request {
	t.Helper()
	var got *http.Request
	var gotBody []byte
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		got = r
		if r.Body != nil {
			gotBody, _ = io.ReadAll(r.Body)
		}
		return &http.Response{StatusCode: 204, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
	})
	c, err := sheen.NewWorkerClient(sheen.WithBaseURL("https://worker.test"), sheen.WithSecret(mwSecret), sheen.WithSigning(scheme),
		sheen.WithHTTPClient(&http.Client{Transport: rt}), sheen.WithClock(newFakeClock(now)), sheen.WithRateLimit(60_000))
	if err != nil {
		t.Fatal(err)
	}
	var in any
	if body != nil {
		in = body
	}
	if err := c.Do(context.Background(), method, target, in, nil); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(method, got.URL.RequestURI(), bytes.NewReader(gotBody))
	if gotBody == nil {
		r = httptest.NewRequest(method, got.URL.RequestURI(), nil)
	}
	r.Header = got.Header.Clone()
	return r
}

type mwResult struct {
	status  int
	body    map[string]any
	reached bool
	got     []byte // the body the handler read
}

// mwServe runs r through ver.Middleware in front of a handler that reads
// the body.
func mwServe(t *testing.T, ver *Verifier, r *http.Request) mwResult {
	t.Helper()
	var res mwResult
	h := ver.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res.reached = true
		res.got, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	res.status = rec.Code
	if rec.Body.Len() > 0 {
		if err := json.Unmarshal(rec.Body.Bytes(), &res.body); err != nil {
			t.Fatalf("error body %q: %v", rec.Body, err)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("error Content-Type %q", ct)
		}
	}
	return res
}

// Every vector of the deployed worker's signing code passes the middleware
// under its scheme, and the handler reads the body it was signed over.
func TestVerifierMiddlewareVectors(t *testing.T) {
	v := loadVectors(t)
	for _, tc := range v.Cases {
		at, _ := signing.ParseUnixSeconds(tc.Timestamp)
		now := func() time.Time { return at.Add(-90 * time.Second) }
		type variant struct {
			scheme    sheen.Signing
			requireV2 bool
			h         http.Header
		}
		for _, vr := range []variant{
			{sheen.SigningBodyPath, false, http.Header{sheen.HeaderSignature: {tc.SeedV21Signature}}},
			{sheen.SigningTimestamp, false, http.Header{sheen.HeaderSignature: {tc.V1Signature}, sheen.HeaderTimestamp: {tc.Timestamp}}},
			{sheen.SigningDual, false, http.Header{sheen.HeaderSignature: {tc.V1Signature}, sheen.HeaderSignatureV2: {tc.V2Signature}, sheen.HeaderTimestamp: {tc.Timestamp}, sheen.HeaderNonce: {tc.Nonce}}},
			{sheen.SigningDual, true, http.Header{sheen.HeaderSignature: {tc.V1Signature}, sheen.HeaderSignatureV2: {tc.V2Signature}, sheen.HeaderTimestamp: {tc.Timestamp}, sheen.HeaderNonce: {tc.Nonce}}},
		} {
			if vr.requireV2 && tc.Nonce == "" {
				continue // v2 without a nonce is refused unless AcceptV1
			}
			ver := &Verifier{Secret: v.Secret, Scheme: vr.scheme, AcceptV1: vr.scheme == sheen.SigningDual && !vr.requireV2, Now: now}
			r := httptest.NewRequest(tc.Method, tc.Path, strings.NewReader(tc.Body))
			r.Header = vr.h
			res := mwServe(t, ver, r)
			if res.status != http.StatusNoContent || string(res.got) != tc.Body {
				t.Errorf("%s/%v requireV2=%v: %d %v, handler read %q", tc.Name, vr.scheme, vr.requireV2, res.status, res.body, res.got)
			}
		}
	}
}

// Refusals answer with the deployed worker's statuses and codes, and the
// handler never runs.
func TestVerifierMiddlewareRefusals(t *testing.T) {
	now := time.Now()
	body := []byte(`{"buildId":"b1","status":"completed"}`)
	const target = "/v1/hooks/build?attempt=1&b=2"
	tamper := func(f func(r *http.Request) *http.Request) func(*http.Request) *http.Request { return f }
	withTarget := func(newTarget string) func(*http.Request) *http.Request {
		return tamper(func(r *http.Request) *http.Request {
			b, _ := io.ReadAll(r.Body)
			n := httptest.NewRequest(r.Method, newTarget, bytes.NewReader(b))
			n.Header = r.Header
			return n
		})
	}
	withBody := func(nb string) func(*http.Request) *http.Request {
		return tamper(func(r *http.Request) *http.Request {
			n := httptest.NewRequest(r.Method, r.RequestURI, strings.NewReader(nb))
			n.Header = r.Header
			return n
		})
	}
	tests := []struct {
		name      string
		scheme    sheen.Signing
		requireV2 bool
		signedAt  time.Time
		change    func(*http.Request) *http.Request
		want      int
		code      sheen.ErrorCode
	}{
		{"untouched bodypath", sheen.SigningBodyPath, false, now, nil, 204, ""},
		{"untouched timestamp", sheen.SigningTimestamp, false, now, nil, 204, ""},
		{"untouched dual", sheen.SigningDual, false, now, nil, 204, ""},
		{"untouched dual, v2 required", sheen.SigningDual, true, now, nil, 204, ""},

		{"no signature", sheen.SigningBodyPath, false, now, tamper(func(r *http.Request) *http.Request { r.Header.Del(sheen.HeaderSignature); return r }), 401, sheen.CodeMissingSignature},
		{"no signatures, dual", sheen.SigningDual, false, now, tamper(func(r *http.Request) *http.Request {
			r.Header.Del(sheen.HeaderSignature)
			r.Header.Del(sheen.HeaderSignatureV2)
			return r
		}), 401, sheen.CodeMissingSignature},

		{"tampered body, bodypath", sheen.SigningBodyPath, false, now, withBody(`{"buildId":"b2","status":"completed"}`), 403, sheen.CodeInvalidSignature},
		{"tampered body, timestamp", sheen.SigningTimestamp, false, now, withBody(`{"buildId":"b2","status":"completed"}`), 403, sheen.CodeInvalidSignature},
		{"tampered body, dual", sheen.SigningDual, false, now, withBody(`{"buildId":"b2","status":"completed"}`), 403, sheen.CodeInvalidSignature},
		{"tampered path, bodypath", sheen.SigningBodyPath, false, now, withTarget("/v1/hooks/admin?attempt=1&b=2"), 403, sheen.CodeInvalidSignature},
		{"tampered query, bodypath", sheen.SigningBodyPath, false, now, withTarget("/v1/hooks/build?attempt=2&b=2"), 403, sheen.CodeInvalidSignature},
		{"tampered path, dual with v2 required", sheen.SigningDual, true, now, withTarget("/v1/hooks/admin?attempt=1&b=2"), 403, sheen.CodeInvalidSignature},
		{"tampered query, dual with v2 required", sheen.SigningDual, true, now, withTarget("/v1/hooks/build?attempt=1&b=3"), 403, sheen.CodeInvalidSignature},
		// v1 signs timestamp + body only: as on the deployed worker, a
		// request whose v1 signature holds passes whatever its path.
		{"tampered path, dual (v1 still valid)", sheen.SigningDual, false, now, withTarget("/v1/hooks/admin?attempt=1&b=2"), 204, ""},
		{"v1 only, dual with v2 required", sheen.SigningDual, true, now, tamper(func(r *http.Request) *http.Request { r.Header.Del(sheen.HeaderSignatureV2); return r }), 403, sheen.CodeInvalidSignature},
		{"garbage signature", sheen.SigningBodyPath, false, now, tamper(func(r *http.Request) *http.Request {
			r.Header.Set(sheen.HeaderSignature, "zz"+r.Header.Get(sheen.HeaderSignature)[2:])
			return r
		}), 403, sheen.CodeInvalidSignature},
		{"short signature", sheen.SigningBodyPath, false, now, tamper(func(r *http.Request) *http.Request {
			r.Header.Set(sheen.HeaderSignature, r.Header.Get(sheen.HeaderSignature)[:32])
			return r
		}), 403, sheen.CodeInvalidSignature},

		{"stale timestamp", sheen.SigningTimestamp, false, now.Add(-5 * time.Minute), nil, 408, sheen.CodeTimestampOutOfRange},
		{"future timestamp, dual", sheen.SigningDual, false, now.Add(5 * time.Minute), nil, 408, sheen.CodeTimestampOutOfRange},
		{"no timestamp", sheen.SigningDual, false, now, tamper(func(r *http.Request) *http.Request { r.Header.Del(sheen.HeaderTimestamp); return r }), 408, sheen.CodeTimestampOutOfRange},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mwSigned(t, tc.scheme, tc.signedAt, "POST", target, body)
			if tc.change != nil {
				r = tc.change(r)
			}
			ver := &Verifier{Secret: mwSecret, Scheme: tc.scheme, AcceptV1: tc.scheme == sheen.SigningDual && !tc.requireV2, Now: func() time.Time { return now }}
			res := mwServe(t, ver, r)
			if res.status != tc.want {
				t.Fatalf("status %d %v, want %d", res.status, res.body, tc.want)
			}
			if tc.want == 204 {
				if !res.reached || !bytes.Equal(res.got, body) && tc.change == nil {
					t.Errorf("handler reached %v, read %q", res.reached, res.got)
				}
				return
			}
			if res.reached {
				t.Error("the handler ran")
			}
			if res.body["code"] != string(tc.code) || res.body["error"] == "" {
				t.Errorf("body %v, want code %s", res.body, tc.code)
			}
			if tc.want == 408 && res.body["serverTime"] != float64(now.Unix()) {
				t.Errorf("serverTime %v, want %d", res.body["serverTime"], now.Unix())
			}
		})
	}
}

// A replayed request is refused with 409 under the timestamped schemes; the
// first one passes.
func TestVerifierMiddlewareReplay(t *testing.T) {
	for _, scheme := range []sheen.Signing{sheen.SigningTimestamp, sheen.SigningDual} {
		t.Run(scheme.String(), func(t *testing.T) {
			ver := &Verifier{Secret: mwSecret, Scheme: scheme}
			orig := mwSigned(t, scheme, time.Now(), "POST", "/v1/hooks/build", []byte(`{"a":1}`))
			replay := httptest.NewRequest("POST", orig.RequestURI, strings.NewReader(`{"a":1}`))
			replay.Header = orig.Header.Clone()
			if res := mwServe(t, ver, orig); res.status != 204 {
				t.Fatalf("first: %d %v", res.status, res.body)
			}
			res := mwServe(t, ver, replay)
			if res.status != 409 || res.body["code"] != string(sheen.CodeReplayAttackDetected) || res.reached {
				t.Errorf("replay: %d %v reached=%v", res.status, res.body, res.reached)
			}
		})
	}
}

// A NonceStore of one's own is used; here one shared by two middlewares, as
// two instances of a service would share one.
func TestVerifierMiddlewareSharedNonceStore(t *testing.T) {
	store := &countingNonces{inner: NewMemoryNonceStore(sheen.DefaultNonceTTL, 10)}
	a := &Verifier{Secret: mwSecret, Scheme: sheen.SigningDual, Nonces: store}
	b := &Verifier{Secret: mwSecret, Scheme: sheen.SigningDual, Nonces: store}
	orig := mwSigned(t, sheen.SigningDual, time.Now(), "GET", "/v1/hooks/ping", nil)
	replay := httptest.NewRequest("GET", orig.RequestURI, nil)
	replay.Header = orig.Header.Clone()
	if res := mwServe(t, a, orig); res.status != 204 {
		t.Fatalf("first: %d", res.status)
	}
	if res := mwServe(t, b, replay); res.status != 409 {
		t.Errorf("replay on the other instance: %d", res.status)
	}
	if store.calls() != 2 {
		t.Errorf("store asked %d times, want 2", store.calls())
	}
}

type countingNonces struct {
	mu    sync.Mutex
	n     int
	inner NonceStore
}

func (c *countingNonces) Seen(nonce string, now time.Time) bool {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.inner.Seen(nonce, now)
}

func (c *countingNonces) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Bodies over MaxBody answer 413 in the web framework's shape before any
// signature check, whether announced by Content-Length or not.
func TestVerifierMiddlewareOversizedBody(t *testing.T) {
	ver := &Verifier{Secret: mwSecret, MaxBody: 1024}
	big := bytes.Repeat([]byte("a"), 1025)
	r := mwSigned(t, sheen.SigningBodyPath, time.Now(), "POST", "/v1/hooks/big", big)
	want := map[string]any{"statusCode": 413.0, "code": string(sheen.CodeBodyTooLarge), "error": "Payload Too Large", "message": "Request body is too large"}
	if res := mwServe(t, ver, r); res.status != 413 || res.reached || !cmp.Equal(res.body, want) {
		t.Errorf("with Content-Length: %d %v reached=%v", res.status, res.body, res.reached)
	}
	r = mwSigned(t, sheen.SigningBodyPath, time.Now(), "POST", "/v1/hooks/big", big)
	r.ContentLength = -1
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(big[:10]), bytes.NewReader(big[10:])))
	if res := mwServe(t, ver, r); res.status != 413 || res.reached {
		t.Errorf("chunked: %d %v reached=%v", res.status, res.body, res.reached)
	}
	// Exactly the cap passes.
	r = mwSigned(t, sheen.SigningBodyPath, time.Now(), "POST", "/v1/hooks/big", big[:1024])
	if res := mwServe(t, ver, r); res.status != 204 || len(res.got) != 1024 {
		t.Errorf("at the cap: %d, handler read %d bytes", res.status, len(res.got))
	}
	// The default cap is the worker's 1 MiB.
	r = mwSigned(t, sheen.SigningBodyPath, time.Now(), "POST", "/v1/hooks/big", bytes.Repeat([]byte("a"), sheen.MaxRequestBody))
	r.Body = io.NopCloser(io.MultiReader(r.Body, strings.NewReader("b")))
	r.ContentLength = -1
	if res := mwServe(t, &Verifier{Secret: mwSecret}, r); res.status != 413 {
		t.Errorf("over 1 MiB by default: %d", res.status)
	}
}

// VerifyRequest returns the body, leaves it readable in r.Body, and
// fails with typed errors.
func TestVerifierVerifyRequest(t *testing.T) {
	ver := &Verifier{Secret: mwSecret, Scheme: sheen.SigningDual, MaxBody: 64}
	body := []byte(`{"event":"build.completed"}`)
	r := mwSigned(t, sheen.SigningDual, time.Now(), "POST", "/v1/hooks/x", body)
	got, err := ver.VerifyRequest(r)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("got %q, %v", got, err)
	}
	again, _ := io.ReadAll(r.Body)
	if !bytes.Equal(again, body) || r.ContentLength != int64(len(body)) {
		t.Errorf("r.Body afterwards %q, ContentLength %d", again, r.ContentLength)
	}

	r = mwSigned(t, sheen.SigningDual, time.Now(), "POST", "/v1/hooks/x", body)
	r.Header.Set(sheen.HeaderSignature, strings.Repeat("0", 64))
	r.Header.Set(sheen.HeaderSignatureV2, strings.Repeat("0", 64))
	_, err = ver.VerifyRequest(r)
	var ae *sheen.AuthError
	if !errors.As(err, &ae) || ae.StatusCode != 403 || ae.Code != sheen.CodeInvalidSignature || !errors.Is(err, sheen.ErrUnauthorized) {
		t.Errorf("bad signature: %v", err)
	}
	if strings.Contains(err.Error(), mwSecret) {
		t.Error("the error holds the secret")
	}

	r = mwSigned(t, sheen.SigningDual, time.Now(), "POST", "/v1/hooks/x", bytes.Repeat([]byte("a"), 65))
	_, err = ver.VerifyRequest(r)
	var pe *sheen.PayloadTooLargeError
	if !errors.As(err, &pe) || pe.Limit != 64 || !errors.Is(err, sheen.ErrPayloadTooLarge) {
		t.Errorf("oversized: %v", err)
	}
}

// A WorkerClient's requests pass a service that verifies them, under every
// scheme, mounted below a prefix that http.StripPrefix removes: the target
// verified is the one on the wire.
func TestVerifierMiddlewareAcceptsClientRequests(t *testing.T) {
	for _, scheme := range []sheen.Signing{sheen.SigningBodyPath, sheen.SigningTimestamp, sheen.SigningDual} {
		t.Run(scheme.String(), func(t *testing.T) {
			ver := &Verifier{Secret: mwSecret, SecretV2: mwSecret + "-v2", Scheme: scheme}
			var seen []string
			var mu sync.Mutex
			mux := http.NewServeMux()
			mux.Handle("/hooks/", http.StripPrefix("/hooks", ver.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				seen = append(seen, r.Method+" "+r.URL.Path+" "+string(b))
				mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"ok":true}`)
			}))))
			srv := httptest.NewServer(mux)
			defer srv.Close()
			c, err := sheen.NewWorkerClient(sheen.WithBaseURL(srv.URL+"/hooks"), sheen.WithSecret(mwSecret), sheen.WithSecretV2(mwSecret+"-v2"), sheen.WithSigning(scheme))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			var out map[string]any
			if err := c.Do(ctx, "POST", "/v1/builds/"+pathEscapeForTest("b 1/é")+"/done?Zeta=1&alpha=a+b&includePatches=true", map[string]any{"prompt": "<b>&</b>", "n": 1}, &out); err != nil {
				t.Fatal(err)
			}
			if err := c.Do(ctx, "GET", "/v1/ping?x=%7E~", nil, &out); err != nil {
				t.Fatal(err)
			}
			want := []string{`POST /v1/builds/b 1_é/done {"n":1,"prompt":"<b>&</b>"}`, "GET /v1/ping "}
			if !cmp.Equal(seen, want) {
				t.Error(cmp.Diff(want, seen))
			}
		})
	}
}

func pathEscapeForTest(s string) string {
	e, _ := escapeID("id", strings.ReplaceAll(s, "/", "_"))
	return e
}

// A misconfigured Verifier refuses every request with a plain error that
// does not hold the secret, and its middleware answers 500 without calling
// the handler.
func TestVerifierConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		ver  *Verifier
	}{
		{"nil", nil},
		{"short secret", &Verifier{Secret: "short"}},
		{"short v2 secret", &Verifier{Secret: mwSecret, SecretV2: "short"}},
		{"unknown scheme", &Verifier{Secret: mwSecret, Scheme: sheen.Signing(9)}},
		{"AcceptV1 without dual", &Verifier{Secret: mwSecret, AcceptV1: true}},
		{"AcceptV1 with timestamp", &Verifier{Secret: mwSecret, Scheme: sheen.SigningTimestamp, AcceptV1: true}},
		{"negative MaxBody", &Verifier{Secret: mwSecret, MaxBody: -1}},
		{"negative Skew", &Verifier{Secret: mwSecret, Scheme: sheen.SigningDual, Skew: -time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mwSigned(t, sheen.SigningBodyPath, time.Now(), "POST", "/v1/hooks/x", []byte(`{"a":1}`))
			_, err := tc.ver.VerifyRequest(r)
			if err == nil || errors.As(err, new(*sheen.AuthError)) {
				t.Fatalf("VerifyRequest: %v, want a plain error", err)
			}
			if tc.ver != nil && strings.Contains(err.Error(), tc.ver.Secret) {
				t.Errorf("the error holds the secret: %v", err)
			}
			if err := tc.ver.Verify("GET", "/v1/x", http.Header{sheen.HeaderSignature: {zeroSig}}, nil); err == nil || errors.As(err, new(*sheen.AuthError)) {
				t.Errorf("Verify: %v, want a plain error", err)
			}
			r = mwSigned(t, sheen.SigningBodyPath, time.Now(), "POST", "/v1/hooks/x", []byte(`{"a":1}`))
			res := mwServe(t, tc.ver, r)
			if res.status != http.StatusInternalServerError || res.reached || res.body["code"] != string(codeInternal) {
				t.Errorf("Middleware: %d %v, reached=%v", res.status, res.body, res.reached)
			}
			if tc.ver != nil && strings.Contains(fmt.Sprint(res.body), tc.ver.Secret) {
				t.Error("the answer holds the secret")
			}
		})
	}
}

// By default a dual-scheme middleware needs the v2 signature: a request
// whose v2 signature was stripped (so only v1, which covers neither path nor
// nonce, is valid) is refused, unless AcceptV1 says the sender cannot do v2.
func TestVerifierMiddlewareDualNeedsV2ByDefault(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"event":"build.completed"}`)
	for _, acceptV1 := range []bool{false, true} {
		r := mwSigned(t, sheen.SigningDual, now, "POST", "/hooks/worker", body)
		r.Header.Del(sheen.HeaderSignatureV2)
		res := mwServe(t, &Verifier{Secret: mwSecret, Scheme: sheen.SigningDual, AcceptV1: acceptV1, Now: func() time.Time { return now }}, r)
		switch {
		case !acceptV1 && (res.reached || res.status != http.StatusForbidden):
			t.Errorf("default: a v1-only request got %d and reached the handler: %v", res.status, res.reached)
		case acceptV1 && !res.reached:
			t.Errorf("AcceptV1: a v1-only request was refused with %d", res.status)
		}
	}
}

// Each vector also verifies with the Verifier, as the fake worker and the
// inbound middleware use it, under each scheme.
func TestVerifierAcceptsVectors(t *testing.T) {
	v := loadVectors(t)
	for _, tc := range v.Cases {
		at, _ := signing.ParseUnixSeconds(tc.Timestamp)
		now := func() time.Time { return at.Add(30 * time.Second) }
		schemes := map[sheen.Signing]http.Header{
			sheen.SigningBodyPath:  {sheen.HeaderSignature: {tc.SeedV21Signature}},
			sheen.SigningTimestamp: {sheen.HeaderSignature: {tc.V1Signature}, sheen.HeaderTimestamp: {tc.Timestamp}},
			// Only v2 valid: the deployed worker lets it through.
			sheen.SigningDual: {sheen.HeaderSignature: {strings.Repeat("0", 64)}, sheen.HeaderSignatureV2: {tc.V2Signature}, sheen.HeaderTimestamp: {tc.Timestamp}, sheen.HeaderNonce: {tc.Nonce}},
		}
		for scheme, h := range schemes {
			// A v2 signature without a nonce passes only during the
			// rollout window, as on the deployed worker.
			acceptV1 := scheme == sheen.SigningDual && tc.Nonce == ""
			ver := &Verifier{Secret: v.Secret, Scheme: scheme, AcceptV1: acceptV1, Now: now}
			if err := ver.Verify(tc.Method, tc.Path, h, []byte(tc.Body)); err != nil {
				t.Errorf("%s/%s: %v", tc.Name, scheme, err)
			}
		}
	}
}

func TestVerifierFailures(t *testing.T) {
	const secret = "verifier-secret-0123456789abcdef0123"
	now := time.Unix(1_800_000_000, 0)
	ts := "1800000000"
	body := []byte(`{"userId":"u1"}`)
	target := "/v1/billing/check-sufficient?x=1"
	good := func() http.Header {
		return http.Header{
			sheen.HeaderTimestamp:   {ts},
			sheen.HeaderNonce:       {"n1"},
			sheen.HeaderSignature:   {signing.SignTimestamp(signing.NewKey([]byte(secret)), ts, body)},
			sheen.HeaderSignatureV2: {signing.SignV2(signing.NewKey([]byte(secret)), "POST", target, ts, "n1", body)},
		}
	}
	type check struct {
		name   string
		scheme sheen.Signing
		header func() http.Header
		body   []byte
		target string
		status int
		code   sheen.ErrorCode
	}
	checks := []check{
		{"missing", sheen.SigningDual, func() http.Header { return http.Header{} }, body, target, 401, sheen.CodeMissingSignature},
		{"tampered body", sheen.SigningTimestamp, good, []byte(`{"userId":"u2"}`), target, 403, sheen.CodeInvalidSignature},
		{"tampered query (v1 ok: v1 does not sign the path)", sheen.SigningTimestamp, good, body, "/v1/billing/check-sufficient?x=2", 0, ""},
		{"tampered query, v2 only", sheen.SigningDual, func() http.Header { h := good(); h.Set(sheen.HeaderSignature, "00"); return h }, body, "/v1/billing/check-sufficient?x=2", 403, sheen.CodeInvalidSignature},
		{"stale", sheen.SigningDual, func() http.Header { h := good(); h.Set(sheen.HeaderTimestamp, "1799999000"); return h }, body, target, 408, sheen.CodeTimestampOutOfRange},
		{"no timestamp", sheen.SigningTimestamp, func() http.Header { h := good(); h.Del(sheen.HeaderTimestamp); return h }, body, target, 408, sheen.CodeTimestampOutOfRange},
		{"not hex", sheen.SigningBodyPath, func() http.Header { return http.Header{sheen.HeaderSignature: {"zz"}} }, body, target, 403, sheen.CodeInvalidSignature},
		{"short signature", sheen.SigningBodyPath, func() http.Header {
			return http.Header{sheen.HeaderSignature: {signing.SignBodyPath(signing.NewKey([]byte(secret)), body, target)[:62]}}
		}, body, target, 403, sheen.CodeInvalidSignature},
		{"body-path good", sheen.SigningBodyPath, func() http.Header {
			return http.Header{sheen.HeaderSignature: {signing.SignBodyPath(signing.NewKey([]byte(secret)), body, target)}}
		}, body, target, 0, ""},
		{"body-path tampered path", sheen.SigningBodyPath, func() http.Header {
			return http.Header{sheen.HeaderSignature: {signing.SignBodyPath(signing.NewKey([]byte(secret)), body, target)}}
		}, body, "/v1/billing/check-sufficient?x=1&userId=other", 403, sheen.CodeInvalidSignature},
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
			var ae *sheen.AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("want *AuthError, got %T %v", err, err)
			}
			if ae.StatusCode != c.status || ae.Code != c.code {
				t.Fatalf("got %d %s, want %d %s", ae.StatusCode, ae.Code, c.status, c.code)
			}
			if !errors.Is(err, sheen.ErrUnauthorized) {
				t.Fatal("auth failures match ErrUnauthorized")
			}
		})
	}
}

func TestVerifierRefusesReplayEvenAfterBadSignature(t *testing.T) {
	const secret = "verifier-secret-0123456789abcdef0123"
	now := time.Unix(1_800_000_000, 0)
	v := &Verifier{Secret: secret, Scheme: sheen.SigningDual, AcceptV1: true, Now: func() time.Time { return now }}
	ts := "1800000000"
	h := http.Header{sheen.HeaderTimestamp: {ts}, sheen.HeaderNonce: {"abc"}, sheen.HeaderSignature: {strings.Repeat("1", 64)}}
	var ae *sheen.AuthError
	if err := v.Verify("GET", "/v1/x", h, nil); !errors.As(err, &ae) || ae.Code != sheen.CodeInvalidSignature {
		t.Fatalf("first: %v", err)
	}
	h.Set(sheen.HeaderSignature, signing.SignTimestamp(signing.NewKey([]byte(secret)), ts, nil))
	if err := v.Verify("GET", "/v1/x", h, nil); !errors.As(err, &ae) || ae.StatusCode != 409 || ae.Code != sheen.CodeReplayAttackDetected {
		t.Fatalf("a burnt nonce must be refused as a replay, got %v", err)
	}
}

func TestVerifierSecretV2(t *testing.T) {
	const s1, s2 = "first-secret-0123456789abcdef01234567", "second-secret-0123456789abcdef0123456"
	now := time.Unix(1_800_000_000, 0)
	ts := "1800000000"
	h := http.Header{sheen.HeaderTimestamp: {ts}, sheen.HeaderNonce: {"n"}, sheen.HeaderSignature: {"00"}, sheen.HeaderSignatureV2: {signing.SignV2(signing.NewKey([]byte(s2)), "GET", "/v1/x", ts, "n", nil)}}
	v := &Verifier{Secret: s1, SecretV2: s2, Scheme: sheen.SigningDual, Now: func() time.Time { return now }}
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

// A zero ttl or max keeps the default, as the zero MemoryNonceStore does:
// a replay is refused for DefaultNonceTTL (it was refused never: every
// nonce expired at once).
func TestNewMemoryNonceStoreZeroMeansDefault(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	for name, s := range map[string]*MemoryNonceStore{"NewMemoryNonceStore(0, 0)": NewMemoryNonceStore(0, 0), "zero value": {}} {
		if s.Seen("n1", t0) {
			t.Fatalf("%s: a new nonce seen", name)
		}
		if !s.Seen("n1", t0) || !s.Seen("n1", t0.Add(sheen.DefaultNonceTTL-time.Second)) {
			t.Errorf("%s: a replay within DefaultNonceTTL passed", name)
		}
		if s.Seen("n1", t0.Add(sheen.DefaultNonceTTL)) {
			t.Errorf("%s: a nonce outlived DefaultNonceTTL", name)
		}
	}
	s := NewMemoryNonceStore(time.Hour, 0)
	for i := range 1000 {
		s.Seen(strconv.Itoa(i), t0)
	}
	if !s.Seen("0", t0) || s.Len() != 1000 {
		t.Errorf("max 0 kept %d nonces and forgot the first; want the default bound (100,000)", s.Len())
	}
}

// A store that would protect nothing is refused: on its own it counts every
// nonce as seen, and a Verifier refuses to run with it, saying why; so does
// a Verifier whose store forgets nonces before their timestamps go stale.
func TestMemoryNonceStoreThatWouldNotProtectIsRefused(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	signedAt := func(nonce string, at time.Time) http.Header {
		ts := strconv.FormatInt(at.Unix(), 10)
		return http.Header{sheen.HeaderTimestamp: {ts}, sheen.HeaderNonce: {nonce},
			sheen.HeaderSignatureV2: {signing.SignV2(signing.NewKey([]byte(testSecret)), "GET", "/v1/x", ts, nonce, nil)}}
	}
	signed := func(nonce string) http.Header { return signedAt(nonce, now) }
	for _, tc := range []struct {
		name  string
		store *MemoryNonceStore
		skew  time.Duration
		want  string
	}{
		{"negative ttl", NewMemoryNonceStore(-time.Second, 10), 0, "ttl -1s is negative"},
		{"negative max", NewMemoryNonceStore(time.Hour, -1), 0, "max -1 is negative"},
		{"ttl under twice the skew", NewMemoryNonceStore(time.Minute, 10), 0, "keeps each nonce for 1m0s, less than twice Skew (4m0s)"},
		{"ttl under twice a longer skew", NewMemoryNonceStore(0, 0), 6 * time.Minute, "keeps each nonce for 10m0s, less than twice Skew (12m0s)"},
		{"nil", nil, 0, "nil *MemoryNonceStore"},
	} {
		if tc.store != nil && tc.store.err != nil && !tc.store.Seen("fresh", now) {
			t.Errorf("%s: the store let a new nonce through; want every nonce counted as seen", tc.name)
		}
		v := &Verifier{Secret: testSecret, Scheme: sheen.SigningDual, Skew: tc.skew, Nonces: tc.store, Now: func() time.Time { return now }}
		err := v.Verify("GET", "/v1/x", signed("n1"), nil)
		var ae *sheen.AuthError
		if err == nil || errors.As(err, &ae) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Verify: %v; want a configuration error with %q", tc.name, err, tc.want)
		}
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/v1/x", nil)
		r.Header = signed("n2")
		v.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Errorf("%s: a request reached the handler", tc.name) })).ServeHTTP(rec, r)
		if rec.Code != http.StatusInternalServerError {
			t.Errorf("%s: Middleware answered %d; want 500", tc.name, rec.Code)
		}
	}

	// Long enough, it works; nil Nonces follows a long Skew.
	for _, nonces := range []NonceStore{NewMemoryNonceStore(4*time.Minute, 0), nil} {
		v := &Verifier{Secret: testSecret, Scheme: sheen.SigningDual, Skew: 2 * time.Minute, Nonces: nonces, Now: func() time.Time { return now }}
		if nonces == nil {
			v.Skew = 6 * time.Minute
		}
		// The worst case: a timestamp Skew ahead, replayed until it is
		// Skew behind.
		h := signedAt("n1", now.Add(v.Skew))
		if err := v.Verify("GET", "/v1/x", h, nil); err != nil {
			t.Fatalf("Nonces %v: %v", nonces, err)
		}
		v.Now = func() time.Time { return now.Add(2*v.Skew - time.Second) }
		err := v.Verify("GET", "/v1/x", h, nil)
		var ae *sheen.AuthError
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusConflict {
			t.Errorf("Nonces %v: a replay just inside the skew: %v; want 409", nonces, err)
		}
	}
	// A scheme without nonces does not care.
	v := &Verifier{Secret: testSecret, Scheme: sheen.SigningBodyPath, Nonces: NewMemoryNonceStore(time.Second, 0)}
	h := http.Header{sheen.HeaderSignature: {signing.SignBodyPath(signing.NewKey([]byte(testSecret)), nil, "/v1/x")}}
	if err := v.Verify("GET", "/v1/x", h, nil); err != nil {
		t.Errorf("SigningBodyPath with a short-lived store: %v", err)
	}
}

// SigningDual means one thing: a valid v2 signature with its nonce. AcceptV1
// adds the deployed worker's rollout leniency: a valid v1 signature alone,
// or a v2 one without a nonce, passes too. Nothing else passes either way.
func TestVerifierDualMeaning(t *testing.T) {
	const secret = "verifier-secret-0123456789abcdef0123"
	now := time.Unix(1_800_000_000, 0)
	ts := "1800000000"
	key := signing.NewKey([]byte(secret))
	v1 := signing.SignTimestamp(key, ts, nil)
	for _, tc := range []struct {
		name            string
		h               http.Header
		strict, lenient int // status, 0 for accepted
	}{
		{"v2 with nonce", http.Header{sheen.HeaderSignatureV2: {signing.SignV2(key, "GET", "/v1/x", ts, "n1", nil)}, sheen.HeaderNonce: {"n1"}}, 0, 0},
		{"v2 without nonce", http.Header{sheen.HeaderSignatureV2: {signing.SignV2(key, "GET", "/v1/x", ts, "", nil)}}, 403, 0},
		{"v1 only", http.Header{sheen.HeaderSignature: {v1}, sheen.HeaderNonce: {"n1"}}, 403, 0},
		{"v1 only, no nonce", http.Header{sheen.HeaderSignature: {v1}}, 403, 0},
		{"v1 good, v2 bad", http.Header{sheen.HeaderSignature: {v1}, sheen.HeaderSignatureV2: {zeroSig}, sheen.HeaderNonce: {"n1"}}, 403, 0},
		{"v2 over another path", http.Header{sheen.HeaderSignatureV2: {signing.SignV2(key, "GET", "/v1/y", ts, "n1", nil)}, sheen.HeaderNonce: {"n1"}}, 403, 403},
		{"no signature", http.Header{sheen.HeaderNonce: {"n1"}}, 401, 401},
	} {
		for _, acceptV1 := range []bool{false, true} {
			ver := &Verifier{Secret: secret, Scheme: sheen.SigningDual, AcceptV1: acceptV1, Now: func() time.Time { return now }}
			h := tc.h.Clone()
			h.Set(sheen.HeaderTimestamp, ts)
			want := tc.strict
			if acceptV1 {
				want = tc.lenient
			}
			err := ver.Verify("GET", "/v1/x", h, nil)
			var ae *sheen.AuthError
			switch {
			case want == 0 && err != nil:
				t.Errorf("%s, AcceptV1=%v: refused: %v", tc.name, acceptV1, err)
			case want != 0 && (!errors.As(err, &ae) || ae.StatusCode != want):
				t.Errorf("%s, AcceptV1=%v: %v, want %d", tc.name, acceptV1, err, want)
			}
		}
	}
}

// A zero MemoryNonceStore works, a nil Verifier answers sheen.ErrNotConfigured,
// and a Verifier with a short secret refuses to run rather than accept
// requests signed with it.
func TestVerifierZeroValuesAndShortSecret(t *testing.T) {
	var store MemoryNonceStore
	now := time.Now()
	if store.Seen("n1", now) || !store.Seen("n1", now) {
		t.Fatal("zero MemoryNonceStore: a nonce must be new once, then seen")
	}
	var nilVerifier *Verifier
	if err := nilVerifier.Verify("GET", "/v1/x", http.Header{}, nil); !errors.Is(err, sheen.ErrNotConfigured) {
		t.Fatalf("nil Verifier: %v", err)
	}
	const short = "short-secret"
	h := http.Header{sheen.HeaderSignature: {signing.SignBodyPath(signing.NewKey([]byte(short)), nil, "/v1/x")}}
	v := &Verifier{Secret: short}
	if err := v.Verify("GET", "/v1/x", h, nil); err == nil || !strings.Contains(err.Error(), "at least") {
		t.Fatalf("a request signed with a %d-character secret: %v", len(short), err)
	}
}

// failingNonces is a NonceChecker that cannot answer.
type failingNonces struct{}

func (failingNonces) Seen(string, time.Time) bool { return true }
func (failingNonces) Check(string, time.Time) (bool, error) {
	return false, fmt.Errorf("%w: redis is down", sheen.ErrSharedUnavailable)
}

func TestVerifierRefusesWhatItsNonceStoreCannotCheck(t *testing.T) {
	v := &Verifier{Secret: testSecret, Scheme: sheen.SigningDual, Nonces: failingNonces{}}
	h := http.Header{sheen.HeaderTimestamp: {strconv.FormatInt(time.Now().Unix(), 10)}, sheen.HeaderNonce: {"n1"}, sheen.HeaderSignatureV2: {"ab"}}
	err := v.Verify(http.MethodGet, "/x", h, nil)
	if !errors.Is(err, sheen.ErrSharedUnavailable) || !strings.Contains(err.Error(), "replay") {
		t.Fatalf("Verify: %v; want an error that says the replay check failed", err)
	}
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	r.Header = h
	rec := httptest.NewRecorder()
	v.Middleware(http.NotFoundHandler()).ServeHTTP(rec, r)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" || !strings.Contains(rec.Body.String(), string(codeNonceStoreUnavailable)) {
		t.Errorf("Middleware: %d %v %s; want 503 NONCE_STORE_UNAVAILABLE, Retry-After: 1", rec.Code, rec.Header(), rec.Body)
	}
}

// Whatever headers, target and body arrive, the Verifier answers nil or an
// *sheen.AuthError with one of the deployed worker's statuses (the root's
// FuzzVerifyOwnSignature checks that what the client signs passes).
func FuzzVerify(f *testing.F) {
	f.Add("GET", "/v1/x?b=1&a=2", "1767225600", "abc", "00", "", []byte(`{"a":1}`))
	f.Add("POST", "/v1/x??%FF=1", "-1", "", "zz", "not-hex", []byte(`null`))
	f.Add("DELETE", "", "99999999999999999999", "\x00", "", "", []byte{0xff})
	at := time.Unix(1767225600, 0)
	f.Fuzz(func(t *testing.T, method, target, ts, nonce, sig, sigV2 string, body []byte) {
		for i, scheme := range []sheen.Signing{sheen.SigningBodyPath, sheen.SigningTimestamp, sheen.SigningDual, sheen.SigningDual} {
			v := &Verifier{Secret: testSecret, Scheme: scheme, AcceptV1: i == 3, Now: func() time.Time { return at }}
			h := http.Header{sheen.HeaderTimestamp: {ts}, sheen.HeaderNonce: {nonce}, sheen.HeaderSignature: {sig}, sheen.HeaderSignatureV2: {sigV2}}
			err := v.Verify(method, target, h, body)
			if err == nil {
				continue // a guessed signature would be news, but not a crash
			}
			var ae *sheen.AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("%s: not an *sheen.AuthError: %v", scheme, err)
			}
			switch ae.StatusCode {
			case 401, 403, 408, 409:
			default:
				t.Fatalf("%s: status %d", scheme, ae.StatusCode)
			}
		}
	})
}

// byteCountingNonces is a MemoryNonceStore that counts the bytes of the
// nonces it is asked to record.
type byteCountingNonces struct {
	*MemoryNonceStore
	mu    sync.Mutex
	calls int
	bytes int
}

func (s *byteCountingNonces) Seen(nonce string, now time.Time) bool {
	s.mu.Lock()
	s.calls++
	s.bytes += len(nonce)
	s.mu.Unlock()
	return s.MemoryNonceStore.Seen(nonce, now)
}

// A flood of unsigned requests with huge nonces is refused 403 before any
// nonce is recorded: the store holds nothing of them. Nonces the spec's
// senders use (32 hex characters, and anything up to 128 bytes of
// [0-9A-Za-z_-]) are still recorded.
func TestVerifierNonceFloodKeepsStoreBounded(t *testing.T) {
	store := &byteCountingNonces{MemoryNonceStore: NewMemoryNonceStore(0, 0)}
	v := &Verifier{Secret: mwSecret, Scheme: sheen.SigningDual, Nonces: store}
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	const n, size = 2000, 64 << 10
	codes := map[int]int{}
	for i := range n {
		r := httptest.NewRequest(http.MethodGet, "/v1/x", nil)
		r.Header.Set(sheen.HeaderTimestamp, strconv.FormatInt(time.Now().Unix(), 10))
		r.Header.Set(sheen.HeaderNonce, strconv.Itoa(i)+strings.Repeat("n", size))
		r.Header.Set(sheen.HeaderSignatureV2, zeroSig)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		codes[rec.Code]++
	}
	if codes[http.StatusForbidden] != n {
		t.Errorf("answers %v, want %d × 403", codes, n)
	}
	if store.calls != 0 || store.bytes != 0 || store.Len() != 0 {
		t.Errorf("the store was given %d nonces (%d bytes) and holds %d; want none", store.calls, store.bytes, store.Len())
	}

	// The same flood with the longest nonces accepted: each is recorded
	// (and burnt), at most 128 bytes apiece.
	for i := range n {
		r := httptest.NewRequest(http.MethodGet, "/v1/x", nil)
		r.Header.Set(sheen.HeaderTimestamp, strconv.FormatInt(time.Now().Unix(), 10))
		nonce := strconv.Itoa(i) + "-"
		r.Header.Set(sheen.HeaderNonce, nonce+strings.Repeat("n", signing.MaxNonceLength-len(nonce)))
		r.Header.Set(sheen.HeaderSignatureV2, zeroSig)
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	if store.calls != n || store.bytes != n*signing.MaxNonceLength {
		t.Errorf("the store was given %d nonces of %d bytes in all; want %d of %d", store.calls, store.bytes, n, n*signing.MaxNonceLength)
	}
}

// A nonce longer than 128 bytes or with a byte outside [0-9A-Za-z_-] is
// refused as an invalid signature, even when correctly signed, and not
// recorded; the timestamp is still checked first.
func TestVerifierRefusesMalformedNonces(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ts := "1800000000"
	key := signing.NewKey([]byte(mwSecret))
	signed := func(nonce string) http.Header {
		return http.Header{sheen.HeaderTimestamp: {ts}, sheen.HeaderNonce: {nonce},
			sheen.HeaderSignatureV2: {signing.SignV2(key, "GET", "/v1/x", ts, nonce, nil)}}
	}
	sdkNonce, err := signing.NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, nonce string
		status      int
	}{
		{"the SDK's own", sdkNonce, 0},
		{"uuid", "1b4e28ba-2fa1-41d2-883f-0e1f2c3d4e5f", 0},
		{"base64url, 128 bytes", strings.Repeat("aZ09_-", 21) + "ab", 0},
		{"129 bytes", strings.Repeat("a", 129), 403},
		{"a dot", "abc.def", 403},
		{"a space", "abc def", 403},
		{"base64 padding", "YWJj=", 403},
		{"a NUL", "abc\x00", 403},
		{"non-ASCII", "nonce-é", 403},
	} {
		t.Run(c.name, func(t *testing.T) {
			store := &byteCountingNonces{MemoryNonceStore: NewMemoryNonceStore(0, 0)}
			v := &Verifier{Secret: mwSecret, Scheme: sheen.SigningDual, Nonces: store, Now: func() time.Time { return now }}
			err := v.Verify("GET", "/v1/x", signed(c.nonce), nil)
			if c.status == 0 {
				if err != nil || store.calls != 1 {
					t.Fatalf("got %v with %d nonces recorded; want accepted and recorded", err, store.calls)
				}
				return
			}
			var ae *sheen.AuthError
			if !errors.As(err, &ae) || ae.StatusCode != c.status || ae.Code != sheen.CodeInvalidSignature {
				t.Fatalf("got %v; want %d %s", err, c.status, sheen.CodeInvalidSignature)
			}
			if store.calls != 0 {
				t.Errorf("the malformed nonce was recorded")
			}
			stale := signed(c.nonce)
			stale.Set(sheen.HeaderTimestamp, "1700000000")
			if err := v.Verify("GET", "/v1/x", stale, nil); !errors.As(err, &ae) || ae.StatusCode != http.StatusRequestTimeout {
				t.Errorf("stale with a malformed nonce: %v; want 408 first", err)
			}
		})
	}
}

// ttlStore is a shared nonce store (as sheenredis.NonceStore is) that says
// how long it keeps nonces.
type ttlStore struct{ ttl time.Duration }

func (ttlStore) Seen(string, time.Time) bool { return false }
func (s ttlStore) NonceTTL() time.Duration   { return s.ttl }

// Any store that says how long it keeps nonces is held to the rule the
// memory store is: at least twice Skew, or a replay after that passes.
func TestVerifierChecksAStoresNonceTTL(t *testing.T) {
	v := &Verifier{Secret: testSecret, Scheme: sheen.SigningDual, Nonces: ttlStore{time.Minute}}
	err := v.Verify("GET", "/v1/x", http.Header{}, nil)
	if err == nil || !strings.Contains(err.Error(), "keeps each nonce for 1m0s, less than twice Skew (4m0s)") {
		t.Errorf("a store keeping nonces 1m under the default 2m Skew: %v; want a configuration error", err)
	}
	v = &Verifier{Secret: testSecret, Scheme: sheen.SigningDual, Nonces: ttlStore{10 * time.Minute}}
	var ae *sheen.AuthError
	if err := v.Verify("GET", "/v1/x", http.Header{}, nil); !errors.As(err, &ae) {
		t.Errorf("a store keeping nonces 10m: %v; want the request's own refusal (no signature), not a configuration error", err)
	}
}
