package sheen

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// genSecret is a generation secret apart from the main one.
const genSecret = "generate-secret-0123456789abcdef0123"

// The signature of a generation, under both kinds of scheme, against
// values computed here with crypto/hmac (and pinned from a separate
// implementation): body + path under v2.1, the raw body alone, with no
// timestamp, nonce or v2 header, under the deployed worker's schemes. The
// body on the wire is the signed one, byte for byte (no HTML escaping).
func TestGenerateSignatureVectors(t *testing.T) {
	req := GenerateRequest{UserID: "u1", ProjectID: "p1", Prompt: `Add a <dark> mode & "toggle"`}
	const wantBody = `{"userId":"u1","projectId":"p1","prompt":"Add a <dark> mode & \"toggle\""}`
	pinned := map[string]string{
		wantBody:                  "d289be79c0375e76aada379d4d4990a8b271fecf42b045012295ce514fe4a4dd",
		wantBody + "/generate":    "a4a17e3ca449bfd1d548d70b222de2809c34ee2a1cf6bcb288b84306f6be21dc",
		wantBody + "/ai/generate": "323d9c1f0ee2d8b9827e8c9e8cc496dcf38f247a80c95dc4edd19e228566fd90",
	}
	for _, tc := range []struct {
		scheme     Signing
		url        string
		wantTarget string
	}{
		{SigningBodyPath, "https://ai.test", "/generate"},
		{SigningBodyPath, "https://ai.test/ai", "/ai/generate"},
		{SigningBodyPath, "https://ai.test/ai/generate", "/ai/generate"},
		{SigningTimestamp, "https://ai.test", "/generate"},
		{SigningDual, "https://ai.test/ai/", "/ai/generate"},
	} {
		fake := &fakeGenerate{doc: okDoc}
		c := aiClient(t, fake, WithSigning(tc.scheme), WithGenerate(GenerateConfig{URL: tc.url, Secret: genSecret}))
		if _, err := c.AI.Generate(context.Background(), req); err != nil {
			t.Fatalf("%v %s: %v", tc.scheme, tc.url, err)
		}
		got := fake.requests()[0]
		if string(got.body) != wantBody || got.target != tc.wantTarget {
			t.Errorf("%v %s: sent %s to %s", tc.scheme, tc.url, got.body, got.target)
		}
		signed := wantBody
		if tc.scheme == SigningBodyPath {
			signed += tc.wantTarget
		}
		mac := hmac.New(sha256.New, []byte(genSecret))
		mac.Write([]byte(signed))
		want := hex.EncodeToString(mac.Sum(nil))
		if sig := got.header.Get(HeaderSignature); sig != want || sig != pinned[signed] {
			t.Errorf("%v %s: signature %s, want %s", tc.scheme, tc.url, sig, want)
		}
		for _, h := range []string{HeaderTimestamp, HeaderNonce, HeaderSignatureV2} {
			if v := got.header.Get(h); v != "" {
				t.Errorf("%v: sent %s: %s", tc.scheme, h, v)
			}
		}
	}
}

// Each attempt is signed again with the scheme of the moment: a client
// left to choose follows its signer when it moves to the deployed scheme.
func TestGenerateSignsWithTheCurrentScheme(t *testing.T) {
	fake := &fakeGenerate{doc: okDoc}
	c := aiClient(t, fake)
	c.core.signer.scheme.Store(int32(SigningDual))
	if _, err := c.AI.Generate(context.Background(), genReq); err != nil {
		t.Fatal(err)
	}
	got := fake.requests()[0]
	mac := hmac.New(sha256.New, []byte(testSecret))
	mac.Write(got.body)
	if got.header.Get(HeaderSignature) != hex.EncodeToString(mac.Sum(nil)) {
		t.Error("not signed over the body alone after the move to the dual scheme")
	}
}

