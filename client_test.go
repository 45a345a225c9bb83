package sheen

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
)

func TestNewWorkerClientValidation(t *testing.T) {
	const short = "too-short-secret"
	for _, tc := range []struct {
		name string
		opts []Option
		want string
	}{
		{"no secret", nil, "WithSecret is not set"},
		{"short secret", []Option{WithSecret(short)}, "WithSecret is 16 characters; it must be at least 32"},
		{"short v2 secret", []Option{WithSecret(testSecret), WithSecretV2(short)}, "WithSecretV2 is 16 characters"},
		{"plain http remote", []Option{WithSecret(testSecret), WithBaseURL("http://worker.example.com")}, "plain http:// on worker.example.com"},
		{"ftp", []Option{WithSecret(testSecret), WithBaseURL("ftp://x")}, `scheme "ftp"`},
		{"relative", []Option{WithSecret(testSecret), WithBaseURL("/v1")}, "not an absolute URL"},
		{"credentials", []Option{WithSecret(testSecret), WithBaseURL("https://u:p@x")}, "must not carry credentials"},
		{"escaped slash in the prefix", []Option{WithSecret(testSecret), WithBaseURL("https://x/a%2Fb")}, "an escaped '/' or '%' or a dot segment"},
		{"escaped percent in the prefix", []Option{WithSecret(testSecret), WithBaseURL("https://x/p%25x")}, "an escaped '/' or '%' or a dot segment"},
		{"dot segment in the prefix", []Option{WithSecret(testSecret), WithBaseURL("https://x/a/../b")}, "an escaped '/' or '%' or a dot segment"},
		{"bad rate", []Option{WithSecret(testSecret), WithRateLimit(0)}, "WithRateLimit"},
		{"bad retry", []Option{WithSecret(testSecret), WithRetry(RetryConfig{MaxAttempts: -1, MaxWait: time.Second})}, "WithRetry: MaxAttempts -1"},
		{"bad signing", []Option{WithSecret(testSecret), WithSigning(Signing(9))}, "WithSigning"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewWorkerClient(tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), short) || strings.Contains(err.Error(), testSecret) {
				t.Fatalf("error leaks the secret: %v", err)
			}
		})
	}
	for _, base := range []string{"http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9"} {
		if _, err := NewWorkerClient(WithSecret(testSecret), WithBaseURL(base)); err != nil {
			t.Errorf("loopback %s refused: %v", base, err)
		}
	}
	if _, err := NewWorkerClient(WithSecret(testSecret), WithBaseURL("http://10.0.0.5"), WithInsecureHTTP()); err != nil {
		t.Errorf("explicit opt-in refused: %v", err)
	}
}

func TestNewWorkerClientFromEnv(t *testing.T) {
	t.Setenv(EnvBaseURL, "https://env.example.com/prefix")
	t.Setenv(EnvSecret, testSecret)
	t.Setenv(EnvSigning, "dual")
	c, err := NewWorkerClientFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.BaseURL() != "https://env.example.com/prefix" || c.Signing() != SigningDual {
		t.Fatalf("got %s %s", c.BaseURL(), c.Signing())
	}
	// Explicit options win.
	c, err = NewWorkerClientFromEnv(WithBaseURL("https://explicit.example.com"), WithSigning(SigningTimestamp))
	if err != nil || c.BaseURL() != "https://explicit.example.com" || c.Signing() != SigningTimestamp {
		t.Fatalf("explicit options must win: %v %v", c, err)
	}

	t.Setenv(EnvSecret, "short-secret-value")
	_, err = NewWorkerClientFromEnv()
	if err == nil || !strings.Contains(err.Error(), "WORKER_SHARED_SECRET is 18 characters") || strings.Contains(err.Error(), "short-secret-value") {
		t.Fatalf("err %v: must name the variable and not print it", err)
	}
	t.Setenv(EnvSecret, testSecret)
	t.Setenv(EnvSigning, "hmac")
	if _, err = NewWorkerClientFromEnv(); err == nil || !strings.Contains(err.Error(), "WORKER_SIGNING") {
		t.Fatalf("err %v", err)
	}
	t.Setenv(EnvSigning, "")
	t.Setenv(EnvBaseURL, "http://remote.example.com")
	if _, err = NewWorkerClientFromEnv(); err == nil || !strings.Contains(err.Error(), "WORKER_BASE_URL uses plain http://") {
		t.Fatalf("err %v", err)
	}
	t.Setenv(EnvBaseURL, "")
	t.Setenv(EnvSecret, "")
	if _, err = NewWorkerClientFromEnv(); err == nil || !strings.Contains(err.Error(), "WORKER_SHARED_SECRET is not set") {
		t.Fatalf("err %v", err)
	}
}

