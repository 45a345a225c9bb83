package sheen

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jarcoal/httpmock"
)

// newMockClient makes a client over an httpmock transport (under the signer,
// so signing runs) with retries off unless opts turn them on.
func newMockClient(t *testing.T, opts ...Option) (*WorkerClient, *httpmock.MockTransport) {
	t.Helper()
	mock := httpmock.NewMockTransport()
	c := newTestClient(t, mock, append([]Option{WithRetry(RetryConfig{MaxAttempts: 1, MaxWait: time.Minute})}, opts...)...)
	return c, mock
}

func TestErrorEnvelopes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		status    int
		ctype     string
		body      string
		wantCode  ErrorCode
		wantMsg   string
		wantRetry time.Duration
		sentinel  error
	}{
		{"code+error", 403, "application/json", `{"error":"Signature validation failed","code":"INVALID_SIGNATURE","details":{"x":1}}`,
			"INVALID_SIGNATURE", "Signature validation failed", 0, ErrUnauthorized},
		{"framework", 400, "application/json", `{"statusCode":400,"code":"FST_ERR_VALIDATION","error":"Bad Request","message":"body must have required property 'userId'"}`,
			"FST_ERR_VALIDATION", "body must have required property 'userId'", 0, nil},
		{"success flag", 409, "application/json", `{"success":false,"error":"project_creation_in_progress","message":"A project is being created"}`,
			"project_creation_in_progress", "A project is being created", 0, ErrConflict},
		{"nested", 429, "application/json", `{"ok":false,"error":{"code":"RATE_LIMITED","message":"slow down","retryAfter":30}}`,
			"RATE_LIMITED", "slow down", 30 * time.Second, ErrRateLimited},
		{"data/error", 429, "application/json", `{"data":null,"error":{"code":"RATE_LIMIT_EXCEEDED","message":"too many","hint":"wait"},"status":429}`,
			"RATE_LIMIT_EXCEEDED", "too many (wait)", 0, ErrRateLimited},
		{"plain", 429, "application/json", `{"error":"Rate limit exceeded"}`,
			"http_429", "Rate limit exceeded", 0, ErrRateLimited},
		{"uppercase code in error", 404, "application/json", `{"error":"PROJECT_NOT_FOUND"}`,
			"PROJECT_NOT_FOUND", "PROJECT_NOT_FOUND", 0, ErrNotFound},
		{"empty", 503, "", ``, "http_503", "Service Unavailable (empty body)", 0, ErrServer},
		{"html", 502, "text/html", `<html><body><h1>502 Bad Gateway</h1></body></html>`,
			"http_502", "Bad Gateway (an HTML page, probably from a proxy or CDN)", 0, ErrServer},
		{"garbage", 500, "text/plain", `oops`, "http_500", "Internal Server Error (body is not a JSON error)", 0, ErrServer},
		{"gone", 410, "application/json", `{"error":"expired"}`, "http_410", "expired", 0, ErrGone},
		{"odd-typed code", 400, "application/json", `{"code":400,"message":"prompt is required","retryAfter":"soon"}`,
			"http_400", "prompt is required", 0, nil},
		{"json array", 400, "application/json", `[1,2]`, "http_400", "Bad Request (body is not a JSON error)", 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, mock := newMockClient(t)
			mock.RegisterResponder("GET", "=~/v1/thing", func(r *http.Request) (*http.Response, error) {
				resp := httpmock.NewStringResponse(tc.status, tc.body)
				if tc.ctype != "" {
					resp.Header.Set("Content-Type", tc.ctype)
				}
				resp.Header.Set("X-Correlation-Id", "corr-1")
				return resp, nil
			})
			err := c.Do(context.Background(), "GET", "/v1/thing", nil, nil)
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("want an *APIError, got %T %v", err, err)
			}
			if ae.StatusCode != tc.status || ae.Code != tc.wantCode || ae.Message != tc.wantMsg {
				t.Errorf("got %d %q %q, want %d %q %q", ae.StatusCode, ae.Code, ae.Message, tc.status, tc.wantCode, tc.wantMsg)
			}
			if ae.RetryAfter != tc.wantRetry {
				t.Errorf("RetryAfter = %s, want %s", ae.RetryAfter, tc.wantRetry)
			}
			if ae.CorrelationID != "corr-1" || string(ae.Body) != tc.body || ae.Method != "GET" || ae.Path != "/base/v1/thing" {
				t.Errorf("details lost: %+v", ae)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("errors.Is(err, %v) = false", tc.sentinel)
			}
		})
	}
}

