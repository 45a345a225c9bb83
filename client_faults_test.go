package sheen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
)

// hungServer accepts requests and never answers until the test ends.
func hungServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(stop); srv.Close() })
	return srv, &hits
}

func faultClient(t *testing.T, base string, opts ...Option) *WorkerClient {
	t.Helper()
	c, err := NewWorkerClient(append([]Option{
		WithBaseURL(base), WithSecret(testSecret), WithRateLimit(60_000), WithRetry(RetryConfig{BackoffBase: time.Millisecond}),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A worker that never answers cannot hang a caller whose context has no
// deadline: each attempt ends at the attempt timeout. A GET is tried again;
// a build-starting POST is sent once and reported as outcome unknown.
func TestHungWorkerReturnsWithinAttemptTimeout(t *testing.T) {
	srv, hits := hungServer(t)
	c := faultClient(t, srv.URL, WithRetry(RetryConfig{AttemptTimeout: 50 * time.Millisecond}), WithRetry(RetryConfig{MaxAttempts: 2, MaxWait: time.Second}))

	err := c.Do(context.Background(), "GET", "/v1/op", nil, nil)
	var te *AttemptTimeoutError
	if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) || hits.Load() != 2 {
		t.Fatalf("GET: %d requests, %v; want 2 and an *AttemptTimeoutError", hits.Load(), err)
	}

	hits.Store(0)
	_, err = c.Builds.CreatePreview(context.Background(), CreatePreviewRequest{UserID: "u1", Prompt: "a site"})
	if !errors.Is(err, ErrOutcomeUnknown) || !errors.As(err, &te) || hits.Load() != 1 {
		t.Fatalf("CreatePreview: %d requests, %v; want 1 and ErrOutcomeUnknown", hits.Load(), err)
	}
}

// A caller's deadline replaces the attempt timeout only when it comes
// first: with a deadline later than the attempt timeout, a hung attempt
// still ends at the attempt timeout; with one sooner, at the caller's
// deadline, reported as the caller's own.
func TestAttemptTimeoutWithCallerDeadline(t *testing.T) {
	srv, _ := hungServer(t)
	c := faultClient(t, srv.URL, WithRetry(RetryConfig{AttemptTimeout: 50 * time.Millisecond, MaxAttempts: 1}))

	later, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := c.Do(later, "GET", "/v1/op", nil, nil)
	var te *AttemptTimeoutError
	if !errors.As(err, &te) || later.Err() != nil {
		t.Fatalf("deadline after the attempt timeout: %v (caller's context: %v); want an *AttemptTimeoutError", err, later.Err())
	}

	sooner, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	c = faultClient(t, srv.URL, WithRetry(RetryConfig{AttemptTimeout: time.Minute, MaxAttempts: 1}))
	err = c.Do(sooner, "GET", "/v1/op", nil, nil)
	if errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline before the attempt timeout: %v; want the caller's context.DeadlineExceeded, not an *AttemptTimeoutError", err)
	}
}

// A negative attempt timeout turns the bound off, overriding an earlier
// option's: an answer slower than the earlier bound still arrives, and a
// hung attempt ends at the caller's deadline, reported as the caller's own.
func TestNegativeAttemptTimeoutMeansNone(t *testing.T) {
	var hits atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		time.Sleep(200 * time.Millisecond)
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(slow.Close)
	bounded := faultClient(t, slow.URL, WithRetry(RetryConfig{AttemptTimeout: 50 * time.Millisecond, MaxAttempts: 1}))
	var te *AttemptTimeoutError
	if err := bounded.Do(context.Background(), "GET", "/v1/op", nil, nil); !errors.As(err, &te) {
		t.Fatalf("with a 50ms attempt timeout: %v; want an *AttemptTimeoutError", err)
	}
	unbounded := faultClient(t, slow.URL, WithRetry(RetryConfig{AttemptTimeout: 50 * time.Millisecond, MaxAttempts: 1}),
		WithRetry(RetryConfig{AttemptTimeout: -1}))
	var out struct{ OK bool }
	hits.Store(0)
	if err := unbounded.Do(context.Background(), "GET", "/v1/op", nil, &out); err != nil || !out.OK || hits.Load() != 1 {
		t.Fatalf("with no attempt timeout: %v, %+v after %d requests; want the slow answer from one request", err, out, hits.Load())
	}

	hung, _ := hungServer(t)
	unbounded = faultClient(t, hung.URL, WithRetry(RetryConfig{AttemptTimeout: -1, MaxAttempts: 1}))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := unbounded.Do(ctx, "GET", "/v1/op", nil, nil); errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung worker, no attempt timeout: %v; want the caller's context.DeadlineExceeded", err)
	}
}

// cutShortServer answers 200 with a Content-Length longer than what it
// sends, then drops the connection.
func cutShortServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "200")
		w.WriteHeader(200)
		io.WriteString(w, `{"success":true,"buildId":"b1","pro`)
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// A 2xx answer cut short is a *ResponseError (ErrInvalidResponse): a safe
// call is tried again, a billed one is not and says its outcome is unknown.
func TestAnswerCutShort(t *testing.T) {
	srv, hits := cutShortServer(t)
	c := faultClient(t, srv.URL, WithRetry(RetryConfig{MaxAttempts: 3, MaxWait: time.Second}))

	var out map[string]any
	err := c.Do(context.Background(), "GET", "/v1/op", nil, &out)
	var re *ResponseError
	if !errors.As(err, &re) || !errors.Is(err, ErrInvalidResponse) || hits.Load() != 3 {
		t.Fatalf("GET: %d requests, %v; want 3 and a *ResponseError", hits.Load(), err)
	}

	hits.Store(0)
	_, err = c.Builds.CreatePreview(context.Background(), CreatePreviewRequest{UserID: "u1", Prompt: "a site"})
	if !errors.As(err, &re) || !errors.Is(err, ErrOutcomeUnknown) || hits.Load() != 1 {
		t.Fatalf("CreatePreview: %d requests, %v; want 1, a *ResponseError and ErrOutcomeUnknown", hits.Load(), err)
	}
}

