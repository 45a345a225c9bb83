package sheen

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"
	"github.com/jarcoal/httpmock"
)

// sequence answers each attempt with the next responder, repeating the last.
func sequence(rs ...httpmock.Responder) (httpmock.Responder, *int) {
	var mu sync.Mutex
	n := 0
	return func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		i := min(n, len(rs)-1)
		n++
		mu.Unlock()
		return rs[i](r)
	}, &n
}

var errReset = &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
var errRefused = &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
var errUntrusted = &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}

// pipeConn is a connection for errors that carry one; closed at the end.
func pipeConn(t *testing.T) net.Conn {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a
}

// cutStatus answers status with a body that breaks off midway (a
// connection reset while the body arrives), with Retry-After: 0.
func cutStatus(status int) httpmock.Responder {
	return func(r *http.Request) (*http.Response, error) {
		resp := jsonResponse(r, status, "")
		resp.Header.Set("Retry-After", "0")
		resp.Body = &failingBody{}
		return resp, nil
	}
}

// One case per cell of the retry rule in retry.go (and the package doc):
// failure x kind of call -> attempts made, success, outcome unknown.
func TestRetryDecisions(t *testing.T) {
	ok := httpmock.NewStringResponder(200, `{}`)
	status := func(s int) httpmock.Responder { return httpmock.NewStringResponder(s, `{"error":"x"}`) }
	fail := func(err error) httpmock.Responder { return httpmock.NewErrorResponder(err) }
	type retryCase struct {
		name     string
		method   string
		key      string
		first    httpmock.Responder
		attempts int // attempts made in all
		success  bool
		unknown  bool   // the error matches ErrOutcomeUnknown
		path     string // "" for /v1/op
	}
	cases := []retryCase{
		{"503 POST not sent again", "POST", "", status(503), 1, false, true, ""},
		{"502 POST not sent again", "POST", "", status(502), 1, false, true, ""},
		{"504 POST not sent again", "POST", "", status(504), 1, false, true, ""},
		{"500 POST not sent again", "POST", "", status(500), 1, false, true, ""},
		{"503 POST with Idempotency-Key retried", "POST", "k0", status(503), 2, true, false, ""},
		{"500 POST with Idempotency-Key retried", "POST", "k1", status(500), 2, true, false, ""},
		{"504 DELETE retried", "DELETE", "", status(504), 2, true, false, ""},
		{"503 PUT retried", "PUT", "", status(503), 2, true, false, ""},
		{"500 GET retried", "GET", "", status(500), 2, true, false, ""},
		{"501 GET not retried", "GET", "", status(501), 1, false, false, ""},
		{"501 POST not retried, not ambiguous", "POST", "", status(501), 1, false, false, ""},
		{"400 not retried", "GET", "", status(400), 1, false, false, ""},
		{"400 POST final, known", "POST", "", status(400), 1, false, false, ""},
		{"404 not retried", "GET", "", status(404), 1, false, false, ""},
		{"408 without a clock lesson not retried", "POST", "", status(408), 1, false, false, ""},
		{"429 POST retried", "POST", "", status(429), 2, true, false, ""},
		{"429 GET retried", "GET", "", status(429), 2, true, false, ""},
		{"dial refused POST retried", "POST", "", fail(errRefused), 2, true, false, ""},
		{"dial refused GET retried", "GET", "", fail(errRefused), 2, true, false, ""},
		{"DNS failure POST retried", "POST", "", fail(&net.DNSError{Err: "no such host", Name: "worker.invalid", IsNotFound: true}), 2, true, false, ""},
		{"reset after send POST not sent again", "POST", "", fail(errReset), 1, false, true, ""},
		{"reset GET retried", "GET", "", fail(errReset), 2, true, false, ""},
		{"reset POST with key retried", "POST", "k2", fail(errReset), 2, true, false, ""},
		// A TLS handshake that fails sends nothing: never ambiguous. A
		// certificate that does not verify, or a worker that does not speak
		// TLS, fails the same way every time: final.
		{"untrusted certificate POST final, known", "POST", "", fail(errUntrusted), 1, false, false, ""},
		{"untrusted certificate GET final", "GET", "", fail(errUntrusted), 1, false, false, ""},
		{"wrong host name POST final, known", "POST", "", fail(&tls.CertificateVerificationError{Err: x509.HostnameError{Host: "worker.test"}}), 1, false, false, ""},
		{"plain HTTP worker POST final, known", "POST", "", fail(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake", Conn: pipeConn(t)}), 1, false, false, ""},
		{"plain HTTP answer GET final", "GET", "", fail(http.ErrSchemeMismatch), 1, false, false, ""},
		{"bad record after the handshake POST not sent again", "POST", "", fail(tls.RecordHeaderError{Msg: "oversized record received"}), 1, false, true, ""},
		// An error answer cut short is judged by its status, which proves
		// the worker answered: only a 2xx cut short is ambiguous.
		{"429 cut short POST retried", "POST", "", cutStatus(429), 2, true, false, ""},
		{"402 cut short POST final, known", "POST", "", cutStatus(402), 1, false, false, ""},
		{"404 cut short POST final, known", "POST", "", cutStatus(404), 1, false, false, ""},
		{"400 cut short GET final", "GET", "", cutStatus(400), 1, false, false, ""},
		{"503 cut short POST not sent again", "POST", "", cutStatus(503), 1, false, true, ""},
		{"503 cut short GET retried", "GET", "", cutStatus(503), 2, true, false, ""},
		{"200 cut short POST not sent again", "POST", "", cutStatus(200), 1, false, true, ""},
	}
	// The worker keeps no replay cache for the POSTs that start and bill a
	// build: a key there would not stop a second attempt from billing a
	// second build, so it does not make the call safe.
	for _, path := range []string{"/v1/create-preview-for-new-project", "/v1/update-project", "/v1/versions/v-1/rebuild"} {
		cases = append(cases,
			retryCase{"503 key ignored on " + path, "POST", "k3", status(503), 1, false, true, path},
			retryCase{"reset key ignored on " + path, "POST", "k4", fail(errReset), 1, false, true, path},
			retryCase{"refused still retried on " + path, "POST", "k5", fail(errRefused), 2, true, false, path},
		)
	}
	// Rollback replays its answer by key: a key makes it safe.
	cases = append(cases, retryCase{"503 rollback with key retried", "POST", "k6", status(503), 2, true, false, "/v1/versions/rollback?x=1"})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, mock := newMockClient(t, WithRetry(RetryConfig{MaxAttempts: 4, MaxWait: time.Second}))
			r, n := sequence(tc.first, ok)
			path := cmp.Or(tc.path, "/v1/op")
			mock.RegisterResponder(tc.method, "=~"+regexp.QuoteMeta(strings.TrimSuffix(path, "?x=1")), r)
			var in any
			if tc.method == "POST" || tc.method == "PUT" {
				in = map[string]int{"a": 1}
			}
			var opts []CallOption
			if tc.key != "" {
				opts = append(opts, WithIdempotencyKey(tc.key))
			}
			err := c.Do(context.Background(), tc.method, path, in, nil, opts...)
			if *n != tc.attempts {
				t.Errorf("%d attempts, want %d", *n, tc.attempts)
			}
			if (err == nil) != tc.success {
				t.Errorf("err = %v, want success %v", err, tc.success)
			}
			if got := errors.Is(err, ErrOutcomeUnknown); got != tc.unknown {
				t.Errorf("errors.Is(err, ErrOutcomeUnknown) = %v, want %v (err %v)", got, tc.unknown, err)
			}
		})
	}
}