func TestErrorBodyIsCapped(t *testing.T) {
	c, mock := newMockClient(t)
	huge := `{"error":"` + strings.Repeat("x", 1<<20) + `"}`
	mock.RegisterResponder("GET", "=~/v1/thing", httpmock.NewStringResponder(500, huge))
	err := c.Do(context.Background(), "GET", "/v1/thing", nil, nil)
	var ae *APIError
	if !errors.As(err, &ae) || len(ae.Body) != maxErrorBody {
		t.Fatalf("want the body capped at %d bytes, got %v", maxErrorBody, err)
	}
}

func TestInsufficientBalanceShapes(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want InsufficientBalanceError
		msg  string
	}{
		{"billing", `{"error":"INSUFFICIENT_AI_TIME","http_status":402,"balance_seconds":120,"breakdown_seconds":{"bonus_daily":60,"paid":60},"suggestions":[{"type":"package","key":"mini","minutes":60},{"type":"upgrade","plan":"starter"}],"catalog_version":"2025-09","resume_token":"0123456789abcdef0123456789abcdef"}`,
			InsufficientBalanceError{
				Available: 120 * time.Second, HasAvailable: true,
				Breakdown:   map[string]time.Duration{"bonus_daily": time.Minute, "paid": time.Minute},
				Suggestions: []Suggestion{{Type: "package", Key: "mini", Duration: time.Hour}, {Type: "upgrade", Plan: "starter"}},
				ResumeToken: "0123456789abcdef0123456789abcdef", CatalogVersion: "2025-09",
			}, insufficientFallbackMessage},
		{"builds", `{"success":false,"error":"insufficient_ai_time","message":"Insufficient AI time balance to start build","balance":{"welcomeBonus":0,"dailyGift":60,"paid":0,"total":60},"estimate":{"estimatedSeconds":"180","estimatedMinutes":3,"confidence":"high","basedOnSamples":12},"required":180}`,
			InsufficientBalanceError{
				Balance:   &BalanceBreakdown{DailyGift: time.Minute, Total: time.Minute},
				Available: time.Minute, HasAvailable: true, Required: 3 * time.Minute,
				Estimate: &Estimate{Duration: 3 * time.Minute, Confidence: "high", BasedOnSamples: 12},
			}, "Insufficient AI time balance to start build"},
		{"builds null balance", `{"success":false,"error":"insufficient_ai_time","message":"short","balance":null,"required":180}`,
			InsufficientBalanceError{Required: 3 * time.Minute}, "short"},
		{"builds late", `{"success":false,"error":"insufficient_ai_time","message":"short","available":60,"required":180,"breakdown":{"paid":"60"},"estimate":{"estimatedMinutes":3},"correlationId":"c"}`,
			InsufficientBalanceError{
				Available: time.Minute, HasAvailable: true, Required: 3 * time.Minute,
				Breakdown: map[string]time.Duration{"paid": time.Minute}, Estimate: &Estimate{Duration: 3 * time.Minute},
			}, "short"},
		{"v2.1", `{"sufficient":false,"estimate":{"estimatedSeconds":300},"balance":{"welcomeBonus":"100","dailyGift":0,"paid":0,"total":"100"},"recommendation":{"suggestedPackage":"mini","costToComplete":5,"purchaseUrl":"https://x/buy"}}`,
			InsufficientBalanceError{
				Balance:   &BalanceBreakdown{WelcomeBonus: 100 * time.Second, Total: 100 * time.Second},
				Available: 100 * time.Second, HasAvailable: true, Required: 5 * time.Minute,
				Estimate:       &Estimate{Duration: 5 * time.Minute},
				Recommendation: &Recommendation{SuggestedPackage: "mini", CostToComplete: 5, PurchaseURL: "https://x/buy"},
			}, insufficientFallbackMessage},
		{"odd-typed fields lose only themselves", `{"error":"INSUFFICIENT_AI_TIME","balance_seconds":"n/a","resume_token":42,"suggestions":[{"type":"upgrade","plan":"starter"}]}`,
			InsufficientBalanceError{Suggestions: []Suggestion{{Type: "upgrade", Plan: "starter"}}}, insufficientFallbackMessage},
		{"empty", ``, InsufficientBalanceError{}, insufficientFallbackMessage},
		{"html", `<html>Payment Required</html>`, InsufficientBalanceError{}, insufficientFallbackMessage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, mock := newMockClient(t)
			mock.RegisterResponder("POST", "=~/v1/create", httpmock.NewStringResponder(402, tc.body))
			err := c.Do(context.Background(), "POST", "/v1/create", map[string]string{"userId": "u1"}, nil)
			var ib *InsufficientBalanceError
			if !errors.As(err, &ib) {
				t.Fatalf("want *InsufficientBalanceError, got %T %v", err, err)
			}
			if !errors.Is(err, ErrInsufficientBalance) {
				t.Error("errors.Is(err, ErrInsufficientBalance) = false")
			}
			var ae *APIError
			if !errors.As(err, &ae) || ae.StatusCode != 402 {
				t.Error("the *APIError is reachable with errors.As")
			}
			if !ib.Code.Equal(CodeInsufficientAITime) {
				t.Errorf("code %q, want insufficient_ai_time", ib.Code)
			}
			if ib.Message != tc.msg {
				t.Errorf("message %q, want %q", ib.Message, tc.msg)
			}
			got := *ib
			got.APIError = nil
			if d := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("fields (-want +got):\n%s", d)
			}
		})
	}
}