// JSON answers are decoded as a stream under a cap: eight concurrent
// answers of 100 MiB each neither exhaust memory nor decode.
func TestOversizedAnswersStayBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 800 MiB over loopback")
	}
	const size = 100 << 20
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"data":"`)
		chunk := []byte(strings.Repeat("x", 64<<10))
		for n := 0; n < size; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		io.WriteString(w, `"}`)
	}))
	defer srv.Close()
	c := faultClient(t, srv.URL, WithRetry(RetryConfig{MaxAttempts: 1, MaxWait: time.Second}))

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out struct{ Data string }
			errs[i] = c.Do(context.Background(), "GET", "/v1/big", nil, &out)
		}()
	}
	wg.Wait()
	close(done)
	<-sampled
	for _, err := range errs {
		var re *ResponseError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), "over") {
			t.Fatalf("want a *ResponseError saying the answer is too large, got %v", err)
		}
	}
	grew := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("heap in use grew by %.1f MiB at peak", float64(grew)/(1<<20))
	if grew > 64<<20 {
		t.Fatalf("heap grew by %d MiB for 8 oversized answers; want under 64 MiB", grew>>20)
	}
}

// A transport swapped into the caller's *http.Client after the client was
// made (httpmock.ActivateNonDefault) carries the requests.
func TestHTTPClientTransportSwappedLater(t *testing.T) {
	hc := &http.Client{}
	c, err := NewWorkerClient(WithBaseURL("https://worker.test"), WithSecret(testSecret), WithHTTPClient(hc), WithRateLimit(60_000))
	if err != nil {
		t.Fatal(err)
	}
	httpmock.ActivateNonDefault(hc)
	defer httpmock.DeactivateAndReset()
	httpmock.RegisterResponder("GET", "https://worker.test/v1/billing/balance/u1",
		httpmock.NewStringResponder(200, `{"balance":{"welcomeBonus":0,"dailyGift":0,"paid":60,"total":60}}`))
	bal, err := c.Billing.Balance(context.Background(), "u1")
	if err != nil || bal.Total != time.Minute {
		t.Fatalf("balance through the swapped transport: %+v, %v", bal, err)
	}
}