// A 5xx that ends a billed POST keeps its type: the caller can still ask
// errors.As for the *APIError and errors.Is for ErrServer, and reads the
// correlation id to reconcile.
func TestOutcomeUnknownKeepsTheAPIError(t *testing.T) {
	c, mock := newMockClient(t)
	mock.RegisterResponder("POST", "=~/v1/op", httpmock.NewStringResponder(504, `<html>Gateway Timeout</html>`))
	err := c.Do(context.Background(), "POST", "/v1/op", map[string]int{"a": 1}, nil, WithCorrelationID("corr-1"))
	var ou *OutcomeUnknownError
	var ae *APIError
	if !errors.As(err, &ou) || !errors.As(err, &ae) || !errors.Is(err, ErrServer) {
		t.Fatalf("err = %#v; want an *OutcomeUnknownError around an *APIError", err)
	}
	if ou.CorrelationID != "corr-1" || ou.Attempts != 1 || ae.StatusCode != 504 {
		t.Fatalf("correlation %q, attempts %d, status %d", ou.CorrelationID, ou.Attempts, ae.StatusCode)
	}
}

// An Idempotency-Key given as a plain header makes the call as safe to
// retry as one given with WithIdempotencyKey.
func TestIdempotencyKeyHeaderAllowsRetry(t *testing.T) {
	c, mock := newMockClient(t, WithRetry(RetryConfig{MaxAttempts: 4, MaxWait: time.Second}))
	r, n := sequence(httpmock.NewStringResponder(500, `{}`), httpmock.NewStringResponder(200, `{}`))
	mock.RegisterResponder("POST", "=~/v1/op", r)
	if err := c.Do(context.Background(), "POST", "/v1/op", map[string]int{}, nil, WithHeader("Idempotency-Key", "k")); err != nil || *n != 2 {
		t.Fatalf("%d attempts, %v", *n, err)
	}
}