func TestPayloadTooLarge(t *testing.T) {
	c, mock := newMockClient(t)
	mock.RegisterResponder("GET", "=~/export", httpmock.NewStringResponder(413,
		`{"error":"Export too large","message":"Project exceeds the 2 GiB limit","size":3221225472,"limit":2147483648,"suggestion":"Remove media"}`))
	err := c.Do(context.Background(), "GET", "/v1/projects/p/export?userId=u", nil, nil)
	var pe *PayloadTooLargeError
	if !errors.As(err, &pe) || !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatalf("want *PayloadTooLargeError, got %T %v", err, err)
	}
	if pe.Size != 3221225472 || pe.Limit != 2147483648 || pe.Suggestion != "Remove media" || pe.Message != "Export too large: Project exceeds the 2 GiB limit" {
		t.Fatalf("fields: %+v", pe)
	}
}

func TestAuthErrorCarriesServerTime(t *testing.T) {
	c, mock := newMockClient(t)
	mock.RegisterResponder("GET", "=~/v1/old", httpmock.NewStringResponder(401, `{"error":"Invalid signature","serverTime":1764142800}`))
	err := c.Do(context.Background(), "GET", "/v1/old", nil, nil)
	var ae *AuthError
	if !errors.As(err, &ae) || !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("want *AuthError, got %T %v", err, err)
	}
	if !ae.ServerTime.Equal(time.Unix(1764142800, 0)) || ae.Code != "http_401" || ae.Message != "Invalid signature" {
		t.Fatalf("got %+v", ae)
	}
}

func TestReplayConflictIsAuthNotConflict(t *testing.T) {
	c, mock := newMockClient(t)
	mock.RegisterResponder("GET", "=~/v1/x", httpmock.NewStringResponder(409, `{"error":"Replay","code":"REPLAY_ATTACK_DETECTED"}`))
	err := c.Do(context.Background(), "GET", "/v1/x", nil, nil)
	var ae *AuthError
	if !errors.As(err, &ae) || errors.Is(err, ErrConflict) {
		t.Fatalf("a replay refusal is an *AuthError, not a conflict: %T %v", err, err)
	}
}

func FuzzNewAPIError(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"error":{"code":1}}`, `{"error":"X_Y","code":"","message":""}`, `<html>`, `{"retryAfter":"abc"}`, `{"serverTime":"x"}`, `{"retryAfter":1e300}`, `{"error":{"retryAfter":-5}}`} {
		f.Add(402, s)
		f.Add(413, s)
	}
	f.Fuzz(func(t *testing.T, status int, body string) {
		e := newAPIError(status, http.Header{"Retry-After": {"3"}}, []byte(body), time.Time{})
		if e.Code == "" || e.Message == "" {
			t.Fatalf("code %q message %q: both must be set", e.Code, e.Message)
		}
		if e.RetryAfter < 0 || e.RetryAfter > maxRetryAfter {
			t.Fatalf("RetryAfter %s out of range", e.RetryAfter)
		}
		_ = fuzzCore.typedError(e, []byte(body)).Error()
	})
}

// fuzzCore is a core for tests that decode answers without a client.
var fuzzCore = &core{clock: systemClock{}, limiter: newAdaptiveLimiter(60, DefaultMaxWait, systemClock{})}

// A Retry-After given as a date is read against the client's clock (the
// one given with WithClock), as the retry waits are: the error tells the
// caller the wait the client itself would have made.
func TestRetryAfterDateUsesTheClientClock(t *testing.T) {
	c, mock, clock := newBillingClient(t)
	start := clock.Now()
	mock.RegisterNoResponder(func(*http.Request) (*http.Response, error) {
		resp := httpmock.NewStringResponse(http.StatusServiceUnavailable, `{"error":"down for maintenance"}`)
		resp.Header.Set("Retry-After", start.Add(90*time.Second).Format(http.TimeFormat))
		return resp, nil
	})
	_, err := c.Billing.Balance(context.Background(), "u1")
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.RetryAfter != 90*time.Second {
		t.Fatalf("got %v (RetryAfter %v), want an *APIError with RetryAfter 1m30s", err, apiErr)
	}
}