// The fallback answers a 429 at once (the budget is hourly), a 502/503/504,
// and a worker that stays unreachable once the retries are spent; the
// result says so. It does not answer refusals or failed runs.
func TestGenerateFallback(t *testing.T) {
	var mu sync.Mutex
	var asked []GenerateRequest
	fallback := WithGenerate(GenerateConfig{Fallback: func(_ context.Context, req GenerateRequest) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, req)
		return "fallback: " + req.Prompt, nil
	}})
	for _, tc := range []struct {
		name     string
		fake     *fakeGenerate
		refuse   int
		fallback bool
		sent     int
		cause    error
	}{
		{"429", &fakeGenerate{status: 429, body: `{"error":"Rate limit exceeded"}`}, 0, true, 1, ErrRateLimited},
		{"503", &fakeGenerate{status: 503}, 0, true, 1, ErrServer},
		{"502", &fakeGenerate{status: 502, body: "<html>bad gateway</html>"}, 0, true, 1, ErrServer},
		{"refused", &fakeGenerate{doc: okDoc}, 100, true, 0, syscall.ECONNREFUSED},
		{"refused then up", &fakeGenerate{doc: okDoc}, 1, false, 1, nil},
		{"400", &fakeGenerate{status: 400, body: `{"error":"Prompt is required"}`}, 0, false, 1, nil},
		{"500", &fakeGenerate{status: 500}, 0, false, 1, nil},
		{"failed run", &fakeGenerate{doc: `{"success":false,"error":"boom"}`}, 0, false, 1, nil},
		{"reset", &fakeGenerate{chunks: []string{}, resetAfter: true}, 0, false, 1, nil},
	} {
		asked = nil
		c := newTestClient(t, &refused{n: tc.refuse, next: pipeTransport{tc.fake}}, fallback)
		res, err := c.AI.Generate(context.Background(), genReq, WithCorrelationID("corr-9"))
		if n := len(tc.fake.requests()); n != tc.sent {
			t.Errorf("%s: the worker saw %d requests, want %d", tc.name, n, tc.sent)
		}
		if !tc.fallback {
			if len(asked) != 0 || res != nil && res.Fallback {
				t.Errorf("%s: the fallback answered: %+v %v", tc.name, res, err)
			}
			continue
		}
		if err != nil || !res.Fallback || res.Output != "fallback: "+genReq.Prompt || len(asked) != 1 || asked[0] != genReq {
			t.Fatalf("%s: got %+v, %v", tc.name, res, err)
		}
		if !errors.Is(res.FallbackCause, tc.cause) || errors.Is(res.FallbackCause, ErrOutcomeUnknown) || res.CorrelationID != "corr-9" {
			t.Errorf("%s: cause %v, correlation id %q", tc.name, res.FallbackCause, res.CorrelationID)
		}
	}

	// A failing fallback reports both failures.
	c := aiClient(t, &fakeGenerate{status: 429, body: `{"error":"Rate limit exceeded"}`},
		WithGenerate(GenerateConfig{Fallback: func(context.Context, GenerateRequest) (string, error) { return "", errors.New("fallback model down") }}))
	_, err := c.AI.Generate(context.Background(), genReq)
	if !errors.Is(err, ErrRateLimited) || err == nil || !strings.Contains(err.Error(), "fallback model down") {
		t.Errorf("a failed fallback: %v", err)
	}

	// Without a fallback, a 503 is an outcome unknown, and 429s are retried
	// and then a *RateLimitError with nothing known of the quota.
	c = aiClient(t, &fakeGenerate{status: 503})
	if _, err := c.AI.Generate(context.Background(), genReq); !errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("503 without a fallback: %v", err)
	}
	fake := &fakeGenerate{status: 429, body: `{"error":"Rate limit exceeded"}`}
	c = aiClient(t, fake, WithRetry(RetryConfig{MaxAttempts: 2, MaxWait: time.Second}))
	_, err = c.AI.Generate(context.Background(), genReq)
	var rl *RateLimitError
	if !errors.As(err, &rl) || rl.Limit != -1 || rl.Remaining != -1 || !rl.Reset.IsZero() || rl.Message != "Rate limit exceeded" || len(fake.requests()) != 2 {
		t.Errorf("429 without a fallback: %#v after %d requests", err, len(fake.requests()))
	}
}

// The worker's 429 for its hourly generation budget carries no hint: it
// must not pause the client's other calls. A 429 with a Retry-After does.
func TestGenerate429PausesOnlyWithAHint(t *testing.T) {
	c := aiClient(t, &fakeGenerate{status: 429, body: `{"error":"Rate limit exceeded"}`}, WithRetry(RetryConfig{MaxAttempts: 1, MaxWait: time.Minute}))
	if _, err := c.AI.Generate(context.Background(), genReq); !errors.Is(err, ErrRateLimited) {
		t.Fatal(err)
	}
	if p := c.RateLimit().PausedUntil; !p.IsZero() {
		t.Errorf("a 429 without a hint paused the client until %s", p)
	}
	c = aiClient(t, &fakeGenerate{status: 429, body: `{"error":"Rate limit exceeded"}`, header: http.Header{"Retry-After": {"30"}}}, WithRetry(RetryConfig{MaxAttempts: 1, MaxWait: time.Minute}))
	if _, err := c.AI.Generate(context.Background(), genReq); !errors.Is(err, ErrRateLimited) {
		t.Fatal(err)
	}
	if p := c.RateLimit().PausedUntil; time.Until(p) < 20*time.Second {
		t.Errorf("a 429 with Retry-After: 30 paused the client until %s", p)
	}
}

