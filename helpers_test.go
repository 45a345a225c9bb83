package sheen

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sheenapps/sheen-go/internal/signing"
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
		WithRetry(RetryConfig{BackoffBase: time.Millisecond}),
		WithRateLimit(60_000),
	}
	c, err := NewWorkerClient(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testVerifier checks a request's signature with internal/signing's
// Checker, the check sheenhttp.Verifier runs (the root's tests cannot import
// sheenhttp, which imports sheen; sheenhttp's own tests check the Verifier,
// its nonce store and its middleware). It remembers no nonces. Refusals are
// an *AuthError with the deployed worker's status and code.
type testVerifier struct {
	Secret, SecretV2 string
	Scheme           Signing
	AcceptV1         bool
	Now              func() time.Time
}

func (v *testVerifier) Verify(method, target string, h http.Header, body []byte) error {
	if len(v.Secret) < MinSecretLength {
		return fmt.Errorf("testVerifier: the secret is %d characters; it must be at least %d", len(v.Secret), MinSecretLength)
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	c := signing.Checker{
		Scheme: signing.Scheme(v.Scheme), AcceptV1: v.AcceptV1, Skew: DefaultSkew,
		Key: signing.NewKey([]byte(v.Secret)), KeyV2: signing.NewKey([]byte(cmp.Or(v.SecretV2, v.Secret))),
	}
	failure, err := c.Check(method, target, h, body, now)
	if err != nil {
		return err
	}
	refuse := func(status int, code ErrorCode) error {
		return &AuthError{APIError: &APIError{StatusCode: status, Code: code, Message: string(code)}}
	}
	switch failure {
	case signing.Accepted:
		return nil
	case signing.Missing:
		return refuse(http.StatusUnauthorized, CodeMissingSignature)
	case signing.Stale:
		return refuse(http.StatusRequestTimeout, CodeTimestampOutOfRange)
	case signing.Replayed:
		return refuse(http.StatusConflict, CodeReplayAttackDetected)
	}
	return refuse(http.StatusForbidden, CodeInvalidSignature)
}

// VerifyRequest reads r's body, puts it back, and checks r's signature
// over the target as received.
func (v *testVerifier) VerifyRequest(r *http.Request) ([]byte, error) {
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	target := r.RequestURI
	if target == "" || target[0] != '/' {
		target = r.URL.RequestURI()
	}
	return body, v.Verify(r.Method, target, r.Header, body)
}