// nilContext is a nil context.Context, which callers sometimes pass.
var nilContext context.Context

// Bad input is refused before anything is sent.
func TestRefusedBeforeSending(t *testing.T) {
	var sent atomic.Int32
	c := newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent.Add(1)
		return jsonResponse(r, 200, `{"balance":{"welcomeBonus":0,"dailyGift":0,"paid":60,"total":60}}`), nil
	}))
	ctx := context.Background()
	long := strings.Repeat("a", MaxIDLength+1)
	for name, call := range map[string]func() error{
		"whitespace user id":   func() error { _, err := c.Billing.Balance(ctx, "  \t"); return err },
		"101-character id":     func() error { _, err := c.Billing.Balance(ctx, long); return err },
		"id escaping past 100": func() error { _, err := c.Billing.Balance(ctx, strings.Repeat("é", 20)); return err },
		"dot-dot id":           func() error { _, err := c.Billing.Balance(ctx, ".."); return err },
		"slash id":             func() error { _, err := c.Billing.Balance(ctx, "a/b"); return err },
		"nil call option":      func() error { return c.Do(ctx, "GET", "/v1/x", nil, nil, nil) },
		"nil context":          func() error { return c.Do(nilContext, "GET", "/v1/x", nil, nil) },
	} {
		var ve *ValidationError
		if err := call(); !errors.As(err, &ve) {
			t.Errorf("%s: %v; want a *ValidationError", name, err)
		}
	}
	if sent.Load() != 0 {
		t.Fatalf("%d requests sent", sent.Load())
	}
	if _, err := c.Billing.Balance(ctx, strings.Repeat("a", MaxIDLength)); err != nil {
		t.Fatalf("a 100-character id is fine: %v", err)
	}
}

// Do percent-encodes bytes outside ASCII, which the worker's HTTP parser
// refuses raw, and signs what it sends.
func TestDoEncodesNonASCII(t *testing.T) {
	var target string
	c := newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		target = r.URL.RequestURI()
		if _, err := (&testVerifier{Secret: testSecret, Scheme: SigningBodyPath}).VerifyRequest(r); err != nil {
			return jsonResponse(r, 403, `{"code":"INVALID_SIGNATURE"}`), nil
		}
		return jsonResponse(r, 200, `{}`), nil
	}))
	if err := c.Do(context.Background(), "GET", "/v1/builds/b1/status?userId=u1&q=café", nil, nil); err != nil {
		t.Fatal(err)
	}
	if want := "/base/v1/builds/b1/status?userId=u1&q=caf%C3%A9"; target != want {
		t.Fatalf("sent %q, want %q", target, want)
	}
}

// Options that are nil or out of range are refused with an error, and a
// client that was never made answers ErrNotConfigured instead of
// panicking.
func TestBadOptionsAndZeroClient(t *testing.T) {
	for name, opt := range map[string]Option{
		"nil option":         nil,
		"empty user agent":   WithUserAgent(""),
		"newline in UA":      WithUserAgent("x\r\nX-Evil: 1"),
		"base over max wait": WithRetry(RetryConfig{BackoffBase: time.Minute, MaxWait: time.Second}),
		"101 attempts":       WithRetry(RetryConfig{MaxAttempts: 101}),
	} {
		if _, err := NewWorkerClient(WithSecret(testSecret), opt); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	_, err := NewWorkerClient(WithSecret(testSecret), WithBaseURL("https://user:hunter2@worker.test:badport/"))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bad base URL: %v; want an error without the password", err)
	}
	var zero WorkerClient
	if err := zero.Do(context.Background(), "GET", "/v1/x", nil, nil); !errors.Is(err, ErrNotConfigured) {
		t.Fatalf("zero client: %v", err)
	}
	var nilClient *WorkerClient
	if err := nilClient.Do(context.Background(), "GET", "/v1/x", nil, nil); !errors.Is(err, ErrNotConfigured) {
		t.Fatalf("nil client: %v", err)
	}
}