func TestRetryGivesUpAfterMaxAttempts(t *testing.T) {
	c, mock := newMockClient(t, WithRetry(RetryConfig{MaxAttempts: 4, MaxWait: time.Second}))
	r, n := sequence(httpmock.NewStringResponder(503, `{"error":"down"}`))
	mock.RegisterResponder("GET", "=~/v1/op", r)
	err := c.Do(context.Background(), "GET", "/v1/op", nil, nil)
	if *n != 4 || !errors.Is(err, ErrServer) {
		t.Fatalf("%d attempts, err %v; want 4 attempts and the last 503", *n, err)
	}
}

func TestRetryGivesUpOnTransportErrorWithoutURL(t *testing.T) {
	c, mock := newMockClient(t, WithRetry(RetryConfig{MaxAttempts: 3, MaxWait: time.Second}))
	r, n := sequence(httpmock.NewErrorResponder(errRefused))
	mock.RegisterResponder("GET", "=~/v1/op", r)
	err := c.Do(context.Background(), "GET", "/v1/op?userId=u1", nil, nil)
	if *n != 3 || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("%d attempts, err %v", *n, err)
	}
	if want := "sheen: GET /base/v1/op: after 3 attempt(s): dial tcp: connection refused"; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}

// Every attempt carries the same correlation id and idempotency key, and a
// fresh nonce.
func TestRetryKeepsCallHeaders(t *testing.T) {
	c, mock := newMockClient(t, WithRetry(RetryConfig{MaxAttempts: 3, MaxWait: time.Second}), WithSigning(SigningDual))
	var mu sync.Mutex
	var corr, keys, nonces []string
	mock.RegisterResponder("POST", "=~/v1/versions/rollback", func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		defer mu.Unlock()
		corr = append(corr, r.Header.Get("X-Correlation-Id"))
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		nonces = append(nonces, r.Header.Get(HeaderNonce))
		if len(corr) < 3 {
			return nil, errReset
		}
		return httpmock.NewStringResponse(200, `{}`), nil
	})
	if err := c.Do(context.Background(), "POST", "/v1/versions/rollback", map[string]string{"projectId": "p"}, nil, WithIdempotencyKey("idem-1")); err != nil {
		t.Fatal(err)
	}
	if len(corr) != 3 || corr[0] == "" || corr[0] != corr[1] || corr[1] != corr[2] {
		t.Errorf("correlation ids %q: one per call", corr)
	}
	if keys[0] != "idem-1" || keys[1] != "idem-1" || keys[2] != "idem-1" {
		t.Errorf("idempotency keys %q", keys)
	}
	if nonces[0] == nonces[1] || nonces[1] == nonces[2] {
		t.Errorf("nonces %q: each attempt needs its own", nonces)
	}
}

// The correlation id the SDK makes for a call is a UUIDv4 (what the worker
// accepts and echoes), and calls do not share one.
func TestCorrelationIDsAreDistinctUUIDv4s(t *testing.T) {
	seen := map[string]bool{}
	for range 10_000 {
		id := newCorrelationID()
		u, err := uuid.Parse(id)
		if err != nil || len(id) != 36 || u.Version() != 4 || u.Variant() != uuid.RFC4122 {
			t.Fatalf("correlation id %q: not a canonical UUIDv4 (%v)", id, err)
		}
		if seen[id] {
			t.Fatalf("correlation id %q made twice", id)
		}
		seen[id] = true
	}
}

func TestRetryAfterHonouredAndCapped(t *testing.T) {
	// synctest's fake time lets the test wait out Retry-After instantly.
	synctest.Test(t, func(t *testing.T) {
		c, mock := newMockClient(t, WithRetry(RetryConfig{MaxAttempts: 4, MaxWait: 10 * time.Second}))
		var times []time.Time
		mock.RegisterResponder("GET", "=~/v1/op", func(r *http.Request) (*http.Response, error) {
			times = append(times, time.Now())
			if len(times) == 1 {
				resp := httpmock.NewStringResponse(429, `{"error":"slow"}`)
				resp.Header.Set("Retry-After", "7")
				return resp, nil
			}
			return httpmock.NewStringResponse(200, `{}`), nil
		})
		if err := c.Do(context.Background(), "GET", "/v1/op", nil, nil); err != nil {
			t.Fatal(err)
		}
		if got := times[1].Sub(times[0]); got < 7*time.Second {
			t.Fatalf("second attempt after %s, want the 7s Retry-After", got)
		}
	})
}

