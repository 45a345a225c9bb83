package sheen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

// mwServe runs r through VerifyMiddleware(cfg) in front of a handler that
// reads the body.
func mwServe(t *testing.T, cfg *VerifyConfig, r *http.Request) mwResult {
	t.Helper()
	mw, err := VerifyMiddleware(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var res mwResult
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
func TestVerifyMiddlewareVectors(t *testing.T) {
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
			cfg := &VerifyConfig{Secret: v.Secret, Scheme: vr.scheme, AcceptV1: vr.scheme == SigningDual && !vr.requireV2, Now: now}
			r := httptest.NewRequest(tc.Method, tc.Path, strings.NewReader(tc.Body))
			r.Header = vr.h
			res := mwServe(t, cfg, r)
			if res.status != http.StatusNoContent || string(res.got) != tc.Body {
				t.Errorf("%s/%v requireV2=%v: %d %v, handler read %q", tc.Name, vr.scheme, vr.requireV2, res.status, res.body, res.got)
			}
		}
	}
}

// Refusals answer with the deployed worker's statuses and codes, and the
// handler never runs.
func TestVerifyMiddlewareRefusals(t *testing.T) {
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
			cfg := &VerifyConfig{Secret: mwSecret, Scheme: tc.scheme, AcceptV1: tc.scheme == SigningDual && !tc.requireV2, Now: func() time.Time { return now }}
			res := mwServe(t, cfg, r)
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
func TestVerifyMiddlewareReplay(t *testing.T) {
	for _, scheme := range []Signing{SigningTimestamp, SigningDual} {
		t.Run(scheme.String(), func(t *testing.T) {
			cfg := &VerifyConfig{Secret: mwSecret, Scheme: scheme}
			orig := mwSigned(t, scheme, time.Now(), "POST", "/v1/hooks/build", []byte(`{"a":1}`))
			replay := httptest.NewRequest("POST", orig.RequestURI, strings.NewReader(`{"a":1}`))
			replay.Header = orig.Header.Clone()
			if res := mwServe(t, cfg, orig); res.status != 204 {
				t.Fatalf("first: %d %v", res.status, res.body)
			}
			res := mwServe(t, cfg, replay)
			if res.status != 409 || res.body["code"] != string(CodeReplayAttackDetected) || res.reached {
				t.Errorf("replay: %d %v reached=%v", res.status, res.body, res.reached)
			}
		})
	}
}

// A NonceStore of one's own is used; here one shared by two middlewares, as
// two instances of a service would share one.
func TestVerifyMiddlewareSharedNonceStore(t *testing.T) {
	store := &countingNonces{inner: NewMemoryNonceStore(DefaultNonceTTL, 10)}
	a := &VerifyConfig{Secret: mwSecret, Scheme: SigningDual, Nonces: store}
	b := &VerifyConfig{Secret: mwSecret, Scheme: SigningDual, Nonces: store}
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
func TestVerifyMiddlewareOversizedBody(t *testing.T) {
	cfg := &VerifyConfig{Secret: mwSecret, MaxBody: 1024}
	big := bytes.Repeat([]byte("a"), 1025)
	r := mwSigned(t, SigningBodyPath, time.Now(), "POST", "/v1/hooks/big", big)
	want := map[string]any{"statusCode": 413.0, "code": string(CodeBodyTooLarge), "error": "Payload Too Large", "message": "Request body is too large"}
	if res := mwServe(t, cfg, r); res.status != 413 || res.reached || !cmp.Equal(res.body, want) {
		t.Errorf("with Content-Length: %d %v reached=%v", res.status, res.body, res.reached)
	}
	r = mwSigned(t, SigningBodyPath, time.Now(), "POST", "/v1/hooks/big", big)
	r.ContentLength = -1
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(big[:10]), bytes.NewReader(big[10:])))
	if res := mwServe(t, cfg, r); res.status != 413 || res.reached {
		t.Errorf("chunked: %d %v reached=%v", res.status, res.body, res.reached)
	}
	// Exactly the cap passes.
	r = mwSigned(t, SigningBodyPath, time.Now(), "POST", "/v1/hooks/big", big[:1024])
	if res := mwServe(t, cfg, r); res.status != 204 || len(res.got) != 1024 {
		t.Errorf("at the cap: %d, handler read %d bytes", res.status, len(res.got))
	}
	// The default cap is the worker's 1 MiB.
	r = mwSigned(t, SigningBodyPath, time.Now(), "POST", "/v1/hooks/big", bytes.Repeat([]byte("a"), MaxRequestBody))
	r.Body = io.NopCloser(io.MultiReader(r.Body, strings.NewReader("b")))
	r.ContentLength = -1
	if res := mwServe(t, &VerifyConfig{Secret: mwSecret}, r); res.status != 413 {
		t.Errorf("over 1 MiB by default: %d", res.status)
	}
}

