package sheen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Inbound verification as a Go service receiving signed requests meets it.

const mwSecret = "inbound-secret-0123456789abcdef0123456"

// mwSigned makes a request the way a WorkerClient signs it with the given
// scheme (its clock at now), as it arrives at a server.
func mwSigned(t *testing.T, scheme Signing, now time.Time, method, target string, body []byte) *http.Request {
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
	c, err := NewWorkerClient(WithBaseURL("https://worker.test"), WithSecret(mwSecret), WithSigning(scheme),
		WithHTTPClient(&http.Client{Transport: rt}), WithClock(newFakeClock(now)), WithRateLimit(60_000))
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
		at, _ := parseUnixSeconds(tc.Timestamp)
		now := func() time.Time { return at.Add(-90 * time.Second) }
		type variant struct {
			scheme    Signing
			requireV2 bool
			h         http.Header
		}
		for _, vr := range []variant{
			{SigningBodyPath, false, http.Header{HeaderSignature: {tc.SeedV21Signature}}},
			{SigningTimestamp, false, http.Header{HeaderSignature: {tc.V1Signature}, HeaderTimestamp: {tc.Timestamp}}},
			{SigningDual, false, http.Header{HeaderSignature: {tc.V1Signature}, HeaderSignatureV2: {tc.V2Signature}, HeaderTimestamp: {tc.Timestamp}, HeaderNonce: {tc.Nonce}}},
			{SigningDual, true, http.Header{HeaderSignature: {tc.V1Signature}, HeaderSignatureV2: {tc.V2Signature}, HeaderTimestamp: {tc.Timestamp}, HeaderNonce: {tc.Nonce}}},
		} {
			if vr.requireV2 && tc.Nonce == "" {
				continue // v2 without a nonce is refused unless AcceptV1
			}
			ver := &Verifier{Secret: v.Secret, Scheme: vr.scheme, AcceptV1: vr.scheme == SigningDual && !vr.requireV2, Now: now}
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
		scheme    Signing
		requireV2 bool
		signedAt  time.Time
		change    func(*http.Request) *http.Request
		want      int
		code      ErrorCode
	}{
		{"untouched bodypath", SigningBodyPath, false, now, nil, 204, ""},
		{"untouched timestamp", SigningTimestamp, false, now, nil, 204, ""},
		{"untouched dual", SigningDual, false, now, nil, 204, ""},
		{"untouched dual, v2 required", SigningDual, true, now, nil, 204, ""},

		{"no signature", SigningBodyPath, false, now, tamper(func(r *http.Request) *http.Request { r.Header.Del(HeaderSignature); return r }), 401, CodeMissingSignature},
		{"no signatures, dual", SigningDual, false, now, tamper(func(r *http.Request) *http.Request {
			r.Header.Del(HeaderSignature)
			r.Header.Del(HeaderSignatureV2)
			return r
		}), 401, CodeMissingSignature},

		{"tampered body, bodypath", SigningBodyPath, false, now, withBody(`{"buildId":"b2","status":"completed"}`), 403, CodeInvalidSignature},
		{"tampered body, timestamp", SigningTimestamp, false, now, withBody(`{"buildId":"b2","status":"completed"}`), 403, CodeInvalidSignature},
		{"tampered body, dual", SigningDual, false, now, withBody(`{"buildId":"b2","status":"completed"}`), 403, CodeInvalidSignature},
		{"tampered path, bodypath", SigningBodyPath, false, now, withTarget("/v1/hooks/admin?attempt=1&b=2"), 403, CodeInvalidSignature},
		{"tampered query, bodypath", SigningBodyPath, false, now, withTarget("/v1/hooks/build?attempt=2&b=2"), 403, CodeInvalidSignature},
		{"tampered path, dual with v2 required", SigningDual, true, now, withTarget("/v1/hooks/admin?attempt=1&b=2"), 403, CodeInvalidSignature},
		{"tampered query, dual with v2 required", SigningDual, true, now, withTarget("/v1/hooks/build?attempt=1&b=3"), 403, CodeInvalidSignature},
		// v1 signs timestamp + body only: as on the deployed worker, a
		// request whose v1 signature holds passes whatever its path.
		{"tampered path, dual (v1 still valid)", SigningDual, false, now, withTarget("/v1/hooks/admin?attempt=1&b=2"), 204, ""},
		{"v1 only, dual with v2 required", SigningDual, true, now, tamper(func(r *http.Request) *http.Request { r.Header.Del(HeaderSignatureV2); return r }), 403, CodeInvalidSignature},
		{"garbage signature", SigningBodyPath, false, now, tamper(func(r *http.Request) *http.Request {
			r.Header.Set(HeaderSignature, "zz"+r.Header.Get(HeaderSignature)[2:])
			return r
		}), 403, CodeInvalidSignature},
		{"short signature", SigningBodyPath, false, now, tamper(func(r *http.Request) *http.Request {
			r.Header.Set(HeaderSignature, r.Header.Get(HeaderSignature)[:32])
			return r
		}), 403, CodeInvalidSignature},

		{"stale timestamp", SigningTimestamp, false, now.Add(-5 * time.Minute), nil, 408, CodeTimestampOutOfRange},
		{"future timestamp, dual", SigningDual, false, now.Add(5 * time.Minute), nil, 408, CodeTimestampOutOfRange},
		{"no timestamp", SigningDual, false, now, tamper(func(r *http.Request) *http.Request { r.Header.Del(HeaderTimestamp); return r }), 408, CodeTimestampOutOfRange},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mwSigned(t, tc.scheme, tc.signedAt, "POST", target, body)
			if tc.change != nil {
				r = tc.change(r)
			}
			ver := &Verifier{Secret: mwSecret, Scheme: tc.scheme, AcceptV1: tc.scheme == SigningDual && !tc.requireV2, Now: func() time.Time { return now }}
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
	for _, scheme := range []Signing{SigningTimestamp, SigningDual} {
		t.Run(scheme.String(), func(t *testing.T) {
			ver := &Verifier{Secret: mwSecret, Scheme: scheme}
			orig := mwSigned(t, scheme, time.Now(), "POST", "/v1/hooks/build", []byte(`{"a":1}`))
			replay := httptest.NewRequest("POST", orig.RequestURI, strings.NewReader(`{"a":1}`))
			replay.Header = orig.Header.Clone()
			if res := mwServe(t, ver, orig); res.status != 204 {
				t.Fatalf("first: %d %v", res.status, res.body)
			}
			res := mwServe(t, ver, replay)
			if res.status != 409 || res.body["code"] != string(CodeReplayAttackDetected) || res.reached {
				t.Errorf("replay: %d %v reached=%v", res.status, res.body, res.reached)
			}
		})
	}
}

// A NonceStore of one's own is used; here one shared by two middlewares, as
// two instances of a service would share one.
func TestVerifierMiddlewareSharedNonceStore(t *testing.T) {
	store := &countingNonces{inner: NewMemoryNonceStore(DefaultNonceTTL, 10)}
	a := &Verifier{Secret: mwSecret, Scheme: SigningDual, Nonces: store}
	b := &Verifier{Secret: mwSecret, Scheme: SigningDual, Nonces: store}
	orig := mwSigned(t, SigningDual, time.Now(), "GET", "/v1/hooks/ping", nil)
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
	r := mwSigned(t, SigningBodyPath, time.Now(), "POST", "/v1/hooks/big", big)
	want := map[string]any{"statusCode": 413.0, "code": string(CodeBodyTooLarge), "error": "Payload Too Large", "message": "Request body is too large"}
	if res := mwServe(t, ver, r); res.status != 413 || res.reached || !cmp.Equal(res.body, want) {
		t.Errorf("with Content-Length: %d %v reached=%v", res.status, res.body, res.reached)
	}
	r = mwSigned(t, SigningBodyPath, time.Now(), "POST", "/v1/hooks/big", big)
	r.ContentLength = -1
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(big[:10]), bytes.NewReader(big[10:])))
	if res := mwServe(t, ver, r); res.status != 413 || res.reached {
		t.Errorf("chunked: %d %v reached=%v", res.status, res.body, res.reached)
	}
	// Exactly the cap passes.
	r = mwSigned(t, SigningBodyPath, time.Now(), "POST", "/v1/hooks/big", big[:1024])
	if res := mwServe(t, ver, r); res.status != 204 || len(res.got) != 1024 {
		t.Errorf("at the cap: %d, handler read %d bytes", res.status, len(res.got))
	}
	// The default cap is the worker's 1 MiB.
	r = mwSigned(t, SigningBodyPath, time.Now(), "POST", "/v1/hooks/big", bytes.Repeat([]byte("a"), MaxRequestBody))
	r.Body = io.NopCloser(io.MultiReader(r.Body, strings.NewReader("b")))
	r.ContentLength = -1
	if res := mwServe(t, &Verifier{Secret: mwSecret}, r); res.status != 413 {
		t.Errorf("over 1 MiB by default: %d", res.status)
	}
}

