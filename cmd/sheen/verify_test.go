package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sheen "github.com/sheenapps/sheen-go"
)

const verifySecret = "verify-test-secret-0123456789abcdefghij"

// captured signs a check-sufficient call with the SDK, sends it to a
// recording server and returns the request as that server received it, in
// wire format.
func captured(t *testing.T, opts ...sheen.Option) string {
	t.Helper()
	var raw []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ = httputil.DumpRequest(r, true)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"sufficient":true}`))
	}))
	defer srv.Close()
	c, err := sheen.NewWorkerClient(append([]sheen.Option{
		sheen.WithBaseURL(srv.URL), sheen.WithSecret(verifySecret), sheen.WithSigning(sheen.SigningDual),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Billing.CheckSufficient(context.Background(), sheen.CheckSufficientRequest{
		UserID: "u1", OperationType: sheen.OperationMainBuild, ProjectSize: sheen.ProjectSizeSmall,
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// header returns a header's value in a request in wire format.
func header(raw, name string) string {
	for l := range strings.Lines(raw) {
		if k, v, ok := strings.Cut(strings.TrimRight(l, "\r\n"), ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestVerify(t *testing.T) {
	raw := captured(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "req.http")
	if err := os.WriteFile(file, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	c := cli{env: []string{sheen.EnvSecret + "=" + verifySecret, sheen.EnvSigning + "=dual"}}

	r := c.run(t, "verify", "--file", file)
	wantCode(t, r, exitOK)
	wantIn(t, "valid request", r.stdout, "valid: POST /v1/billing/check-sufficient", "scheme     dual (from WORKER_SIGNING)", "signature  v2", "signed at ")

	// From stdin, as JSON.
	c.stdin = raw
	v := decode[verdict](t, c.run(t, "verify", "--json"))
	if !v.Valid || v.Signature != "v2" || v.Method != "POST" || v.Target != "/v1/billing/check-sufficient" || v.SignedAt == "" {
		t.Errorf("verdict: %+v", v)
	}

	// A body changed after signing.
	c.stdin = strings.Replace(raw, `"small"`, `"large"`, 1)
	r = c.run(t, "verify")
	wantCode(t, r, exitAuth)
	wantIn(t, "tampered request", r.stdout, "invalid: POST /v1/billing/check-sufficient: the worker would answer 403 INVALID_SIGNATURE", "does not match")
	v = decode[verdict](t, c.run(t, "verify", "--json"))
	if v.Valid || v.Status != http.StatusForbidden || v.Code != "INVALID_SIGNATURE" {
		t.Errorf("tampered verdict: %+v", v)
	}

	// The wrong secret.
	c.stdin = raw
	c.env = []string{sheen.EnvSecret + "=" + strings.Repeat("x", 40), sheen.EnvSigning + "=dual"}
	wantCode(t, c.run(t, "verify"), exitAuth)

	// No scheme configured: the request's headers tell.
	c.env = []string{sheen.EnvSecret + "=" + verifySecret}
	r = c.run(t, "verify")
	wantCode(t, r, exitOK)
	wantIn(t, "detected scheme", r.stdout, "scheme     dual (from the request's headers)")

	// Nothing in the output is a signature.
	for _, name := range []string{sheen.HeaderSignature, sheen.HeaderSignatureV2} {
		if sig := header(raw, name); sig == "" || strings.Contains(r.stdout+r.stderr, sig) {
			t.Errorf("%s %q missing from the capture or printed", name, sig)
		}
	}
}

// Without its v2 signature, a dual request passes only with --accept-v1,
// and the verdict says why.
func TestVerifyV1Only(t *testing.T) {
	raw := captured(t)
	var kept []string
	for l := range strings.Lines(raw) {
		if !strings.HasPrefix(strings.ToLower(l), strings.ToLower(sheen.HeaderSignatureV2)+":") {
			kept = append(kept, l)
		}
	}
	c := cli{env: []string{sheen.EnvSecret + "=" + verifySecret, sheen.EnvSigning + "=dual"}, stdin: strings.Join(kept, "")}
	r := c.run(t, "verify")
	wantCode(t, r, exitAuth)
	wantIn(t, "v1 only", r.stdout, "403 INVALID_SIGNATURE", "its v1 signature is valid", "--accept-v1")
	r = c.run(t, "verify", "--accept-v1")
	wantCode(t, r, exitOK)
	wantIn(t, "v1 accepted", r.stdout, "signature  v1")
}

type pastClock struct{ d time.Duration }

func (c pastClock) Now() time.Time                         { return time.Now().Add(-c.d) }
func (c pastClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// A request signed long ago is refused as the worker refuses it; --at
// signed checks the signature alone.
func TestVerifyOldRequest(t *testing.T) {
	raw := captured(t, sheen.WithClock(pastClock{d: 2 * time.Hour}))
	c := cli{env: []string{sheen.EnvSecret + "=" + verifySecret, sheen.EnvSigning + "=dual"}, stdin: raw}
	r := c.run(t, "verify")
	wantCode(t, r, exitAuth)
	wantIn(t, "old request", r.stdout, "408 TIMESTAMP_OUT_OF_RANGE", "--at signed checks the signature alone")
	r = c.run(t, "verify", "--at", "signed")
	wantCode(t, r, exitOK)
	wantIn(t, "old request at its time", r.stdout, "valid: POST")
	wantCode(t, c.run(t, "verify", "--at", "yesterday"), exitUsage)
}

func TestVerifySampleAndUsage(t *testing.T) {
	c := cli{env: []string{sheen.EnvSecret + "=" + verifySecret, sheen.EnvSigning + "=timestamp"}}
	r := c.run(t, "verify", "--sample")
	wantCode(t, r, exitOK)
	wantIn(t, "sample", r.stderr, "POST /v1/billing/check-sufficient HTTP/1.1", "X-Sheen-Signature: REDACTED", "X-Sheen-Timestamp: ")
	wantIn(t, "sample verdict", r.stdout, "valid: POST", "scheme     timestamp (from WORKER_SIGNING)")
	if strings.Contains(r.stdout+r.stderr, verifySecret) {
		t.Errorf("the secret was printed:\n%s", r)
	}

	c.stdin = "hello\n"
	r = c.run(t, "verify")
	wantCode(t, r, exitUsage)
	wantIn(t, "not a request", r.stderr, "not an HTTP request in wire format")
	wantCode(t, cli{stdin: captured(t)}.run(t, "verify"), exitUsage) // no secret
}