// The function form returns the body, leaves it readable in r.Body, and
// fails with typed errors.
func TestVerifyHTTPRequest(t *testing.T) {
	cfg := &VerifyConfig{Secret: mwSecret, Scheme: SigningDual, MaxBody: 64}
	body := []byte(`{"event":"build.completed"}`)
	r := mwSigned(t, SigningDual, time.Now(), "POST", "/v1/hooks/x", body)
	got, err := VerifyHTTPRequest(r, cfg)
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
	_, err = VerifyHTTPRequest(r, cfg)
	var ae *AuthError
	if !errors.As(err, &ae) || ae.StatusCode != 403 || ae.Code != CodeInvalidSignature || !errors.Is(err, ErrUnauthorized) {
		t.Errorf("bad signature: %v", err)
	}
	if strings.Contains(err.Error(), mwSecret) {
		t.Error("the error holds the secret")
	}

	r = mwSigned(t, SigningDual, time.Now(), "POST", "/v1/hooks/x", bytes.Repeat([]byte("a"), 65))
	_, err = VerifyHTTPRequest(r, cfg)
	var pe *PayloadTooLargeError
	if !errors.As(err, &pe) || pe.Limit != 64 || !errors.Is(err, ErrPayloadTooLarge) {
		t.Errorf("oversized: %v", err)
	}
}

// A WorkerClient's requests pass a service that verifies them, under every
// scheme, mounted below a prefix that http.StripPrefix removes: the target
// verified is the one on the wire.
func TestVerifyMiddlewareAcceptsClientRequests(t *testing.T) {
	for _, scheme := range []Signing{SigningBodyPath, SigningTimestamp, SigningDual} {
		t.Run(scheme.String(), func(t *testing.T) {
			mw, err := VerifyMiddleware(&VerifyConfig{Secret: mwSecret, SecretV2: mwSecret + "-v2", Scheme: scheme})
			if err != nil {
				t.Fatal(err)
			}
			var seen []string
			var mu sync.Mutex
			mux := http.NewServeMux()
			mux.Handle("/hooks/", http.StripPrefix("/hooks", mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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

func TestVerifyConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  *VerifyConfig
	}{
		{"nil", nil},
		{"short secret", &VerifyConfig{Secret: "short"}},
		{"short v2 secret", &VerifyConfig{Secret: mwSecret, SecretV2: "short"}},
		{"unknown scheme", &VerifyConfig{Secret: mwSecret, Scheme: Signing(9)}},
		{"AcceptV1 without dual", &VerifyConfig{Secret: mwSecret, AcceptV1: true}},
		{"negative MaxBody", &VerifyConfig{Secret: mwSecret, MaxBody: -1}},
	}
	for _, tc := range tests {
		if _, err := VerifyMiddleware(tc.cfg); err == nil {
			t.Errorf("%s: VerifyMiddleware accepted it", tc.name)
		}
		r := httptest.NewRequest("GET", "/v1/x", nil)
		if _, err := VerifyHTTPRequest(r, tc.cfg); err == nil {
			t.Errorf("%s: VerifyHTTPRequest accepted it", tc.name)
		} else if tc.cfg != nil && strings.Contains(err.Error(), tc.cfg.Secret) {
			t.Errorf("%s: the error holds the secret", tc.name)
		}
	}
}

// By default a dual-scheme middleware needs the v2 signature: a request
// whose v2 signature was stripped (so only v1, which covers neither path nor
// nonce, is valid) is refused, unless AcceptV1 says the sender cannot do v2.
func TestVerifyDualNeedsV2ByDefault(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"event":"build.completed"}`)
	for _, acceptV1 := range []bool{false, true} {
		r := mwSigned(t, SigningDual, now, "POST", "/hooks/worker", body)
		r.Header.Del(HeaderSignatureV2)
		res := mwServe(t, &VerifyConfig{Secret: mwSecret, Scheme: SigningDual, AcceptV1: acceptV1, Now: func() time.Time { return now }}, r)
		switch {
		case !acceptV1 && (res.reached || res.status != http.StatusForbidden):
			t.Errorf("default: a v1-only request got %d and reached the handler: %v", res.status, res.reached)
		case acceptV1 && !res.reached:
			t.Errorf("AcceptV1: a v1-only request was refused with %d", res.status)
		}
	}
}