func TestRetryAfterBeyondMaxWaitReturnsRateLimitError(t *testing.T) {
	c, mock := newMockClient(t, WithRetry(RetryConfig{MaxAttempts: 4, MaxWait: 10 * time.Second}))
	r, n := sequence(func(r *http.Request) (*http.Response, error) {
		resp := httpmock.NewStringResponse(429, `{"error":"Rate limit exceeded"}`)
		resp.Header.Set("Retry-After", "3600")
		resp.Header.Set("X-Ratelimit-Limit", "100")
		resp.Header.Set("X-Ratelimit-Remaining", "0")
		resp.Header.Set("X-Ratelimit-Reset", "3600")
		return resp, nil
	})
	mock.RegisterResponder("POST", "=~/v1/create", r)
	err := c.Do(context.Background(), "POST", "/v1/create", map[string]string{}, nil)
	var rl *RateLimitError
	if !errors.As(err, &rl) || *n != 1 {
		t.Fatalf("want a *RateLimitError after one attempt, got %d attempts, %T %v", *n, err, err)
	}
	if rl.RetryAfter != time.Hour || rl.Limit != 100 || rl.Remaining != 0 || time.Until(rl.Reset) < 59*time.Minute {
		t.Fatalf("fields %+v", rl)
	}
}

func TestRetryAfterBeyondDeadlineReturnsAtOnce(t *testing.T) {
	c, mock := newMockClient(t, WithRetry(RetryConfig{MaxAttempts: 4, MaxWait: time.Hour}))
	r, n := sequence(func(r *http.Request) (*http.Response, error) {
		resp := httpmock.NewStringResponse(429, `{"error":"slow"}`)
		resp.Header.Set("Retry-After", strconv.Itoa(120))
		return resp, nil
	})
	mock.RegisterResponder("GET", "=~/v1/op", r)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err := c.Do(ctx, "GET", "/v1/op", nil, nil)
	var rl *RateLimitError
	if !errors.As(err, &rl) || *n != 1 {
		t.Fatalf("want *RateLimitError after one attempt, got %d, %v", *n, err)
	}
	// Not a timing assertion: only that it did not wait out the deadline.
	if ctx.Err() != nil {
		t.Fatalf("returned only after the deadline (%s)", time.Since(start))
	}
}

func TestContextCancelStopsRetries(t *testing.T) {
	c, mock := newMockClient(t, WithRetry(RetryConfig{MaxAttempts: 10, MaxWait: time.Hour}), WithRetry(RetryConfig{BackoffBase: time.Hour}))
	ctx, cancel := context.WithCancel(context.Background())
	mock.RegisterResponder("GET", "=~/v1/op", func(r *http.Request) (*http.Response, error) {
		cancel()
		return httpmock.NewStringResponse(503, `{}`), nil
	})
	err := c.Do(ctx, "GET", "/v1/op", nil, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
}

// A 408 TIMESTAMP_OUT_OF_RANGE teaches the client the worker's clock, and
// the retry (and later calls) are signed with the corrected time.
func TestClockSkewCorrected(t *testing.T) {
	serverNow := time.Now().Add(-10 * time.Minute)
	ver := &testVerifier{Secret: testSecret, Scheme: SigningDual, Now: func() time.Time { return serverNow }}
	n := 0
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		n++
		if _, err := ver.VerifyRequest(r); err != nil {
			var ae *AuthError
			errors.As(err, &ae)
			resp := jsonResponse(r, ae.StatusCode, `{"error":"Timestamp out of range","code":"`+string(ae.Code)+`"}`)
			resp.Header.Set("Date", serverNow.UTC().Format(http.TimeFormat))
			return resp, nil
		}
		return jsonResponse(r, 200, `{}`), nil
	})
	c := newTestClient(t, rt, WithSigning(SigningDual))
	if err := c.Do(context.Background(), "GET", "/v1/op", nil, nil); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if n != 2 {
		t.Fatalf("%d attempts, want 2 (one refused, one corrected)", n)
	}
	if off := c.ClockOffset(); off > -9*time.Minute || off < -11*time.Minute {
		t.Fatalf("offset %s, want about -10m", off)
	}
	n = 0
	if err := c.Do(context.Background(), "GET", "/v1/op", nil, nil); err != nil || n != 1 {
		t.Fatalf("later calls use the offset: %d attempts, %v", n, err)
	}
}

