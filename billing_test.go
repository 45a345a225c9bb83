package sheen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jarcoal/httpmock"
)

// billingStart is the fake clock's start in the billing tests.
var billingStart = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

const (
	billingV21Body      = `{"balance":{"welcomeBonus":"3000","dailyGift":900,"paid":"120.5","total":"4020.5"},"usage":{"todayUsed":"60","lifetimeUsed":7200},"dailyResetAt":"2025-03-05T00:00:00.000Z"}`
	billingBucketedBody = `{"version":7,"plan_key":"paid","subscription_status":"active","totals":{"total_seconds":"5400","paid_seconds":3600,"bonus_seconds":"1800","next_expiry_at":"2025-03-31T00:00:00Z"},"buckets":[{"source":"paid","seconds":"3600","expires_at":null},{"source":"bonus_daily","seconds":1800,"expires_at":"2025-03-31T00:00:00Z"}],"bonus":{"daily_minutes":15,"used_this_month_minutes":"45","monthly_cap_minutes":300},"catalog_version":"2025-09-01"}`
)

// billingTotalBody is a bucketed balance of total seconds.
func billingTotalBody(total int) string {
	return fmt.Sprintf(`{"plan_key":"free","totals":{"total_seconds":%d,"paid_seconds":0,"bonus_seconds":%d,"next_expiry_at":null},"buckets":[]}`, total, total)
}

// newBillingClient makes a client over httpmock driven by a fake clock.
func newBillingClient(t *testing.T, opts ...Option) (*WorkerClient, *httpmock.MockTransport, *fakeClock) {
	t.Helper()
	clock := newFakeClock(billingStart)
	c, mock := newMockClient(t, append([]Option{WithClock(clock)}, opts...)...)
	return c, mock, clock
}

// billingSequence answers with the bodies in turn, repeating the last one,
// and counts the requests.
func billingSequence(calls *atomic.Int32, bodies ...string) httpmock.Responder {
	return func(r *http.Request) (*http.Response, error) {
		n := int(calls.Add(1))
		body := bodies[min(n, len(bodies))-1]
		status := 200
		if s, rest, ok := strings.Cut(body, " "); ok && len(s) == 3 && s[0] >= '1' && s[0] <= '5' {
			fmt.Sscan(s, &status)
			body = rest
		}
		return httpmock.NewStringResponse(status, body), nil
	}
}

func TestBillingBalanceShapes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		legacy bool
		body   string
		want   Balance
	}{
		{"v2.1 with string numbers", false, billingV21Body, Balance{
			Total:        4020*time.Second + 500*time.Millisecond,
			Paid:         120*time.Second + 500*time.Millisecond,
			Bonus:        3900 * time.Second,
			WelcomeBonus: 3000 * time.Second,
			DailyGift:    900 * time.Second,
			Usage:        BalanceUsage{TodayUsed: time.Minute, LifetimeUsed: 2 * time.Hour},
			DailyResetAt: time.Date(2025, 3, 5, 0, 0, 0, 0, time.UTC),
		}},
		{"v2.1 without total sums the parts", false, `{"balance":{"welcomeBonus":60,"dailyGift":60,"paid":60}}`, Balance{
			Total: 3 * time.Minute, Paid: time.Minute, Bonus: 2 * time.Minute,
			WelcomeBonus: time.Minute, DailyGift: time.Minute,
		}},
		{"bucketed with string numbers", false, billingBucketedBody, Balance{
			Bucketed:           true,
			Total:              90 * time.Minute,
			Paid:               time.Hour,
			Bonus:              30 * time.Minute,
			NextExpiryAt:       time.Date(2025, 3, 31, 0, 0, 0, 0, time.UTC),
			BonusAllowance:     BonusAllowance{Daily: 15 * time.Minute, UsedThisMonth: 45 * time.Minute, MonthlyCap: 5 * time.Hour},
			Plan:               "paid",
			SubscriptionStatus: "active",
			CatalogVersion:     "2025-09-01",
			Version:            "7",
		}.WithBuckets(
			BalanceBucket{Source: "paid", Remaining: time.Hour},
			BalanceBucket{Source: "bonus_daily", Remaining: 30 * time.Minute, ExpiresAt: time.Date(2025, 3, 31, 0, 0, 0, 0, time.UTC)},
		)},
		{"bucketed without total sums the buckets", false, `{"totals":{"next_expiry_at":null},"buckets":[{"source":"a","seconds":"30"},{"source":"b","seconds":30}]}`, Balance{
			Bucketed: true, Total: time.Minute,
		}.WithBuckets(BalanceBucket{Source: "a", Remaining: 30 * time.Second}, BalanceBucket{Source: "b", Remaining: 30 * time.Second})},
		{"legacy endpoint", true, billingV21Body, Balance{
			Total:        4020*time.Second + 500*time.Millisecond,
			Paid:         120*time.Second + 500*time.Millisecond,
			Bonus:        3900 * time.Second,
			WelcomeBonus: 3000 * time.Second,
			DailyGift:    900 * time.Second,
			Usage:        BalanceUsage{TodayUsed: time.Minute, LifetimeUsed: 2 * time.Hour},
			DailyResetAt: time.Date(2025, 3, 5, 0, 0, 0, 0, time.UTC),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, mock, _ := newBillingClient(t)
			var path string
			mock.RegisterNoResponder(func(r *http.Request) (*http.Response, error) {
				path = r.URL.EscapedPath()
				return httpmock.NewStringResponse(200, tc.body), nil
			})
			get, wantPath := c.Billing.Balance, "/base/v1/billing/balance/user%201"
			if tc.legacy {
				get, wantPath = c.Billing.LegacyBalance, "/base/v1/billing/legacy-balance/user%201"
			}
			got, err := get(context.Background(), "user 1")
			if err != nil {
				t.Fatal(err)
			}
			if path != wantPath {
				t.Errorf("path %q, want %q", path, wantPath)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("balance (-want +got):\n%s", d)
			}
		})
	}
}

