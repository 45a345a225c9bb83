package sheen

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// testSecret is a shared secret long enough for the client.
const testSecret = "unit-test-secret-0123456789abcdef01234"

// roundTripFunc lets a function serve as the transport under the signer.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// jsonResponse makes a response with a JSON body.
func jsonResponse(r *http.Request, status int, body string) *http.Response {
	return &http.Response{
		StatusCode: status,
		Status:     http.StatusText(status),
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(strings.NewReader(body)),
		Request:    r,
	}
}

// newTestClient makes a client whose requests go to rt under the signer, with
// a base path prefix so a wrong absolute path shows, fast backoff and a high
// rate limit.
func newTestClient(t testing.TB, rt http.RoundTripper, opts ...Option) *WorkerClient {
	t.Helper()
	base := []Option{
		WithBaseURL("https://worker.test/base"),
		WithSecret(testSecret),
		WithHTTPClient(&http.Client{Transport: rt}),
		WithBackoffBase(time.Millisecond),
		WithRateLimit(60_000),
	}
	c, err := NewWorkerClient(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