// The seed's alert rule: more than 3 refusals in 5 minutes. It is logged
// once when it starts, and ends when the refusals age out of the window.
func TestGenerateRateLimitRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		c := aiClient(t, &fakeGenerate{status: 429, body: `{"error":"Rate limit exceeded"}`},
			WithLogger(logger), WithGenerate(GenerateConfig{Fallback: func(context.Context, GenerateRequest) (string, error) { return "ok", nil }}))
		for i := range 5 {
			if a := c.AI.RateLimitRefusals(); a.Count != i || a.Alerting != (i > 3) || a.Window != 5*time.Minute {
				t.Fatalf("after %d refusals: %+v", i, a)
			}
			if _, err := c.AI.Generate(context.Background(), genReq); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Minute)
		}
		// The first refusal, 5 minutes ago, is out of the window.
		if a := c.AI.RateLimitRefusals(); a.Count != 4 || !a.Alerting || a.Last.IsZero() {
			t.Errorf("after 5 minutes: %+v", a)
		}
		time.Sleep(time.Minute)
		if a := c.AI.RateLimitRefusals(); a.Count != 3 || a.Alerting {
			t.Errorf("after 6 minutes: %+v", a)
		}
		time.Sleep(5 * time.Minute)
		if a := c.AI.RateLimitRefusals(); a.Count != 0 || a.Alerting || !a.Last.IsZero() {
			t.Errorf("after 11 minutes: %+v", a)
		}
		if n := strings.Count(logs.String(), "more than 3 generations"); n != 1 {
			t.Errorf("the alert was logged %d times:\n%s", n, logs.String())
		}
	})
}

