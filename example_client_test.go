package sheen_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheenhttp"
	"github.com/sheenapps/sheen-go/sheentest"
)

// A worker stand-in that checks signatures with the SDK's own Verifier.
func newExampleWorker(secret string, handler http.HandlerFunc) *httptest.Server {
	ver := &sheenhttp.Verifier{Secret: secret, Scheme: sheen.SigningBodyPath}
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := ver.VerifyRequest(r); err != nil {
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

// NewWorkerClient with explicit options. Only the secret is required; the
// defaults are the production worker, v2.1 signing, 60 requests a minute, 4
// attempts and waits of at most 5 minutes.
func ExampleNewWorkerClient() {
	client, err := sheen.NewWorkerClient(
		sheen.WithSecret("example-secret-of-at-least-32-characters"),
		sheen.WithSigning(sheen.SigningDual),                                          // what the deployed worker wants
		sheen.WithRetry(sheen.RetryConfig{MaxAttempts: 4, MaxWait: 30 * time.Second}), // give up on waits longer than 30 s
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(client.BaseURL(), client.Signing())

	// Mistakes are refused when the client is made, naming the setting but
	// never the secret's value.
	_, err = sheen.NewWorkerClient(sheen.WithSecret("too-short"))
	fmt.Println(err)
	// Output:
	// https://worker.sheenapps.com dual
	// sheen: WithSecret is 9 characters; it must be at least 32
}

// NewWorkerClientFromEnv reads WORKER_BASE_URL, WORKER_SHARED_SECRET,
// WORKER_SHARED_SECRET_V2 and WORKER_SIGNING; options given to it win over
// the environment.
func ExampleNewWorkerClientFromEnv() {
	worker := sheentest.NewServer(sheentest.WithSigning(sheen.SigningDual), sheentest.WithUser("user-42", time.Hour))
	defer worker.Close()
	// In production the deployment sets these; here they point at a fake
	// worker.
	env := map[string]string{sheen.EnvBaseURL: worker.URL, sheen.EnvSecret: worker.Secret, sheen.EnvSigning: "dual"}
	for k, v := range env {
		os.Setenv(k, v)
		defer os.Unsetenv(k)
	}

	client, err := sheen.NewWorkerClientFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	bal, err := client.Billing.Balance(context.Background(), "user-42")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(client.Signing(), "signing; balance", bal.Total)

	// A bad setting is named by its variable, never shown.
	os.Setenv(sheen.EnvSecret, "not-long-enough")
	_, err = sheen.NewWorkerClientFromEnv()
	fmt.Println(err)
	// Output:
	// dual signing; balance 1h0m0s
	// sheen: WORKER_SHARED_SECRET is 15 characters; it must be at least 32
}