func TestDoRefusesBadInputBeforeSending(t *testing.T) {
	c, mock := newMockClient(t)
	mock.RegisterNoResponder(httpmock.NewStringResponder(200, `{}`))
	for _, tc := range []struct {
		name, method, path string
		in                 any
		field              string
	}{
		{"no slash", "GET", "v1/x", nil, "path"},
		{"dot dot", "GET", "/v1/../admin", nil, "path"},
		{"encoded dot dot", "GET", "/v1/%2e%2E/admin", nil, "path"},
		{"fragment", "GET", "/v1/x#y", nil, "path"},
		{"space", "GET", "/v1/a b", nil, "path"},
		{"scheme-relative", "GET", "//evil.example.com/v1", nil, "path"},
		{"GET with body", "GET", "/v1/x", map[string]int{"a": 1}, "request body"},
		{"DELETE with raw body", "DELETE", "/v1/x", []byte("{}"), "request body"},
		{"huge body", "POST", "/v1/x", bytes.Repeat([]byte("a"), MaxRequestBody+1), "request body"},
		{"unencodable", "POST", "/v1/x", map[string]any{"f": func() {}}, "request body"},
		{"empty method", "", "/v1/x", map[string]int{"a": 1}, "method"}, // not taken for a GET with a body
		{"empty method, no body", "", "/v1/x", nil, "method"},
		{"method with a space", "GE T", "/v1/x", nil, "method"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Do(context.Background(), tc.method, tc.path, tc.in, nil)
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field {
				t.Fatalf("want *ValidationError on %s, got %T %v", tc.field, err, err)
			}
		})
	}
	if n := mock.GetTotalCallCount(); n != 0 {
		t.Fatalf("%d requests reached the worker", n)
	}
	err := c.Do(context.Background(), "POST", "/v1/x", bytes.Repeat([]byte("a"), MaxRequestBody+1), nil)
	if !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatalf("an oversized body matches ErrPayloadTooLarge: %v", err)
	}
}

func TestEscapeID(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "a/b", "a/../b", `a\b`, "a\nb", strings.Repeat("x", 257)} {
		if _, err := escapeID("projectId", bad); err == nil {
			t.Errorf("escapeID(%q) accepted", bad)
		}
	}
	for in, want := range map[string]string{"proj_123": "proj_123", "x?y": "x%3Fy", "p q": "p%20q", "a#b": "a%23b", "a..b": "a..b"} {
		if got, err := escapeID("projectId", in); err != nil || got != want {
			t.Errorf("escapeID(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestJSONBodyMatchesJavaScript(t *testing.T) {
	var got []byte
	var gotCT string
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		got, _ = io.ReadAll(r.Body)
		gotCT = r.Header.Get("Content-Type")
		return jsonResponse(r, 200, `{}`), nil
	})
	c := newTestClient(t, rt)
	in := struct {
		UserID    string `json:"userId"`
		Prompt    string `json:"prompt"`
		ProjectID string `json:"projectId"`
	}{"u1", `Café <b>&</b> "quotes" 日本語 😀`, "p1"}
	if err := c.Do(context.Background(), "POST", "/v1/create-preview-for-new-project", in, nil); err != nil {
		t.Fatal(err)
	}
	// The body of the spec's post-unicode-html-body vector.
	want := `{"userId":"u1","prompt":"Café <b>&</b> \"quotes\" 日本語 😀","projectId":"p1"}`
	if string(got) != want || gotCT != "application/json" {
		t.Fatalf("body %s (%s), want %s", got, gotCT, want)
	}
}

func TestGetSendsNoBody(t *testing.T) {
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Body != nil && r.Body != http.NoBody {
			b, _ := io.ReadAll(r.Body)
			if len(b) > 0 {
				return jsonResponse(r, 400, `{"error":"body on GET"}`), nil
			}
		}
		if r.Header.Get("Content-Type") != "" {
			return jsonResponse(r, 400, `{"error":"content type on GET"}`), nil
		}
		return jsonResponse(r, 200, `{}`), nil
	})
	c := newTestClient(t, rt)
	if err := c.Do(context.Background(), "GET", "/v1/x", nil, nil); err != nil {
		t.Fatal(err)
	}
}

