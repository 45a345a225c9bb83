package sheentest_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

var genReq = sheen.GenerateRequest{UserID: "u1", ProjectID: "p1", Prompt: "Add a dark mode toggle"}

// rawGenerate posts body to the server's /generate signed over the body
// alone (the deployed scheme), outside the SDK.
func rawGenerate(t *testing.T, ctx context.Context, srv *sheentest.Server, body string) *http.Response {
	t.Helper()
	mac := hmac.New(sha256.New, []byte(srv.Secret))
	mac.Write([]byte(body))
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/generate", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(sheen.HeaderSignature, hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

const rawBody = `{"userId":"u1","projectId":"p1","prompt":"Add a dark mode toggle"}`

// Under every scheme the SDK's client is served, and a client that signs
// another way, or with another secret, is refused as the worker would: 401
// {"error":"Invalid signature"} under the deployed schemes.
func TestGenerateServedUnderEveryScheme(t *testing.T) {
	for _, scheme := range []sheen.Signing{sheen.SigningBodyPath, sheen.SigningTimestamp, sheen.SigningDual} {
		srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithSigning(scheme), sheentest.WithProjectFolder("u1", "p1"))
		c, err := srv.Client()
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.AI.Generate(within(t), genReq)
		if err != nil || res.Output != "Done: Add a dark mode toggle" || res.Fallback {
			t.Fatalf("%v: %+v, %v", scheme, res, err)
		}
		if n := srv.Calls(sheen.RouteGenerate); n != 1 {
			t.Errorf("%v: %d calls of %s", scheme, n, sheen.RouteGenerate)
		}
		other := sheen.SigningDual
		if scheme != sheen.SigningBodyPath {
			other = sheen.SigningBodyPath
		}
		for name, opt := range map[string]sheen.Option{
			"other scheme": sheen.WithSigning(other),
			"other secret": sheen.WithGenerate(sheen.GenerateConfig{Secret: strings.Repeat("x", 40)}),
		} {
			c, _ := srv.Client(opt)
			_, err := c.AI.Generate(within(t), genReq)
			var auth *sheen.AuthError
			if !errors.As(err, &auth) {
				t.Errorf("%v, %s: %v", scheme, name, err)
			}
		}
	}
	srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithSigning(sheen.SigningDual), sheentest.WithProjectFolder("u1", "p1"))
	c, _ := srv.Client(sheen.WithSigning(sheen.SigningBodyPath))
	_, err := c.AI.Generate(within(t), genReq)
	if err == nil || !strings.Contains(err.Error(), "401 http_401: Invalid signature") {
		t.Errorf("the deployed refusal: %v", err)
	}
}

// The answer streams as the deployed worker's does: a 200, chunked, JSON
// content type, a space at once while the model runs, then one document.
func TestGenerateStreamsAHeartbeatFirst(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithSigning(sheen.SigningDual),
		sheentest.WithProjectFolder("u1", "p1"), sheentest.WithGenerateDelay(time.Hour))
	resp := rawGenerate(t, within(t), srv, rawBody)
	if resp.StatusCode != 200 || resp.ContentLength != -1 || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("%d, length %d, %s", resp.StatusCode, resp.ContentLength, resp.Header.Get("Content-Type"))
	}
	// The model runs for an hour: the space can only be the heartbeat.
	b, err := bufio.NewReader(resp.Body).ReadByte()
	if err != nil || b != ' ' {
		t.Fatalf("first byte %q, %v", b, err)
	}

	srv = sheentest.NewServer(sheentest.WithTest(t), sheentest.WithSigning(sheen.SigningDual), sheentest.WithProjectFolder("u1", "p1"),
		sheentest.WithGenerateDelay(50*time.Millisecond), sheentest.WithGenerateHeartbeat(5*time.Millisecond))
	body, err := io.ReadAll(rawGenerate(t, within(t), srv, rawBody).Body)
	doc := bytes.TrimLeft(body, " ")
	if err != nil || len(doc) == len(body) || string(doc) != `{"success":true,"output":"Done: Add a dark mode toggle"}` {
		t.Errorf("body %q, %v", body, err)
	}
}

// The hourly budget, shared by every client: past it, 429
// {"error":"Rate limit exceeded"} with no hint; the SDK hands the prompt to
// the fallback and counts the refusal.
func TestGenerateBudget(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithSigning(sheen.SigningDual),
		sheentest.WithProjectFolder("u1", "p1"), sheentest.WithGenerateBudget(2))
	for range 2 {
		if resp := rawGenerate(t, within(t), srv, rawBody); resp.StatusCode != 200 {
			t.Fatalf("within the budget: %d", resp.StatusCode)
		}
	}
	resp := rawGenerate(t, within(t), srv, rawBody)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 429 || strings.TrimSpace(string(body)) != `{"error":"Rate limit exceeded"}` {
		t.Fatalf("past the budget: %d %s", resp.StatusCode, body)
	}
	for k := range resp.Header {
		if k == "Retry-After" || strings.Contains(strings.ToLower(k), "ratelimit") {
			t.Errorf("a hint: %s", k)
		}
	}
	c, _ := srv.Client(sheen.WithGenerate(sheen.GenerateConfig{Fallback: func(_ context.Context, req sheen.GenerateRequest) (string, error) {
		return "other model", nil
	}}))
	res, err := c.AI.Generate(within(t), genReq)
	if err != nil || !res.Fallback || !errors.Is(res.FallbackCause, sheen.ErrRateLimited) {
		t.Fatalf("%+v %v", res, err)
	}
	if a := c.AI.RateLimitRefusals(); a.Count != 1 || a.Alerting {
		t.Errorf("refusals %+v", a)
	}
	if n := srv.Calls(sheen.RouteGenerate); n != 4 {
		t.Errorf("%d calls", n)
	}
}

