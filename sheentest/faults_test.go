package sheentest_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

const (
	routeBalance = "GET /v1/billing/balance/{userId}"
	routeCheck   = "POST /v1/billing/check-sufficient"
	routeCreate  = "POST /v1/create-preview-for-new-project"
	routeStore   = "GET /_store/{key}"
)

// Every fault kind the fake worker plays, driven through the SDK's services,
// with the typed outcome a user would branch on.
func TestFaultKindsThroughTheSDK(t *testing.T) {
	ctx := context.Background()
	check := sheen.CheckSufficientRequest{UserID: "u1", OperationType: sheen.OperationMainBuild, ProjectSize: sheen.ProjectSizeSmall}
	create := sheen.CreatePreviewRequest{UserID: "u1", Prompt: "a bakery"}

	t.Run("HTML page with 200", func(t *testing.T) {
		srv, c := faultServer(t, sheentest.Fault{Route: routeBalance, Status: 200, Body: "<html>Sign in</html>"})
		_, err := c.Billing.Balance(ctx, "u1")
		if !errors.Is(err, sheen.ErrInvalidResponse) {
			t.Fatalf("want ErrInvalidResponse, got %v", err)
		}
		if n := srv.Calls(routeBalance); n != 1 {
			t.Fatalf("%d calls: a usable answer that is not JSON is not retried", n)
		}
	})

	t.Run("HTML 502 from a proxy, every time", func(t *testing.T) {
		srv, c := faultServer(t, sheentest.Fault{Route: routeBalance, Status: 502, Body: "<html><h1>502 Bad Gateway</h1></html>"})
		_, err := c.Billing.Balance(ctx, "u1")
		var ae *sheen.APIError
		if !errors.As(err, &ae) || ae.StatusCode != 502 || !errors.Is(err, sheen.ErrServer) {
			t.Fatalf("want the 502 as *APIError, got %v", err)
		}
		if n := srv.Calls(routeBalance); n != sheen.DefaultMaxAttempts {
			t.Fatalf("%d calls, want %d attempts", n, sheen.DefaultMaxAttempts)
		}
	})

	t.Run("empty 402 on check-sufficient is an answer", func(t *testing.T) {
		_, c := faultServer(t, sheentest.Fault{Route: routeCheck, Status: 402})
		res, err := c.Billing.CheckSufficient(ctx, check)
		if err != nil || res.Sufficient {
			t.Fatalf("want Sufficient=false and no error, got %+v %v", res, err)
		}
	})

	for name, body := range map[string]string{
		"billing": `{"error":"INSUFFICIENT_AI_TIME","http_status":402,"balance_seconds":30,"suggestions":[{"type":"package","key":"mini","minutes":60}]}`,
		"builds":  `{"success":false,"error":"insufficient_ai_time","message":"Insufficient AI time balance to start build","balance":{"welcomeBonus":0,"dailyGift":30,"paid":0,"total":30},"required":120}`,
		"late":    `{"success":false,"error":"insufficient_ai_time","message":"short","available":30,"required":120,"correlationId":"c1"}`,
		"v2.1":    `{"sufficient":false,"estimate":{"estimatedSeconds":120},"balance":{"welcomeBonus":30,"dailyGift":0,"paid":0,"total":30}}`,
	} {
		t.Run("402 "+name+" shape on create", func(t *testing.T) {
			_, c := faultServer(t, sheentest.Fault{Route: routeCreate, Status: 402, Body: body, Header: http.Header{"Content-Type": {"application/json"}}})
			_, err := c.Builds.CreatePreview(ctx, create)
			var short *sheen.InsufficientBalanceError
			if !errors.As(err, &short) || !short.HasAvailable || short.Available != 30*time.Second {
				t.Fatalf("want *InsufficientBalanceError with 30s available, got %v", err)
			}
		})
	}

	t.Run("delay past the deadline", func(t *testing.T) {
		_, c := faultServer(t, sheentest.Fault{Route: routeBalance, Delay: time.Minute})
		dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		if _, err := c.Billing.Balance(dctx, "u1"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want context.DeadlineExceeded, got %v", err)
		}
	})

	t.Run("reset before the answer: GET retried", func(t *testing.T) {
		srv, c := faultServer(t, sheentest.Fault{Route: routeBalance, Calls: []int{1, 2}, ResetBeforeResponse: true})
		if _, err := c.Billing.Balance(ctx, "u1"); err != nil {
			t.Fatal(err)
		}
		if n := srv.Calls(routeBalance); n != 3 {
			t.Fatalf("%d calls, want 3", n)
		}
	})

	t.Run("reset before the answer: build creation not retried", func(t *testing.T) {
		srv, c := faultServer(t, sheentest.Fault{Route: routeCreate, Calls: []int{1}, ResetBeforeResponse: true})
		if _, err := c.Builds.CreatePreview(ctx, create); err == nil {
			t.Fatal("a create whose answer was lost must fail, not be sent twice")
		}
		if n := srv.Calls(routeCreate); n != 1 {
			t.Fatalf("%d calls: a POST that may have run is not retried", n)
		}
	})

	t.Run("429 asking for an hour", func(t *testing.T) {
		_, c := faultServer(t, sheentest.Fault{Route: routeCreate, Status: 429, Body: `{"error":"Rate limit exceeded"}`,
			Header: http.Header{"Retry-After": {"3600"}, "Content-Type": {"application/json"}}})
		_, err := c.Builds.CreatePreview(ctx, create)
		var rl *sheen.RateLimitError
		if !errors.As(err, &rl) || rl.RetryAfter != time.Hour {
			t.Fatalf("want *RateLimitError with an hour's Retry-After, got %v", err)
		}
	})

	t.Run("download broken mid-way resumes", func(t *testing.T) {
		srv, c := faultServer(t, sheentest.Fault{Route: routeStore, Calls: []int{1}, ResetAfterBytes: 1000})
		got, res, err := buildAndDownload(t, srv, c)
		if err != nil || res.Resumes != 1 {
			t.Fatalf("want one resume, got %+v %v", res, err)
		}
		if !bytes.Equal(got, srv.Artifact(srv.LatestVersion(res.Link.Version.ProjectID))) {
			t.Fatal("the resumed download differs from the archive")
		}
	})

	t.Run("download cut short every time", func(t *testing.T) {
		srv, c := faultServer(t, sheentest.Fault{Route: routeStore, TruncateAfterBytes: 1000})
		_, _, err := buildAndDownload(t, srv, c)
		if !errors.Is(err, sheen.ErrTruncated) {
			t.Fatalf("want ErrTruncated, got %v", err)
		}
	})

	t.Run("expired link is refreshed", func(t *testing.T) {
		srv, c := faultServer(t)
		srv.AddFault(sheentest.Fault{Route: routeStore, Calls: []int{1}, Status: 403, Body: "<Error><Code>AccessDenied</Code></Error>"})
		got, res, err := buildAndDownload(t, srv, c)
		if err != nil || !res.LinkRefreshed || !bytes.Equal(got, srv.Artifact(srv.LatestVersion(res.Link.Version.ProjectID))) {
			t.Fatalf("want a refreshed link and the whole archive, got %+v %v", res, err)
		}
	})
}

func faultServer(t *testing.T, faults ...sheentest.Fault) (*sheentest.Server, *sheen.WorkerClient) {
	t.Helper()
	srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithRateLimit(6000), sheentest.WithArtifactPadding(64<<10))
	for _, f := range faults {
		srv.AddFault(f)
	}
	return srv, client(t, srv, sheen.WithRateLimit(6000))
}

// buildAndDownload builds a project and downloads its export into memory.
func buildAndDownload(t *testing.T, srv *sheentest.Server, c *sheen.WorkerClient) ([]byte, *sheen.DownloadResult, error) {
	t.Helper()
	ctx := context.Background()
	b, err := c.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: "u1", Prompt: "a bakery"})
	if err != nil {
		t.Fatal(err)
	}
	link, err := c.Exports.ProjectLink(ctx, b.ProjectID, "u1")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	res, err := c.Exports.Download(ctx, link, &buf, &sheen.DownloadOptions{Retries: 2})
	return buf.Bytes(), res, err
}