func TestBillingBalanceRejectsUnknownShape(t *testing.T) {
	c, mock, _ := newBillingClient(t)
	mock.RegisterNoResponder(httpmock.NewStringResponder(200, `{"hello":"world"}`))
	_, err := c.Billing.Balance(context.Background(), "u1")
	if !errors.Is(err, ErrInvalidResponse) {
		t.Fatalf("want ErrInvalidResponse, got %v", err)
	}
	if !strings.Contains(err.Error(), "/base/v1/billing/balance/u1") {
		t.Errorf("error %q does not name the call", err)
	}
}

func TestBillingRefusesBadUserIDs(t *testing.T) {
	ctx := context.Background()
	c, mock, _ := newBillingClient(t)
	mock.RegisterNoResponder(httpmock.NewStringResponder(200, billingTotalBody(60)))
	calls := map[string]func(id string) error{
		"Balance":        func(id string) error { _, err := c.Billing.Balance(ctx, id); return err },
		"RefreshBalance": func(id string) error { _, err := c.Billing.RefreshBalance(ctx, id); return err },
		"LegacyBalance":  func(id string) error { _, err := c.Billing.LegacyBalance(ctx, id); return err },
		"CheckSufficient": func(id string) error {
			_, err := c.Billing.CheckSufficient(ctx, CheckSufficientRequest{UserID: id, OperationType: OperationUpdate, ProjectSize: ProjectSizeLarge})
			return err
		},
		"CheckBatch": func(id string) error {
			_, err := c.Billing.CheckBatch(ctx, CheckBatchRequest{UserID: id, Operations: []BatchOperation{{Type: BatchOperationBuild, Estimate: time.Minute}}})
			return err
		},
		"Usage":          func(id string) error { _, err := c.Billing.Usage(ctx, id, UsagePeriodDay); return err },
		"History":        func(id string) error { _, err := c.Billing.History(ctx, id, 10); return err },
		"WaitForBalance": func(id string) error { _, err := c.Billing.WaitForBalance(ctx, id, time.Minute); return err },
	}
	for name, call := range calls {
		for _, id := range []string{"", "a/b", "..", ".", `a\b`, "a\nb", strings.Repeat("x", 257)} {
			err := call(id)
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != "userId" {
				t.Errorf("%s(%q): want a userId *ValidationError, got %v", name, id, err)
			}
		}
	}
	if n := mock.GetTotalCallCount(); n != 0 {
		t.Errorf("%d requests were sent for bad user ids", n)
	}
}

func TestBillingCheckSufficientAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   SufficientCheck
	}{
		{"200 sufficient", 200, `{"sufficient":true,"estimate":{"estimatedSeconds":"120","estimatedMinutes":2,"confidence":"high","basedOnSamples":"40"},"balance":{"welcomeBonus":0,"dailyGift":900,"paid":"3000","total":3900}}`,
			SufficientCheck{
				Sufficient: true,
				Estimate:   &Estimate{Duration: 2 * time.Minute, Confidence: "high", BasedOnSamples: 40},
				Balance:    &BalanceBreakdown{DailyGift: 15 * time.Minute, Paid: 50 * time.Minute, Total: 65 * time.Minute},
				Available:  65 * time.Minute, HasAvailable: true, Required: 2 * time.Minute,
			}},
		{"200 sufficient with null estimate", 200, `{"sufficient":true,"estimate":null,"balance":{"total":60}}`,
			SufficientCheck{Sufficient: true, Balance: &BalanceBreakdown{Total: time.Minute}, Available: time.Minute, HasAvailable: true}},
		{"200 short (v2.1)", 200, `{"sufficient":false,"estimate":{"estimatedSeconds":300,"confidence":"low","basedOnSamples":0},"balance":{"welcomeBonus":0,"dailyGift":60,"paid":0,"total":60},"recommendation":{"suggestedPackage":"mini","costToComplete":"4.99","purchaseUrl":"https://pay.example/mini"}}`,
			SufficientCheck{
				Estimate:  &Estimate{Duration: 5 * time.Minute, Confidence: "low"},
				Balance:   &BalanceBreakdown{DailyGift: time.Minute, Total: time.Minute},
				Available: time.Minute, HasAvailable: true, Required: 5 * time.Minute,
				Recommendation: &Recommendation{SuggestedPackage: "mini", CostToComplete: 4.99, PurchaseURL: "https://pay.example/mini"},
			}},
		{"402 billing shape", 402, `{"error":"INSUFFICIENT_AI_TIME","http_status":402,"balance_seconds":"120","breakdown_seconds":{"bonus_daily":60,"paid":"60"},"suggestions":[{"type":"package","key":"mini","minutes":60},{"type":"upgrade","plan":"starter"}],"catalog_version":"2025-09","resume_token":"0123456789abcdef0123456789abcdef"}`,
			SufficientCheck{
				Available: 2 * time.Minute, HasAvailable: true,
				Breakdown:   map[string]time.Duration{"bonus_daily": time.Minute, "paid": time.Minute},
				Suggestions: []Suggestion{{Type: "package", Key: "mini", Duration: time.Hour}, {Type: "upgrade", Plan: "starter"}},
				ResumeToken: "0123456789abcdef0123456789abcdef", CatalogVersion: "2025-09",
			}},
		{"402 builds shape", 402, `{"success":false,"error":"insufficient_ai_time","message":"Insufficient AI time balance to start build","balance":{"welcomeBonus":0,"dailyGift":60,"paid":0,"total":60},"estimate":{"estimatedMinutes":3},"required":180}`,
			SufficientCheck{
				Balance:   &BalanceBreakdown{DailyGift: time.Minute, Total: time.Minute},
				Available: time.Minute, HasAvailable: true, Required: 3 * time.Minute,
				Estimate: &Estimate{Duration: 3 * time.Minute},
			}},
		{"402 builds shape, null balance", 402, `{"success":false,"error":"insufficient_ai_time","message":"short","balance":null,"estimate":{},"required":"180"}`,
			SufficientCheck{Required: 3 * time.Minute, Estimate: &Estimate{}}},
		{"402 builds late shape", 402, `{"success":false,"error":"insufficient_ai_time","message":"short","available":"60","required":180,"breakdown":{"paid":60},"estimate":{"estimatedSeconds":180},"correlationId":"c-1"}`,
			SufficientCheck{
				Available: time.Minute, HasAvailable: true, Required: 3 * time.Minute,
				Breakdown: map[string]time.Duration{"paid": time.Minute}, Estimate: &Estimate{Duration: 3 * time.Minute},
			}},
		{"402 v2.1 shape", 402, `{"sufficient":false,"estimate":{"estimatedSeconds":300},"balance":{"welcomeBonus":"100","dailyGift":0,"paid":0,"total":"100"},"recommendation":{"suggestedPackage":"mini","costToComplete":5,"purchaseUrl":"https://pay.example/mini"}}`,
			SufficientCheck{
				Balance:   &BalanceBreakdown{WelcomeBonus: 100 * time.Second, Total: 100 * time.Second},
				Available: 100 * time.Second, HasAvailable: true, Required: 5 * time.Minute,
				Estimate:       &Estimate{Duration: 5 * time.Minute},
				Recommendation: &Recommendation{SuggestedPackage: "mini", CostToComplete: 5, PurchaseURL: "https://pay.example/mini"},
			}},
		{"402 empty body", 402, ``, SufficientCheck{}},
		{"402 HTML from a CDN", 402, `<html><body>Payment Required</body></html>`, SufficientCheck{}},
		{"402 JSON that is not an object", 402, `"nope"`, SufficientCheck{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, mock, _ := newBillingClient(t)
			var sent string
			mock.RegisterResponder("POST", "https://worker.test/base/v1/billing/check-sufficient", func(r *http.Request) (*http.Response, error) {
				b, _ := io.ReadAll(r.Body)
				sent = string(b)
				return httpmock.NewStringResponse(tc.status, tc.body), nil
			})
			got, err := c.Billing.CheckSufficient(context.Background(), CheckSufficientRequest{
				UserID: "u1", OperationType: OperationMainBuild, ProjectSize: EstimateProjectSize(12),
			})
			if err != nil {
				t.Fatalf("want an answer, got error %v", err)
			}
			if want := `{"userId":"u1","operationType":"main_build","projectSize":"medium","isUpdate":false}`; sent != want {
				t.Errorf("body %s, want %s", sent, want)
			}
			if tc.status == 402 {
				if got.PaymentRequired == nil || !got.PaymentRequired.Code.Equal(CodeInsufficientAITime) || got.PaymentRequired.Message == "" {
					t.Errorf("PaymentRequired = %+v, want the 402 with its code and message", got.PaymentRequired)
				}
			} else if got.PaymentRequired != nil {
				t.Errorf("PaymentRequired set on a 200")
			}
			if d := cmp.Diff(tc.want, *got, cmpopts.EquateEmpty(), cmpopts.IgnoreFields(SufficientCheck{}, "PaymentRequired")); d != "" {
				t.Errorf("check (-want +got):\n%s", d)
			}
		})
	}
}

func TestBillingCheckSufficientFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   error
	}{
		{"server error", 500, `{"error":"boom"}`, ErrServer},
		{"bad signature", 403, `{"error":"Signature validation failed","code":"INVALID_SIGNATURE"}`, ErrUnauthorized},
		{"no answer in a 200", 200, `{"hello":1}`, ErrInvalidResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, mock, _ := newBillingClient(t)
			mock.RegisterNoResponder(httpmock.NewStringResponder(tc.status, tc.body))
			got, err := c.Billing.CheckSufficient(context.Background(), CheckSufficientRequest{UserID: "u1", OperationType: OperationUpdate, ProjectSize: ProjectSizeSmall, IsUpdate: true})
			if !errors.Is(err, tc.want) || got != nil {
				t.Errorf("got %+v, %v; want an error matching %v", got, err, tc.want)
			}
		})
	}
}

func TestBillingCheckSufficientValidation(t *testing.T) {
	c, mock, _ := newBillingClient(t)
	for _, req := range []CheckSufficientRequest{
		{UserID: "u1", OperationType: "deploy", ProjectSize: ProjectSizeSmall},
		{UserID: "u1", OperationType: "", ProjectSize: ProjectSizeSmall},
		{UserID: "u1", OperationType: OperationMainBuild, ProjectSize: "huge"},
		{UserID: "u1", OperationType: OperationMainBuild},
		{UserID: "u1", OperationType: "MAIN_BUILD", ProjectSize: ProjectSizeSmall},
	} {
		_, err := c.Billing.CheckSufficient(context.Background(), req)
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("%+v: want *ValidationError, got %v", req, err)
		}
	}
	if n := mock.GetTotalCallCount(); n != 0 {
		t.Errorf("%d requests sent for invalid input", n)
	}
}