// CLAUDE_WORKER_URL and CLAUDE_SHARED_SECRET configure the endpoint when
// set; options win over them; bad values are refused naming the setting,
// never showing a secret.
func TestGenerateConfig(t *testing.T) {
	t.Setenv(EnvBaseURL, "https://worker.test")
	t.Setenv(EnvSecret, testSecret)
	t.Setenv(EnvGenerateURL, "https://claude.test/runner/generate")
	t.Setenv(EnvGenerateSecret, genSecret)
	c, err := NewWorkerClientFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.ai.url != "https://claude.test/runner/generate" || c.ai.secretFrom != EnvGenerateSecret {
		t.Errorf("from the environment: %s, secret from %s", c.ai.url, c.ai.secretFrom)
	}
	c, err = NewWorkerClientFromEnv(WithGenerate(GenerateConfig{URL: "https://other.test"}))
	if err != nil || c.ai.url != "https://other.test/generate" {
		t.Errorf("an option over the environment: %v %v", c, err)
	}
	t.Setenv(EnvGenerateURL, "")
	t.Setenv(EnvGenerateSecret, "")
	c, err = NewWorkerClientFromEnv()
	if err != nil || c.ai.url != "https://worker.test/generate" || c.ai.secretFrom != EnvSecret {
		t.Errorf("unset: %v %v", c, err)
	}

	t.Setenv(EnvGenerateSecret, "too-short-secret")
	_, err = NewWorkerClientFromEnv()
	if err == nil || !strings.Contains(err.Error(), EnvGenerateSecret+" is 16 characters") || strings.Contains(err.Error(), "too-short") {
		t.Errorf("a short secret: %v", err)
	}
	t.Setenv(EnvGenerateSecret, "")
	for _, tc := range []struct {
		opt  Option
		want string
	}{
		{WithGenerate(GenerateConfig{URL: "http://claude.example.com"}), "GenerateConfig.URL uses plain http://"},
		{WithGenerate(GenerateConfig{URL: "https://u:p@claude.test"}), "GenerateConfig.URL must not carry credentials"},
		{WithGenerate(GenerateConfig{URL: "  "}), "GenerateConfig.URL is blank"},
		{WithGenerate(GenerateConfig{Secret: "short"}), "GenerateConfig.Secret is 5 characters"},
	} {
		_, err := NewWorkerClient(WithSecret(testSecret), tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
	if _, err := NewWorkerClient(WithSecret(testSecret), WithGenerate(GenerateConfig{URL: "http://127.0.0.1:9/generate"})); err != nil {
		t.Errorf("http on loopback: %v", err)
	}
}

// Requests the worker would refuse, or that would name a folder outside
// the project's, are refused before anything is sent.
func TestGenerateValidation(t *testing.T) {
	fake := &fakeGenerate{doc: okDoc}
	c := aiClient(t, fake)
	for _, tc := range []struct {
		req   GenerateRequest
		opts  []CallOption
		field string
	}{
		{GenerateRequest{ProjectID: "p1", Prompt: "x"}, nil, "userId"},
		{GenerateRequest{UserID: "u1", ProjectID: " ", Prompt: "x"}, nil, "projectId"},
		{GenerateRequest{UserID: "u1", ProjectID: "..", Prompt: "x"}, nil, "projectId"},
		{GenerateRequest{UserID: "u1", ProjectID: "../p2", Prompt: "x"}, nil, "projectId"},
		{GenerateRequest{UserID: `u1\..`, ProjectID: "p1", Prompt: "x"}, nil, "userId"},
		{GenerateRequest{UserID: "u1", ProjectID: "p\x001", Prompt: "x"}, nil, "projectId"},
		{GenerateRequest{UserID: "u1", ProjectID: "p1"}, nil, "prompt"},
		{GenerateRequest{UserID: "u1", ProjectID: "p1", Prompt: strings.Repeat("x", MaxRequestBody)}, nil, "prompt"},
		{genReq, []CallOption{WithHeader("X-Sheen-Signature", "forged")}, "header X-Sheen-Signature"},
		{genReq, []CallOption{nil}, "call option"},
		{genReq, []CallOption{WithCallTimeout(0)}, "WithCallTimeout"},
	} {
		_, err := c.AI.Generate(context.Background(), tc.req, tc.opts...)
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("%+v: got %v, want a ValidationError on %s", tc.req, err, tc.field)
		}
	}
	//lint:ignore SA1012 a nil context is what is tested
	if _, err := c.AI.Generate(nil, genReq); err == nil {
		t.Error("a nil context was accepted")
	}
	if n := len(fake.requests()); n != 0 {
		t.Errorf("%d requests were sent", n)
	}
	var zero WorkerClient
	if _, err := zero.AI.Generate(context.Background(), genReq); !errors.Is(err, ErrNotConfigured) {
		t.Errorf("a zero client: %v", err)
	}
	if a := zero.AI.RateLimitRefusals(); a.Count != 0 || a.Window != 5*time.Minute {
		t.Errorf("a zero client's alert: %+v", a)
	}
}

// Per-call options apply: the correlation id and headers are sent, the
// Response describes the answer, and the debug log has one record per
// attempt with no secret, signature or prompt in it.
func TestGenerateCallOptionsAndLogs(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fake := &fakeGenerate{doc: okDoc}
	c := newTestClient(t, &refused{n: 1, next: pipeTransport{fake}}, WithLogger(logger), WithGenerate(GenerateConfig{Secret: genSecret}))
	var resp Response
	res, err := c.AI.Generate(context.Background(), genReq, WithCorrelationID("corr-7"), WithHeader("X-Tenant", "t1"), WithResponse(&resp))
	if err != nil {
		t.Fatal(err)
	}
	got := fake.requests()[0]
	if got.header.Get("X-Correlation-Id") != "corr-7" || got.header.Get("X-Tenant") != "t1" || got.header.Get("Content-Type") != "application/json" {
		t.Errorf("headers sent: %v", got.header)
	}
	if res.CorrelationID != "corr-7" || resp.StatusCode != 200 || resp.Attempts != 2 || resp.CorrelationID != "corr-7" {
		t.Errorf("result %+v, response %+v", res, resp)
	}
	out := logs.String()
	if n := strings.Count(out, "sheen: attempt"); n != 2 || !strings.Contains(out, "path=/base/generate") {
		t.Errorf("logs:\n%s", out)
	}
	for _, secret := range []string{genSecret, testSecret, got.header.Get(HeaderSignature), genReq.Prompt} {
		if strings.Contains(out, secret) {
			t.Errorf("the log shows %q:\n%s", secret, out)
		}
	}
}

// GenerateError matches its sentinels and says what failed.
func TestGenerateError(t *testing.T) {
	e := &GenerateError{Message: "Output buffer exceeded", CorrelationID: "c1"}
	if !errors.Is(e, ErrGenerationFailed) || !errors.Is(e, ErrPayloadTooLarge) || errors.Is(e, ErrServer) {
		t.Error("sentinels")
	}
	if e.Error() != "sheen: POST /generate: generation failed: Output buffer exceeded (correlation id c1)" {
		t.Error(e.Error())
	}
	if errors.Is(&GenerateError{Message: "boom"}, ErrPayloadTooLarge) {
		t.Error("any failure matches ErrPayloadTooLarge")
	}
	var nilErr *GenerateError
	if nilErr.Error() == "" || nilErr.Is(ErrGenerationFailed) {
		t.Error("a nil *GenerateError")
	}
}
