package openapi_test

import (
	"context"
	"fmt"
	"log"
	"net/http"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/openapi"
	"github.com/sheenapps/sheen-go/sheentest"
)

// A client whose every request and answer is checked against the
// contract: here the fake worker answers a route with a status the
// contract does not give it, and the Transport reports it.
func ExampleTransport() {
	contract, err := openapi.Load()
	if err != nil {
		log.Fatal(err)
	}
	srv := sheentest.NewServer(sheentest.WithSigning(sheen.SigningDual))
	defer srv.Close()
	srv.AddFault(sheentest.Fault{Route: sheen.RouteUsage, Status: http.StatusTeapot, Body: `{"error":"teapot"}`})

	tr := &openapi.Transport{
		Contract: contract, BaseURL: srv.URL, Signing: sheen.SigningDual,
		Exempt: []string{sheentest.RouteStore},
		Report: func(err error) { fmt.Println("contract:", err) },
	}
	client, err := srv.Client(sheen.WithHTTPClient(&http.Client{Transport: tr}), sheen.WithRetry(sheen.RetryConfig{MaxAttempts: 1, MaxWait: 1}))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if _, err := client.Billing.Balance(ctx, "u1"); err != nil {
		log.Fatal(err)
	}
	_, _ = client.Billing.Usage(ctx, "u1", sheen.UsagePeriodDay)
	// Output:
	// contract: GET /v1/billing/usage/{userId} answer 418: status: the route does not declare this status
}
