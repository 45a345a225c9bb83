package sheentest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func client(t *testing.T, srv *sheentest.Server, opts ...sheen.Option) *sheen.WorkerClient {
	t.Helper()
	c, err := srv.Client(append([]sheen.Option{sheen.WithRetry(sheen.RetryConfig{BackoffBase: time.Millisecond})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type balanceWire struct {
	Balance struct {
		Total int64 `json:"total"`
	} `json:"balance"`
}

func TestServerVerifiesEveryScheme(t *testing.T) {
	for _, scheme := range []sheen.Signing{sheen.SigningBodyPath, sheen.SigningTimestamp, sheen.SigningDual} {
		t.Run(scheme.String(), func(t *testing.T) {
			srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithSigning(scheme), sheentest.WithShapes(sheentest.ShapesV21))
			var out balanceWire
			if err := client(t, srv).Do(context.Background(), "GET", "/v1/billing/balance/u1", nil, &out); err != nil {
				t.Fatal(err)
			}
			if out.Balance.Total != 3900 {
				t.Fatalf("new users start with the welcome bonus and daily gift: %+v", out)
			}
			wrong := client(t, srv, sheen.WithSecret(strings.Repeat("x", 40)))
			err := wrong.Do(context.Background(), "GET", "/v1/billing/balance/u1", nil, nil)
			var ae *sheen.AuthError
			if !errors.As(err, &ae) || ae.StatusCode != 403 || ae.Code != sheen.CodeInvalidSignature {
				t.Fatalf("wrong secret: %v", err)
			}
		})
	}
}

func TestServerRefusesWrongSchemeWithItsCode(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithSigning(sheen.SigningDual))
	err := client(t, srv, sheen.WithSigning(sheen.SigningBodyPath)).Do(context.Background(), "GET", "/v1/billing/balance/u1", nil, nil)
	var ae *sheen.AuthError
	if !errors.As(err, &ae) || ae.Code != sheen.CodeTimestampOutOfRange {
		t.Fatalf("a v2.1 signature sent to a dual worker lacks the timestamp: %v", err)
	}
}

// captureTransport keeps the last signed request so a test can replay it.
type captureTransport struct {
	header http.Header
	target string
	body   []byte
}

func (c *captureTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.header, c.target = r.Header.Clone(), r.URL.String()
	if r.Body != nil {
		c.body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(c.body))
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestServerRefusesReplays(t *testing.T) {
	for _, scheme := range []sheen.Signing{sheen.SigningTimestamp, sheen.SigningDual} {
		t.Run(scheme.String(), func(t *testing.T) {
			srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithSigning(scheme))
			capture := &captureTransport{}
			c := client(t, srv, sheen.WithHTTPClient(&http.Client{Transport: capture}))
			in := map[string]any{"userId": "u1", "operationType": "main_build", "projectSize": "small", "isUpdate": false}
			if err := c.Do(context.Background(), "POST", "/v1/billing/check-sufficient", in, nil); err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest("POST", capture.target, bytes.NewReader(capture.body))
			req.Header = capture.header
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusConflict || !strings.Contains(string(body), string(sheen.CodeReplayAttackDetected)) {
				t.Fatalf("replay answered %d %s", resp.StatusCode, body)
			}
			http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		})
	}
}

func TestServerClockSkewIsLearnt(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithSigning(sheen.SigningDual), sheentest.WithClockSkew(-10*time.Minute))
	c := client(t, srv)
	if err := c.Do(context.Background(), "GET", "/v1/billing/balance/u1", nil, nil); err != nil {
		t.Fatal(err)
	}
	if off := c.ClockOffset(); off > -9*time.Minute || off < -11*time.Minute {
		t.Fatalf("offset %s", off)
	}
}

func TestServerRateLimits(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithRateLimit(3))
	c := client(t, srv)
	for i := 0; i < 3; i++ {
		if err := c.Do(context.Background(), "GET", "/v1/billing/balance/u1", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if s := c.RateLimit(); s.Remaining != 0 || s.AdvertisedLimit != 3 {
		t.Fatalf("limiter saw %+v", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := c.Do(ctx, "GET", "/v1/billing/balance/u1", nil, nil)
	var rl *sheen.RateLimitError
	if !errors.As(err, &rl) {
		t.Fatalf("a fourth request within the window cannot fit the deadline: %v", err)
	}
	if got := srv.Calls("GET /v1/billing/balance/{userId}"); got != 3 {
		t.Fatalf("the client sent %d requests; the fourth must not leave", got)
	}
}

func TestServerDeployedRateHeaders(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithDeployedRateHeaders())
	c := client(t, srv, sheen.WithRateLimit(6000))
	for i := 0; i < 80; i++ {
		if err := c.Do(context.Background(), "GET", "/v1/billing/balance/u1", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if s := c.RateLimit(); s.PerSecond != 100 {
		t.Fatalf("fixed headers slowed the client: %+v", s)
	}
}

func TestServerFaults(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t))
	route := "POST /v1/billing/check-sufficient"
	in := map[string]any{"userId": "u1", "operationType": "main_build", "projectSize": "small", "isUpdate": false}
	c := client(t, srv)

	srv.AddFault(sheentest.Fault{Route: route, Calls: []int{1}, Status: 503, Body: "<html>busy</html>"})
	if err := c.Do(context.Background(), "POST", route[5:], in, nil, sheen.WithIdempotencyKey("faults-1")); err != nil {
		t.Fatalf("a 503 is retried when the call is safe to repeat: %v", err)
	}
	srv.ClearFaults()

	srv.AddFault(sheentest.Fault{Route: route, Status: 402})
	err := c.Do(context.Background(), "POST", route[5:], in, nil)
	var ib *sheen.InsufficientBalanceError
	if !errors.As(err, &ib) || ib.Code != sheen.CodeInsufficientAITime {
		t.Fatalf("an empty 402: %v", err)
	}
	srv.ClearFaults()

	srv.AddFault(sheentest.Fault{Route: route, ResetBeforeResponse: true})
	if err := c.Do(context.Background(), "POST", route[5:], in, nil); err == nil {
		t.Fatal("a reset POST is not retried and fails")
	}
	srv.ClearFaults()

	srv.AddFault(sheentest.Fault{Route: "GET /v1/billing/balance/{userId}", Calls: []int{1}, TruncateAfterBytes: 10})
	var out map[string]any
	if err := c.Do(context.Background(), "GET", "/v1/billing/balance/u1", nil, &out); err != nil || out["totals"] == nil {
		t.Fatalf("a truncated GET is retried: %v", err)
	}
}

func TestServerBuildExportDownload(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t))
	c := client(t, srv)
	ctx := context.Background()
	var created struct {
		BuildID, ProjectID string
	}
	if err := c.Do(ctx, "POST", "/v1/create-preview-for-new-project", map[string]string{"userId": "u1", "prompt": "a bakery"}, &created); err != nil {
		t.Fatal(err)
	}
	var status struct {
		Status   string
		Finished bool
	}
	if err := c.Do(ctx, "GET", "/v1/builds/"+created.BuildID+"/status?userId=u1", nil, &status); err != nil || status.Status != "completed" {
		t.Fatalf("status %+v %v", status, err)
	}
	var link struct {
		DownloadURL string
		Filename    string
	}
	if err := c.Do(ctx, "GET", "/v1/projects/"+created.ProjectID+"/export?userId=u1", nil, &link); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(link.Filename, ".zip") {
		t.Fatalf("filename %q", link.Filename)
	}
	get := func(rangeHeader string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", link.DownloadURL, nil)
		if rangeHeader != "" {
			req.Header.Set("Range", rangeHeader)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, whole := get("")
	if resp.StatusCode != 200 || whole[0] != 0x1f || whole[1] != 0x8b {
		t.Fatalf("the archive is a gzip whatever its name says: %d % x", resp.StatusCode, whole[:4])
	}
	resp, part := get("bytes=10-")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, whole[10:]) {
		t.Fatalf("Range: %d", resp.StatusCode)
	}
	srv.ExpireLinks()
	if resp, _ := get(""); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("expired link answered %d", resp.StatusCode)
	}
	for _, r := range srv.Requests() {
		if strings.Contains(r.Path, "X-Signature") {
			t.Fatalf("the request log keeps a signed query: %s", r.Path)
		}
		if r.Header.Get(sheen.HeaderSignature) != "" && r.Header.Get(sheen.HeaderSignature) != "[redacted]" {
			t.Fatal("the request log keeps a signature")
		}
	}
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
}

func TestServerBodyLimit(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t))
	req, _ := http.NewRequest("POST", srv.URL+"/v1/create-preview-for-new-project", bytes.NewReader(bytes.Repeat([]byte("a"), 1<<20+10)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || !strings.Contains(string(body), "FST_ERR_CTP_BODY_TOO_LARGE") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
}

// strayBody sends a body on GET requests after the SDK has signed them
// (over the empty body, as the spec asks).
type strayBody struct{ base *http.Transport }

func (s strayBody) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet {
		return s.base.RoundTrip(r)
	}
	b := []byte(`{"userId":"someone-else"}`)
	r = r.Clone(r.Context())
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
	return s.base.RoundTrip(r)
}

// The deployed worker signs GET and DELETE over an empty body whatever is
// sent; the fake must verify them the same way, or a client that signs a
// GET's body would pass here and fail in production.
func TestServerVerifiesGETOverAnEmptyBody(t *testing.T) {
	for _, scheme := range []sheen.Signing{sheen.SigningBodyPath, sheen.SigningTimestamp, sheen.SigningDual} {
		t.Run(scheme.String(), func(t *testing.T) {
			srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithSigning(scheme))
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			c := client(t, srv, sheen.WithHTTPClient(&http.Client{Transport: strayBody{tr}}))
			if err := c.Do(context.Background(), "GET", "/v1/billing/balance/u1", nil, nil); err != nil {
				t.Fatalf("a GET signed over the empty body, sent with a stray body: %v", err)
			}
		})
	}
}