func TestUnusableSuccessResponses(t *testing.T) {
	for _, tc := range []struct {
		name, ctype, body string
	}{
		{"html", "text/html", "<html><body>Login</body></html>"},
		{"empty", "application/json", ""},
		{"truncated json", "application/json", `{"balance":{"total":`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, mock := newMockClient(t)
			mock.RegisterResponder("GET", "=~/v1/x", func(r *http.Request) (*http.Response, error) {
				resp := httpmock.NewStringResponse(200, tc.body)
				resp.Header.Set("Content-Type", tc.ctype)
				return resp, nil
			})
			var out map[string]any
			err := c.Do(context.Background(), "GET", "/v1/x", nil, &out)
			var re *ResponseError
			if !errors.As(err, &re) || !errors.Is(err, ErrInvalidResponse) || re.StatusCode != 200 {
				t.Fatalf("want *ResponseError, got %T %v", err, err)
			}
		})
	}
}

func TestRawOutput(t *testing.T) {
	c, mock := newMockClient(t)
	mock.RegisterResponder("GET", "=~/v1/x", httpmock.NewStringResponder(200, `[1,2]`))
	var raw []byte
	if err := c.Do(context.Background(), "GET", "/v1/x", nil, &raw); err != nil || string(raw) != "[1,2]" {
		t.Fatalf("raw %q, %v", raw, err)
	}
}

// A redirect would send the signature headers to another host: the client
// returns it as an error instead of following it.
func TestRedirectsAreNotFollowed(t *testing.T) {
	var leaked bool
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked = r.Header.Get(HeaderSignature) != ""
	}))
	defer other.Close()
	worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/steal", http.StatusFound)
	}))
	defer worker.Close()
	c, err := NewWorkerClient(WithBaseURL(worker.URL), WithSecret(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Do(context.Background(), "GET", "/v1/x", nil, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusFound || leaked {
		t.Fatalf("err %v, leaked %v", err, leaked)
	}
	worker.Client().CloseIdleConnections()
}

// The debug log has one record per attempt and nothing secret.
func TestLoggingHasNoSecrets(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var sigs []string
	n := 0
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		n++
		sigs = append(sigs, r.Header.Get(HeaderSignature), r.Header.Get(HeaderSignatureV2), r.Header.Get(HeaderNonce))
		if n == 1 {
			return jsonResponse(r, 503, `{"error":"busy"}`), nil
		}
		return jsonResponse(r, 403, `{"error":"bad","code":"INVALID_SIGNATURE"}`), nil
	})
	c := newTestClient(t, rt, WithLogger(logger), WithSigning(SigningDual))
	err := c.Do(context.Background(), "GET", "/v1/billing/balance/u1?token=abc", nil, nil)
	if err == nil {
		t.Fatal("want the 403")
	}
	out := logs.String() + err.Error()
	for _, s := range append(sigs, testSecret) {
		if s != "" && strings.Contains(out, s) {
			t.Fatalf("secret material %q in logs or error:\n%s", s, out)
		}
	}
	if strings.Count(logs.String(), "sheen: attempt") != 2 || !strings.Contains(logs.String(), "status=503") || strings.Contains(logs.String(), "token=abc") {
		t.Fatalf("want two attempt records without the query:\n%s", logs.String())
	}
}

func TestSigningNames(t *testing.T) {
	for _, s := range []Signing{SigningBodyPath, SigningTimestamp, SigningDual} {
		var got Signing
		if err := got.UnmarshalText([]byte(strings.ToUpper(s.String()))); err != nil || got != s {
			t.Errorf("UnmarshalText(%s) = %v, %v", s, got, err)
		}
		if text, err := s.MarshalText(); err != nil || string(text) != s.String() {
			t.Errorf("MarshalText(%s) = %q, %v", s, text, err)
		}
	}
	got := SigningDual
	if err := got.UnmarshalText([]byte("hmac")); err == nil || got != SigningDual {
		t.Errorf("an unknown name gave %v, %v; want an error and the value unchanged", got, err)
	}
	if _, err := Signing(7).MarshalText(); err == nil {
		t.Error("MarshalText of an unknown scheme gave no error")
	}
}

