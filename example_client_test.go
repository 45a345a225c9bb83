package sheen_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

	sheen "github.com/sheenapps/sheen-go"
)

// A worker stand-in that checks signatures with the SDK's own Verifier.
func newExampleWorker(secret string, handler http.HandlerFunc) *httptest.Server {
	ver := &sheen.Verifier{Secret: secret, Scheme: sheen.SigningBodyPath}
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := ver.VerifyRequest(r, body); err != nil {
			http.Error(w, `{"code":"INVALID_SIGNATURE","error":"Signature validation failed"}`, http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		handler(w, r)
	}))
}

// Do reaches endpoints the SDK does not wrap yet, through the same signing,
// rate limiting, retries and error decoding as the services.
func ExampleWorkerClient_Do() {
	const secret = "example-secret-0123456789abcdef0123456"
	worker := newExampleWorker(secret, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"total_seconds":5400,"by_operation":{"build":5000,"plan":400}}`)
	})
	defer worker.Close()

	client, err := sheen.NewWorkerClient(sheen.WithBaseURL(worker.URL), sheen.WithSecret(secret))
	if err != nil {
		log.Fatal(err)
	}
	var usage struct {
		TotalSeconds int            `json:"total_seconds"`
		ByOperation  map[string]int `json:"by_operation"`
	}
	err = client.Do(context.Background(), "GET", "/v1/billing/usage/u1?period=month", nil, &usage)
	fmt.Println(usage.TotalSeconds, usage.ByOperation["build"], err)
	// Output: 5400 5000 <nil>
}

// Errors keep the worker's code; errors.As reaches the typed error and
// errors.Is the sentinel.
func ExampleInsufficientBalanceError() {
	const secret = "example-secret-0123456789abcdef0123456"
	worker := newExampleWorker(secret, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusPaymentRequired)
		io.WriteString(w, `{"success":false,"error":"insufficient_ai_time","message":"Insufficient AI time balance to start build","available":60,"required":180}`)
	})
	defer worker.Close()

	client, _ := sheen.NewWorkerClient(sheen.WithBaseURL(worker.URL), sheen.WithSecret(secret))
	err := client.Do(context.Background(), "POST", "/v1/create-preview-for-new-project",
		map[string]string{"userId": "u1", "prompt": "a bakery site"}, nil)

	var short *sheen.InsufficientBalanceError
	if errors.As(err, &short) {
		fmt.Println(short.Code, short.Available, short.Required)
		fmt.Println(short.Message)
	}
	fmt.Println(errors.Is(err, sheen.ErrInsufficientBalance))
	// Output:
	// insufficient_ai_time 1m0s 3m0s
	// Insufficient AI time balance to start build
	// true
}