// The zero values of the typed errors print and compare without panicking.
func TestZeroValueErrors(t *testing.T) {
	for _, err := range []error{&APIError{}, &AuthError{}, &RateLimitError{}, &PayloadTooLargeError{}, &InsufficientBalanceError{}, &ValidationError{}, &ResponseError{}, &OutcomeUnknownError{}, &AttemptTimeoutError{}} {
		_ = err.Error()
		_ = fmt.Sprintf("%v %+v", err, err)
		for _, s := range []error{ErrInsufficientBalance, ErrUnauthorized, ErrServer, ErrOutcomeUnknown, ErrInvalidResponse} {
			_ = errors.Is(err, s)
		}
	}
}

// Numbers from the wire cannot make a negative or absurd RetryAfter.
func TestRetryAfterClamped(t *testing.T) {
	for body, want := range map[string]time.Duration{
		`{"error":"x","retryAfter":1e300}`:            maxRetryAfter,
		`{"error":"x","retryAfter":-5}`:               0,
		`{"error":{"code":"X","retryAfter":"1e309"}}`: 0, // not a finite number: ignored
		`{"error":"x","retryAfter":"30"}`:             30 * time.Second,
	} {
		if got := newAPIError(429, nil, []byte(body), time.Time{}).RetryAfter; got != want {
			t.Errorf("%s: RetryAfter %s, want %s", body, got, want)
		}
	}
}

// Every method of a zero WorkerClient's services answers ErrNotConfigured.
func TestZeroClientServices(t *testing.T) {
	var c WorkerClient
	ctx := context.Background()
	calls := map[string]error{}
	_, calls["Balance"] = c.Billing.Balance(ctx, "u1")
	_, calls["CheckSufficient"] = c.Billing.CheckSufficient(ctx, CheckSufficientRequest{UserID: "u1"})
	_, calls["Usage"] = c.Billing.Usage(ctx, "u1", "day")
	_, calls["CreatePreview"] = c.Builds.CreatePreview(ctx, CreatePreviewRequest{UserID: "u1", Prompt: "p"})
	_, calls["Status"] = c.Builds.Status(ctx, "b1", "u1")
	_, calls["Wait"] = c.Builds.Wait(ctx, "b1", "u1", nil)
	for _, err := range c.Builds.Versions(ctx, "p1", "") {
		calls["Versions"] = err
	}
	for _, err := range c.Builds.Follow(ctx, "b1", "u1", nil) {
		calls["Events"] = err
	}
	c.Billing.InvalidateBalance("u1")
	for name, err := range calls {
		if !errors.Is(err, ErrNotConfigured) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A 2xx that cannot be used (a maintenance page with status 200) for a
// billed POST may mean the worker acted: it is reported as outcome unknown.
func TestUnusable2xxOnBilledPostIsOutcomeUnknown(t *testing.T) {
	c, mock := newMockClient(t)
	mock.RegisterResponder("POST", "=~/v1/op", httpmock.NewStringResponder(200, `<html>maintenance</html>`).HeaderSet(http.Header{"Content-Type": {"text/html"}}))
	err := c.Do(context.Background(), "POST", "/v1/op", map[string]int{"a": 1}, &map[string]any{})
	var re *ResponseError
	if !errors.As(err, &re) || !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("%v; want a *ResponseError matching ErrOutcomeUnknown", err)
	}
}