// Against a real loopback server, each scheme passes the fake worker's
// verification and a wrong secret gets the server's code in an *AuthError.
func TestSchemesAgainstVerifyingServer(t *testing.T) {
	for _, scheme := range []Signing{SigningBodyPath, SigningTimestamp, SigningDual} {
		t.Run(scheme.String(), func(t *testing.T) {
			ver := &testVerifier{Secret: testSecret, Scheme: scheme}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, err := ver.VerifyRequest(r); err != nil {
					var ae *AuthError
					errors.As(err, &ae)
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(ae.StatusCode)
					io.WriteString(w, `{"error":"`+ae.Message+`","code":"`+string(ae.Code)+`"}`)
					return
				}
				io.WriteString(w, `{"ok":true}`)
			}))
			defer srv.Close()
			good, _ := NewWorkerClient(WithBaseURL(srv.URL), WithSecret(testSecret), WithSigning(scheme))
			var out struct{ OK bool }
			if err := good.Do(context.Background(), "POST", "/v1/billing/check-sufficient?x=%20y", map[string]string{"userId": "u"}, &out); err != nil || !out.OK {
				t.Fatalf("good client: %v", err)
			}
			bad, _ := NewWorkerClient(WithBaseURL(srv.URL), WithSecret(strings.Repeat("w", 40)), WithSigning(scheme))
			err := bad.Do(context.Background(), "GET", "/v1/x", nil, nil)
			var ae *AuthError
			if !errors.As(err, &ae) || ae.Code != CodeInvalidSignature || ae.StatusCode != 403 {
				t.Fatalf("wrong secret: %T %v", err, err)
			}
			http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		})
	}
}

// A config option sets the fields it names and keeps the others: two
// WithRetry (or WithCache) options add up instead of resetting each other.
func TestConfigOptionsMerge(t *testing.T) {
	c, err := NewWorkerClient(WithSecret(testSecret),
		WithRetry(RetryConfig{MaxAttempts: 2, AttemptTimeout: time.Second}),
		WithRetry(RetryConfig{MaxWait: 3 * time.Second}),
		WithCache(CacheConfig{BalanceTTL: -1}),
		WithCache(CacheConfig{MaxLinks: 7}))
	if err != nil {
		t.Fatal(err)
	}
	k := c.core
	if k.maxAttempts != 2 || k.maxWait != 3*time.Second || k.backoffBase != time.Second {
		t.Errorf("retry: %d attempts, max wait %s, base %s; want 2, 3s, 1s", k.maxAttempts, k.maxWait, k.backoffBase)
	}
	if st := k.http.Transport.(*signingTransport); st.attemptTimeout != time.Second {
		t.Errorf("attempt timeout %s, want 1s", st.attemptTimeout)
	}
	if c.billing.ttl != 0 || c.exports.noCache {
		t.Errorf("cache: balance TTL %s (want 0: off), links off %v (want on)", c.billing.ttl, c.exports.noCache)
	}
}

// The request that leaves for a target is the one parsing the base URL
// joined with the target would make: same URL on the wire (and so in the
// signature), same Host, same path in errors.
func TestRequestURLMatchesParsedTarget(t *testing.T) {
	for _, base := range []string{"https://worker.test", "https://worker.test/base", "http://127.0.0.1:/a%20b", "https://[::1]:8443/p"} {
		for _, target := range []string{
			"/v1/billing/balance/u1", "/v1/x?period=day&a=%2F", "/v1/x?", "/v1/x??", "/v1/a%2Fb/c%20d",
			"/v1/%7Bid%7D", "/v1/{id}", "/v1/caf%C3%A9?q=%C3%A9", "/v1/a;b=c/d@e", "/",
		} {
			var got *http.Request
			c := newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
				got = r
				return jsonResponse(r, 404, `{}`), nil
			}), WithBaseURL(base), WithInsecureHTTP())
			var apiErr *APIError
			if err := c.Do(context.Background(), "GET", target, nil, nil); !errors.As(err, &apiErr) {
				t.Fatalf("%s + %s: %v; want the 404's *APIError", base, target, err)
			}
			b, _ := url.Parse(strings.TrimSuffix(base, "/"))
			want, err := http.NewRequest("GET", b.Scheme+"://"+b.Host+strings.TrimSuffix(b.Path, "/")+target, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got.URL.String() != want.URL.String() || got.URL.RequestURI() != want.URL.RequestURI() || got.Host != want.Host {
				t.Errorf("%s + %s: sent %s (target %s, Host %s); want %s (target %s, Host %s)", base, target,
					got.URL, got.URL.RequestURI(), got.Host, want.URL, want.URL.RequestURI(), want.Host)
			}
			if path, _, _ := strings.Cut(target, "?"); apiErr.Path != strings.TrimSuffix(b.Path, "/")+path {
				t.Errorf("%s + %s: the error names path %q", base, target, apiErr.Path)
			}
		}
	}
}