// The worker's refusals, as section 9 gives them.
func TestGenerateRefusals(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithProjectFolder("u1", "p1"))
	c, _ := srv.Client()
	for body, want := range map[string]string{
		`{"prompt":"x"}`:                                       "400 http_400: userId and projectId are required",
		`{"userId":"u1","projectId":"p1"}`:                     "400 http_400: Prompt is required",
		`{"userId":"u1","projectId":"../../etc","prompt":"x"}`: "403 http_403: Invalid project path",
		`{"userId":"u1","projectId":"p2","prompt":"x"}`:        "404 http_404: Project directory not found",
	} {
		// Do signs body + path, which a v2.1 server checks on /generate.
		err := c.Do(within(t), http.MethodPost, "/generate", []byte(body), nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %s", body, err, want)
		}
	}
	_, err := c.AI.Generate(within(t), sheen.GenerateRequest{UserID: "u2", ProjectID: "p1", Prompt: "x"})
	if !errors.Is(err, sheen.ErrNotFound) {
		t.Errorf("another user's project: %v", err)
	}
}

// A project created by a build has a working folder: a prompt can run on it.
func TestGenerateOnABuiltProject(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t))
	c, _ := srv.Client()
	build, err := c.Builds.CreatePreview(within(t), sheen.CreatePreviewRequest{UserID: "u1", ProjectID: "bakery", Prompt: "a bakery"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.AI.Generate(within(t), sheen.GenerateRequest{UserID: "u1", ProjectID: build.ProjectID, Prompt: "Add a menu"})
	if err != nil || res.Output != "Done: Add a menu" {
		t.Fatalf("%+v %v", res, err)
	}
}

// The fake model's failures come back as the worker reports them, inside a
// 200; an output past the cap as "Output buffer exceeded".
func TestGenerateFailures(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithProjectFolder("u1", "p1"),
		sheentest.WithGenerator(func(_ context.Context, req sheen.GenerateRequest) (string, error) {
			switch req.Prompt {
			case "fail":
				return "", errors.New("Claude exited with code 1")
			case "huge":
				return strings.Repeat("x", sheen.MaxGenerateOutput+1), nil
			}
			return "ok", nil
		}))
	c, _ := srv.Client()
	var ge *sheen.GenerateError
	_, err := c.AI.Generate(within(t), sheen.GenerateRequest{UserID: "u1", ProjectID: "p1", Prompt: "fail"})
	if !errors.As(err, &ge) || ge.Message != "Claude exited with code 1" {
		t.Errorf("a failed run: %v", err)
	}
	_, err = c.AI.Generate(within(t), sheen.GenerateRequest{UserID: "u1", ProjectID: "p1", Prompt: "huge"})
	if !errors.As(err, &ge) || ge.Message != "Output buffer exceeded" || !errors.Is(err, sheen.ErrPayloadTooLarge) {
		t.Errorf("an output past the cap: %v", err)
	}
}

// Faults on /generate: whatever may have reached the worker is not sent
// again; a gateway's 503 goes to the fallback when there is one.
func TestGenerateFaults(t *testing.T) {
	for _, f := range []sheentest.Fault{
		{Route: sheen.RouteGenerate, ResetBeforeResponse: true},
		{Route: sheen.RouteGenerate, ResetAfterBytes: 1},
		{Route: sheen.RouteGenerate, Status: 502, Body: "<html>Bad Gateway</html>"},
	} {
		srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithProjectFolder("u1", "p1"), sheentest.WithGenerateDelay(20*time.Millisecond))
		srv.AddFault(f)
		c, _ := srv.Client()
		_, err := c.AI.Generate(within(t), genReq)
		if !errors.Is(err, sheen.ErrOutcomeUnknown) || srv.Calls(sheen.RouteGenerate) != 1 {
			t.Errorf("%+v: %v after %d calls", f, err, srv.Calls(sheen.RouteGenerate))
		}
	}
	srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithProjectFolder("u1", "p1"))
	srv.AddFault(sheentest.Fault{Route: sheen.RouteGenerate, Status: 503, Calls: []int{1}})
	c, _ := srv.Client(sheen.WithGenerate(sheen.GenerateConfig{Fallback: func(context.Context, sheen.GenerateRequest) (string, error) { return "other", nil }}))
	res, err := c.AI.Generate(within(t), genReq)
	if err != nil || !res.Fallback || srv.Calls(sheen.RouteGenerate) != 1 {
		t.Errorf("503: %+v %v", res, err)
	}
	if res, err := c.AI.Generate(within(t), genReq); err != nil || res.Fallback {
		t.Errorf("then: %+v %v", res, err)
	}
}