func TestClockSkewRetriedOnlyOnce(t *testing.T) {
	c, mock := newMockClient(t, WithRetry(RetryConfig{MaxAttempts: 4, MaxWait: time.Second}), WithSigning(SigningTimestamp))
	r, n := sequence(func(r *http.Request) (*http.Response, error) {
		serverTime := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
		resp := httpmock.NewStringResponse(408, `{"code":"TIMESTAMP_OUT_OF_RANGE","error":"skew","serverTime":`+serverTime+`}`)
		return resp, nil
	})
	mock.RegisterResponder("GET", "=~/v1/op", r)
	err := c.Do(context.Background(), "GET", "/v1/op", nil, nil)
	var ae *AuthError
	if !errors.As(err, &ae) || ae.Code != CodeTimestampOutOfRange || *n != 2 {
		t.Fatalf("%d attempts, %v; want 2 then *AuthError", *n, err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30", 30 * time.Second, true},
		{"1.5", 1500 * time.Millisecond, true},
		{"Thu, 26 Nov 2026 12:01:00 GMT", time.Minute, true},
		{"Thu, 26 Nov 2026 11:00:00 GMT", 0, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"", 0, false},
	} {
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %s %v, want %s %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// failingBody yields some bytes, then a connection error.
type failingBody struct{ sent bool }

func (b *failingBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, `{"balance":`), nil
	}
	return 0, io.ErrUnexpectedEOF
}
func (b *failingBody) Close() error { return nil }

// A body cut short is retried for GET (the answer is safe to fetch again)
// and not for POST (the worker may have acted on it).
func TestTruncatedBodyRetriedOnlyWhenIdempotent(t *testing.T) {
	for _, method := range []string{"GET", "POST"} {
		n := 0
		rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			n++
			resp := jsonResponse(r, 200, `{"ok":true}`)
			if n == 1 {
				resp.Body = &failingBody{}
			}
			return resp, nil
		})
		c := newTestClient(t, rt)
		var in any
		if method == "POST" {
			in = map[string]string{}
		}
		var out struct{ OK bool }
		err := c.Do(context.Background(), method, "/v1/x", in, &out)
		switch method {
		case "GET":
			if err != nil || !out.OK || n != 2 {
				t.Errorf("GET: %d attempts, %v", n, err)
			}
		case "POST":
			if !errors.Is(err, io.ErrUnexpectedEOF) || n != 1 {
				t.Errorf("POST: %d attempts, %v", n, err)
			}
		}
	}
}

// Calls running at once keep their own retry state (a call's policy and
// retry client are pooled between calls): each sees its own attempts,
// answer and error, never another call's.
func TestConcurrentCallsKeepTheirOwnRetryState(t *testing.T) {
	var mu sync.Mutex
	attempts := map[string]int{}
	c := newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		attempts[r.URL.Path]++
		n := attempts[r.URL.Path]
		mu.Unlock()
		i, _ := strconv.Atoi(r.URL.Query().Get("i"))
		switch {
		case i%2 == 0:
			return jsonResponse(r, 404, `{"error":"gone"}`), nil
		case n == 1:
			return jsonResponse(r, 503, `{"error":"busy"}`), nil
		}
		return jsonResponse(r, 200, `{"n":`+strconv.Itoa(i)+`}`), nil
	}))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				path := "/v1/op/" + strconv.Itoa(g) + "/" + strconv.Itoa(i)
				var out struct{ N int }
				var resp Response
				err := c.Do(context.Background(), "GET", path+"?i="+strconv.Itoa(i), nil, &out, WithResponse(&resp))
				var apiErr *APIError
				switch {
				case i%2 == 0 && (!errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Path != "/base"+path || resp.Attempts != 1):
					t.Errorf("%s: %v after %d attempt(s); want its own 404 at once", path, err, resp.Attempts)
				case i%2 == 1 && (err != nil || out.N != i || resp.Attempts != 2):
					t.Errorf("%s: %v, answer %d after %d attempt(s); want %d after 2", path, err, out.N, resp.Attempts, i)
				}
			}
		})
	}
	wg.Wait()
}