func TestBillingCheckBatch(t *testing.T) {
	c, mock, _ := newBillingClient(t)
	var sent string
	mock.RegisterResponder("POST", "https://worker.test/base/v1/billing/check-sufficient-batch", func(r *http.Request) (*http.Response, error) {
		b, _ := io.ReadAll(r.Body)
		sent = string(b)
		return httpmock.NewStringResponse(200, `[{"operation":"build","ok":true,"deficit_seconds":0},{"operation":"export","ok":false,"deficit_seconds":"90","suggestions":[{"type":"package","key":"mini","minutes":"60"}]}]`), nil
	})
	got, err := c.Billing.CheckBatch(context.Background(), CheckBatchRequest{UserID: "u1", Operations: []BatchOperation{
		{Type: BatchOperationBuild, Estimate: 2 * time.Minute},
		{Type: BatchOperationExport, Estimate: 1500 * time.Millisecond},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"userId":"u1","operations":[{"operation":"build","estimate_seconds":120},{"operation":"export","estimate_seconds":2}]}`; sent != want {
		t.Errorf("body %s, want %s", sent, want)
	}
	want := []BatchResult{
		{Operation: BatchOperationBuild, OK: true},
		{Operation: BatchOperationExport, Deficit: 90 * time.Second, Suggestions: []Suggestion{{Type: "package", Key: "mini", Duration: time.Hour}}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("results (-want +got):\n%s", d)
	}

	ops := func(n int) []BatchOperation {
		out := make([]BatchOperation, n)
		for i := range out {
			out[i] = BatchOperation{Type: BatchOperationPlan, Estimate: time.Second}
		}
		return out
	}
	mock.ZeroCallCounters()
	for name, req := range map[string]CheckBatchRequest{
		"none":          {UserID: "u1"},
		"eleven":        {UserID: "u1", Operations: ops(11)},
		"unknown type":  {UserID: "u1", Operations: []BatchOperation{{Type: "main_build", Estimate: time.Second}}},
		"negative time": {UserID: "u1", Operations: []BatchOperation{{Type: BatchOperationBuild, Estimate: -time.Second}}},
	} {
		var ve *ValidationError
		if _, err := c.Billing.CheckBatch(context.Background(), req); !errors.As(err, &ve) {
			t.Errorf("%s: want *ValidationError, got %v", name, err)
		}
	}
	if n := mock.GetTotalCallCount(); n != 0 {
		t.Errorf("%d requests sent for invalid batches", n)
	}
	if _, err := c.Billing.CheckBatch(context.Background(), CheckBatchRequest{UserID: "u1", Operations: ops(10)}); err != nil {
		t.Errorf("ten operations: %v", err)
	}
}

func TestBillingUsage(t *testing.T) {
	c, mock, _ := newBillingClient(t)
	var target string
	mock.RegisterNoResponder(func(r *http.Request) (*http.Response, error) {
		target = r.URL.RequestURI()
		return httpmock.NewStringResponse(200, `{"total_seconds":"3600","by_operation":{"build":"3000","plan":600,"odd":{"x":1}},"daily_trend":[{"date":"2025-03-03","seconds":"1800"},{"date":"2025-03-04","seconds":1800}]}`), nil
	})
	got, err := c.Billing.Usage(context.Background(), "u1", UsagePeriodMonth)
	if err != nil {
		t.Fatal(err)
	}
	if want := "/base/v1/billing/usage/u1?period=month"; target != want {
		t.Errorf("target %q, want %q", target, want)
	}
	want := &UsageReport{
		Total:       time.Hour,
		ByOperation: map[string]time.Duration{"build": 50 * time.Minute, "plan": 10 * time.Minute},
		DailyTrend:  []UsageDay{{Date: "2025-03-03", Used: 30 * time.Minute}, {Date: "2025-03-04", Used: 30 * time.Minute}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("usage (-want +got):\n%s", d)
	}
	if _, err := c.Billing.Usage(context.Background(), "u1", ""); err != nil || target != "/base/v1/billing/usage/u1" {
		t.Errorf("no period: target %q, err %v", target, err)
	}
	var ve *ValidationError
	if _, err := c.Billing.Usage(context.Background(), "u1", "week"); !errors.As(err, &ve) {
		t.Errorf("period week: want *ValidationError, got %v", err)
	}
}

func TestBillingHistory(t *testing.T) {
	c, mock, _ := newBillingClient(t)
	var target string
	mock.RegisterNoResponder(func(r *http.Request) (*http.Response, error) {
		target = r.URL.RequestURI()
		return httpmock.NewStringResponse(200, `{"events":[{"type":"purchase","seconds":"3600","reason":"package mini","timestamp":"2025-03-04T10:00:00.123Z"},{"type":"consumption","seconds":-120,"reason":"build","timestamp":1741082400},{"type":"gift","seconds":60,"reason":null,"timestamp":"not a time"}]}`), nil
	})
	got, err := c.Billing.History(context.Background(), "u1", 20)
	if err != nil {
		t.Fatal(err)
	}
	if want := "/base/v1/billing/events/u1?limit=20"; target != want {
		t.Errorf("target %q, want %q", target, want)
	}
	want := []BillingEvent{
		{Type: "purchase", Amount: time.Hour, Reason: "package mini", Timestamp: time.Date(2025, 3, 4, 10, 0, 0, 123e6, time.UTC)},
		{Type: "consumption", Amount: -2 * time.Minute, Reason: "build", Timestamp: time.Unix(1741082400, 0).UTC()},
		{Type: "gift", Amount: time.Minute},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("history (-want +got):\n%s", d)
	}
	for _, limit := range []int{-1, 101} {
		var ve *ValidationError
		if _, err := c.Billing.History(context.Background(), "u1", limit); !errors.As(err, &ve) {
			t.Errorf("limit %d: want *ValidationError, got %v", limit, err)
		}
	}
}

func TestBillingMethodsTakeCallOptions(t *testing.T) {
	ctx := context.Background()
	c, mock := newMockClient(t) // the real clock: the limiter's burst refills
	check := CheckSufficientRequest{UserID: "u1", OperationType: OperationUpdate, ProjectSize: ProjectSizeSmall}
	batch := CheckBatchRequest{UserID: "u1", Operations: []BatchOperation{{Type: BatchOperationBuild}}}
	for _, tc := range []struct {
		name, route, body string
		call              func(...CallOption) error
	}{
		{"Balance", RouteBalance, billingTotalBody(60), func(o ...CallOption) error { _, err := c.Billing.Balance(ctx, "u1", o...); return err }},
		{"RefreshBalance", RouteBalance, billingTotalBody(60), func(o ...CallOption) error { _, err := c.Billing.RefreshBalance(ctx, "u1", o...); return err }},
		{"WaitForBalance", RouteBalance, billingTotalBody(60), func(o ...CallOption) error {
			_, err := c.Billing.WaitForBalance(ctx, "u1", time.Minute, o...)
			return err
		}},
		{"LegacyBalance", RouteLegacyBalance, billingV21Body, func(o ...CallOption) error { _, err := c.Billing.LegacyBalance(ctx, "u1", o...); return err }},
		{"CheckSufficient", RouteCheckSufficient, `{"sufficient":true}`, func(o ...CallOption) error { _, err := c.Billing.CheckSufficient(ctx, check, o...); return err }},
		{"CheckBatch", RouteCheckBatch, `[{"operation":"build","ok":true}]`, func(o ...CallOption) error { _, err := c.Billing.CheckBatch(ctx, batch, o...); return err }},
		{"Usage", RouteUsage, `{"total_seconds":1}`, func(o ...CallOption) error { _, err := c.Billing.Usage(ctx, "u1", "", o...); return err }},
		{"History", RouteBillingEvents, `{"events":[]}`, func(o ...CallOption) error { _, err := c.Billing.History(ctx, "u1", 0, o...); return err }},
	} {
		var params []string
		if strings.Contains(tc.route, "{") {
			params = []string{"u1"}
		}
		method, path, _ := expandRoute(tc.route, params...)
		var probe string
		mock.RegisterResponder(method, "https://worker.test/base"+path, func(r *http.Request) (*http.Response, error) {
			probe = r.Header.Get("X-Probe")
			return httpmock.NewStringResponse(200, tc.body), nil
		})
		c.Billing.InvalidateBalance("u1") // Balance must ask
		var resp Response
		if err := tc.call(WithHeader("X-Probe", tc.name), WithResponse(&resp)); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if probe != tc.name || resp.StatusCode != 200 || resp.Cached {
			t.Errorf("%s: the worker saw X-Probe %q, Response %+v; want the caller's header and the worker's 200", tc.name, probe, resp)
		}
		var ve *ValidationError
		if err := tc.call(nil); !errors.As(err, &ve) {
			t.Errorf("%s with a nil CallOption: want *ValidationError, got %v", tc.name, err)
		}
	}
}

func TestBillingRefusesAnswersWithoutContent(t *testing.T) {
	// A 204 (or an empty 200) holds no balance and no check result.
	for _, status := range []int{204, 200} {
		c, mock := newMockClient(t)
		mock.RegisterNoResponder(httpmock.NewStringResponder(status, ``))
		if b, err := c.Billing.Balance(context.Background(), "u1"); !errors.Is(err, ErrInvalidResponse) {
			t.Errorf("%d to Balance: got %+v, %v; want ErrInvalidResponse", status, b, err)
		}
		chk, err := c.Billing.CheckSufficient(context.Background(), CheckSufficientRequest{UserID: "u1", OperationType: OperationUpdate, ProjectSize: ProjectSizeSmall})
		if !errors.Is(err, ErrInvalidResponse) {
			t.Errorf("%d to CheckSufficient: got %+v, %v; want ErrInvalidResponse", status, chk, err)
		}
	}
}