// VerifyRequest returns the body, leaves it readable in r.Body, and
// fails with typed errors.
func TestVerifierVerifyRequest(t *testing.T) {
	ver := &Verifier{Secret: mwSecret, Scheme: SigningDual, MaxBody: 64}
	body := []byte(`{"event":"build.completed"}`)
	r := mwSigned(t, SigningDual, time.Now(), "POST", "/v1/hooks/x", body)
	got, err := ver.VerifyRequest(r)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("got %q, %v", got, err)
	}
	again, _ := io.ReadAll(r.Body)
	if !bytes.Equal(again, body) || r.ContentLength != int64(len(body)) {
		t.Errorf("r.Body afterwards %q, ContentLength %d", again, r.ContentLength)
	}

	r = mwSigned(t, SigningDual, time.Now(), "POST", "/v1/hooks/x", body)
	r.Header.Set(HeaderSignature, strings.Repeat("0", 64))
	r.Header.Set(HeaderSignatureV2, strings.Repeat("0", 64))
	_, err = ver.VerifyRequest(r)
	var ae *AuthError
	if !errors.As(err, &ae) || ae.StatusCode != 403 || ae.Code != CodeInvalidSignature || !errors.Is(err, ErrUnauthorized) {
		t.Errorf("bad signature: %v", err)
	}
	if strings.Contains(err.Error(), mwSecret) {
		t.Error("the error holds the secret")
	}

	r = mwSigned(t, SigningDual, time.Now(), "POST", "/v1/hooks/x", bytes.Repeat([]byte("a"), 65))
	_, err = ver.VerifyRequest(r)
	var pe *PayloadTooLargeError
	if !errors.As(err, &pe) || pe.Limit != 64 || !errors.Is(err, ErrPayloadTooLarge) {
		t.Errorf("oversized: %v", err)
	}
}

