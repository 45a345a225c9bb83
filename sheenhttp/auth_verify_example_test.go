package sheenhttp_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheenhttp"
)

// A Go service that receives signed requests (v2.1 webhooks, or calls from
// another service holding the secret) verifies them before its handler runs.
func ExampleVerifier_Middleware() {
	const secret = "example-shared-secret-0123456789abcdef"
	verifier := &sheenhttp.Verifier{Secret: secret, Scheme: sheen.SigningDual}
	hook := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body) // the exact bytes that were signed
		fmt.Printf("handler got %s %s\n", r.URL.Path, body)
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(verifier.Middleware(hook))
	defer srv.Close()

	// A signed request, as a WorkerClient sends it.
	sender, err := sheen.NewWorkerClient(sheen.WithBaseURL(srv.URL), sheen.WithSecret(secret), sheen.WithSigning(sheen.SigningDual))
	if err != nil {
		log.Fatal(err)
	}
	err = sender.Do(context.Background(), "POST", "/v1/hooks/build-finished", map[string]string{"buildId": "b1"}, nil)
	fmt.Println("signed request:", err)

	// An unsigned one.
	resp, err := srv.Client().Post(srv.URL+"/v1/hooks/build-finished", "application/json", strings.NewReader(`{"buildId":"b1"}`))
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println("unsigned request:", resp.StatusCode, string(body))
	// Output:
	// handler got /v1/hooks/build-finished {"buildId":"b1"}
	// signed request: <nil>
	// unsigned request: 401 {"code":"MISSING_SIGNATURE","error":"missing signature header"}
}
