package sheen_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	sheen "github.com/sheenapps/sheen-go"
)

// exampleWorker stands in for the worker: it answers each path with a fixed
// status and JSON body (and does not check signatures).
func exampleWorker(routes map[string]struct {
	status int
	body   string
}) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route, ok := routes[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(route.status)
		fmt.Fprint(w, route.body)
	}))
}

func ExampleBillingService_Balance() {
	srv := exampleWorker(map[string]struct {
		status int
		body   string
	}{
		"/v1/billing/balance/user-42": {200, `{"plan_key":"paid","subscription_status":"active",` +
			`"totals":{"total_seconds":"5400","paid_seconds":3600,"bonus_seconds":1800,"next_expiry_at":null},` +
			`"buckets":[{"source":"paid","seconds":3600,"expires_at":null},{"source":"bonus_daily","seconds":1800,"expires_at":"2025-03-31T00:00:00Z"}],` +
			`"bonus":{"daily_minutes":15,"used_this_month_minutes":45,"monthly_cap_minutes":300},"catalog_version":"2025-09-01"}`},
	})
	defer srv.Close()

	client, err := sheen.NewWorkerClient(
		sheen.WithBaseURL(srv.URL),
		sheen.WithSecret("example-secret-of-at-least-32-characters"),
		sheen.WithHTTPClient(srv.Client()),
	)
	if err != nil {
		log.Fatal(err)
	}

	// Cached for 5 minutes per user; RefreshBalance skips the cache.
	b, err := client.Billing.Balance(context.Background(), "user-42")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("total:", b.Total, "paid:", b.Paid, "bonus:", b.Bonus)
	fmt.Println("plan:", b.Plan, b.SubscriptionStatus)
	for _, bucket := range b.Buckets() {
		fmt.Println("bucket:", bucket.Source, bucket.Remaining, "expires:", !bucket.ExpiresAt.IsZero())
	}

	// The second call is served from the cache: no request is made.
	var resp sheen.Response
	again, err := client.Billing.Balance(context.Background(), "user-42", sheen.WithResponse(&resp))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("again:", again.Total, "cached:", resp.Cached)
	// Output:
	// total: 1h30m0s paid: 1h0m0s bonus: 30m0s
	// plan: paid active
	// bucket: paid 1h0m0s expires: false
	// bucket: bonus_daily 30m0s expires: true
	// again: 1h30m0s cached: true
}

func ExampleBillingService_CheckSufficient() {
	// The deployed worker answers "not enough" with a 402.
	srv := exampleWorker(map[string]struct {
		status int
		body   string
	}{
		"/v1/billing/check-sufficient": {402, `{"error":"INSUFFICIENT_AI_TIME","http_status":402,"balance_seconds":120,` +
			`"breakdown_seconds":{"bonus_daily":60,"paid":60},` +
			`"suggestions":[{"type":"package","key":"mini","minutes":60},{"type":"upgrade","plan":"starter"}],` +
			`"catalog_version":"2025-09-01","resume_token":"0123456789abcdef0123456789abcdef"}`},
	})
	defer srv.Close()

	client, err := sheen.NewWorkerClient(
		sheen.WithBaseURL(srv.URL),
		sheen.WithSecret("example-secret-of-at-least-32-characters"),
		sheen.WithHTTPClient(srv.Client()),
	)
	if err != nil {
		log.Fatal(err)
	}

	check, err := client.Billing.CheckSufficient(context.Background(), sheen.CheckSufficientRequest{
		UserID:        "user-42",
		OperationType: sheen.OperationMainBuild,
		ProjectSize:   sheen.EstimateProjectSize(23),
	})
	if err != nil {
		log.Fatal(err) // a real failure: "not enough" is not an error
	}
	fmt.Println("sufficient:", check.Sufficient)
	fmt.Println("available:", check.Available)
	for _, s := range check.Suggestions {
		switch s.Type {
		case "package":
			fmt.Println("buy package", s.Key, "for", s.Duration)
		case "upgrade":
			fmt.Println("or upgrade to", s.Plan)
		}
	}
	fmt.Println("resume token:", check.ResumeToken != "")
	// Output:
	// sufficient: false
	// available: 2m0s
	// buy package mini for 1h0m0s
	// or upgrade to starter
	// resume token: true
}

func ExampleBillingService_WaitForBalance() {
	var polls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		polls.Add(1) // the payment has landed by the first poll
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"totals":{"total_seconds":3600,"paid_seconds":3540,"bonus_seconds":60}}`)
	}))
	defer srv.Close()

	client, err := sheen.NewWorkerClient(
		sheen.WithBaseURL(srv.URL),
		sheen.WithSecret("example-secret-of-at-least-32-characters"),
		sheen.WithHTTPClient(srv.Client()),
	)
	if err != nil {
		log.Fatal(err)
	}

	// After a payment: poll every 2s, for up to 60s or until ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := client.Billing.WaitForBalance(ctx, "user-42", time.Hour)
	var timeout *sheen.BalanceTimeoutError
	switch {
	case errors.As(err, &timeout):
		fmt.Println("payment not seen yet:", timeout)
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println("balance now", b.Total, "after", polls.Load(), "poll")
	}
	// Output:
	// balance now 1h0m0s after 1 poll
}