// A WorkerClient's requests pass a service that verifies them, under every
// scheme, mounted below a prefix that http.StripPrefix removes: the target
// verified is the one on the wire.
func TestVerifierMiddlewareAcceptsClientRequests(t *testing.T) {
	for _, scheme := range []Signing{SigningBodyPath, SigningTimestamp, SigningDual} {
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
			c, err := NewWorkerClient(WithBaseURL(srv.URL+"/hooks"), WithSecret(mwSecret), WithSecretV2(mwSecret+"-v2"), WithSigning(scheme))
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
		{"unknown scheme", &Verifier{Secret: mwSecret, Scheme: Signing(9)}},
		{"AcceptV1 without dual", &Verifier{Secret: mwSecret, AcceptV1: true}},
		{"AcceptV1 with timestamp", &Verifier{Secret: mwSecret, Scheme: SigningTimestamp, AcceptV1: true}},
		{"negative MaxBody", &Verifier{Secret: mwSecret, MaxBody: -1}},
		{"negative Skew", &Verifier{Secret: mwSecret, Scheme: SigningDual, Skew: -time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mwSigned(t, SigningBodyPath, time.Now(), "POST", "/v1/hooks/x", []byte(`{"a":1}`))
			_, err := tc.ver.VerifyRequest(r)
			if err == nil || errors.As(err, new(*AuthError)) {
				t.Fatalf("VerifyRequest: %v, want a plain error", err)
			}
			if tc.ver != nil && strings.Contains(err.Error(), tc.ver.Secret) {
				t.Errorf("the error holds the secret: %v", err)
			}
			if err := tc.ver.Verify("GET", "/v1/x", http.Header{HeaderSignature: {zeroSig}}, nil); err == nil || errors.As(err, new(*AuthError)) {
				t.Errorf("Verify: %v, want a plain error", err)
			}
			r = mwSigned(t, SigningBodyPath, time.Now(), "POST", "/v1/hooks/x", []byte(`{"a":1}`))
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
		r := mwSigned(t, SigningDual, now, "POST", "/hooks/worker", body)
		r.Header.Del(HeaderSignatureV2)
		res := mwServe(t, &Verifier{Secret: mwSecret, Scheme: SigningDual, AcceptV1: acceptV1, Now: func() time.Time { return now }}, r)
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
		at, _ := parseUnixSeconds(tc.Timestamp)
		now := func() time.Time { return at.Add(30 * time.Second) }
		schemes := map[Signing]http.Header{
			SigningBodyPath:  {HeaderSignature: {tc.SeedV21Signature}},
			SigningTimestamp: {HeaderSignature: {tc.V1Signature}, HeaderTimestamp: {tc.Timestamp}},
			// Only v2 valid: the deployed worker lets it through.
			SigningDual: {HeaderSignature: {strings.Repeat("0", 64)}, HeaderSignatureV2: {tc.V2Signature}, HeaderTimestamp: {tc.Timestamp}, HeaderNonce: {tc.Nonce}},
		}
		for scheme, h := range schemes {
			// A v2 signature without a nonce passes only during the
			// rollout window, as on the deployed worker.
			acceptV1 := scheme == SigningDual && tc.Nonce == ""
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
	v := &Verifier{Secret: secret, Scheme: SigningDual, AcceptV1: true, Now: func() time.Time { return now }}
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

// SigningDual means one thing: a valid v2 signature with its nonce. AcceptV1
// adds the deployed worker's rollout leniency: a valid v1 signature alone,
// or a v2 one without a nonce, passes too. Nothing else passes either way.
func TestVerifierDualMeaning(t *testing.T) {
	const secret = "verifier-secret-0123456789abcdef0123"
	now := time.Unix(1_800_000_000, 0)
	ts := "1800000000"
	key := newMACKey([]byte(secret))
	v1 := signTimestamp(key, ts, nil)
	for _, tc := range []struct {
		name            string
		h               http.Header
		strict, lenient int // status, 0 for accepted
	}{
		{"v2 with nonce", http.Header{HeaderSignatureV2: {signV2(key, "GET", "/v1/x", ts, "n1", nil)}, HeaderNonce: {"n1"}}, 0, 0},
		{"v2 without nonce", http.Header{HeaderSignatureV2: {signV2(key, "GET", "/v1/x", ts, "", nil)}}, 403, 0},
		{"v1 only", http.Header{HeaderSignature: {v1}, HeaderNonce: {"n1"}}, 403, 0},
		{"v1 only, no nonce", http.Header{HeaderSignature: {v1}}, 403, 0},
		{"v1 good, v2 bad", http.Header{HeaderSignature: {v1}, HeaderSignatureV2: {zeroSig}, HeaderNonce: {"n1"}}, 403, 0},
		{"v2 over another path", http.Header{HeaderSignatureV2: {signV2(key, "GET", "/v1/y", ts, "n1", nil)}, HeaderNonce: {"n1"}}, 403, 403},
		{"no signature", http.Header{HeaderNonce: {"n1"}}, 401, 401},
	} {
		for _, acceptV1 := range []bool{false, true} {
			ver := &Verifier{Secret: secret, Scheme: SigningDual, AcceptV1: acceptV1, Now: func() time.Time { return now }}
			h := tc.h.Clone()
			h.Set(HeaderTimestamp, ts)
			want := tc.strict
			if acceptV1 {
				want = tc.lenient
			}
			err := ver.Verify("GET", "/v1/x", h, nil)
			var ae *AuthError
			switch {
			case want == 0 && err != nil:
				t.Errorf("%s, AcceptV1=%v: refused: %v", tc.name, acceptV1, err)
			case want != 0 && (!errors.As(err, &ae) || ae.StatusCode != want):
				t.Errorf("%s, AcceptV1=%v: %v, want %d", tc.name, acceptV1, err, want)
			}
		}
	}
}
