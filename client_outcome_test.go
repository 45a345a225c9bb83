package sheen

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jarcoal/httpmock"
)

// Header values the caller gives that no HTTP request may carry (CR, LF
// and other control characters) are refused before anything is sent, as a
// *ValidationError naming the header and not quoting the value: a billed
// POST is not reported as maybe acted on, a GET is not tried four times.
func TestCallHeadersRefusedBeforeSending(t *testing.T) {
	var sent atomic.Int32
	c := newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent.Add(1)
		return jsonResponse(r, 200, `{}`), nil
	}))
	for _, tc := range []struct {
		name  string
		opt   CallOption
		field string
	}{
		{"LF in a header", WithHeader("X-Note", "a\nsecret"), "header X-Note"},
		{"CR in a header", WithHeader("X-Note", "a\rsecret"), "header X-Note"},
		{"NUL in a header", WithHeader("X-Note", "a\x00secret"), "header X-Note"},
		{"DEL in a header", WithHeader("X-Note", "a\x7fsecret"), "header X-Note"},
		{"space in a header name", WithHeader("X Note", "v"), "header X Note"},
		{"colon in a header name", WithHeader("X-Note:", "v"), "header X-Note:"},
		{"empty header name", WithHeader("", "v"), "header "},
		{"CRLF in the correlation id", WithCorrelationID("id\r\nX-Evil: secret"), "header X-Correlation-Id"},
		{"LF in the idempotency key", WithIdempotencyKey("key\nsecret"), "header Idempotency-Key"},
		// Headers the SDK sets itself, which would be overwritten unsaid.
		{"a correlation id as a header", WithHeader("x-correlation-id", "secret-id"), "header X-Correlation-Id"},
		{"a User-Agent as a header", WithHeader("User-Agent", "secret-agent"), "header User-Agent"},
		{"an Accept header", WithHeader("Accept", "text/secret"), "header Accept"},
		{"a Content-Type header", WithHeader("Content-Type", "text/secret"), "header Content-Type"},
	} {
		for _, method := range []string{"POST", "GET"} {
			t.Run(tc.name+" "+method, func(t *testing.T) {
				var in any
				if method == "POST" {
					in = map[string]int{"a": 1}
				}
				var resp Response
				err := c.Do(context.Background(), method, "/v1/update-project", in, nil, tc.opt, WithResponse(&resp))
				var ve *ValidationError
				if !errors.As(err, &ve) || ve.Field != tc.field {
					t.Fatalf("%v; want a *ValidationError on %q", err, tc.field)
				}
				if errors.Is(err, ErrOutcomeUnknown) || strings.Contains(err.Error(), "secret") {
					t.Fatalf("%v: must not be outcome unknown nor quote the value", err)
				}
			})
		}
	}
	if n := sent.Load(); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
	// Tabs and bytes outside ASCII are allowed in values, as net/http sends them.
	if err := c.Do(context.Background(), "GET", "/v1/x", nil, nil, WithHeader("X-Note", "a\tcafé"), WithCorrelationID("id-1")); err != nil || sent.Load() != 1 {
		t.Fatalf("a valid header: %v after %d requests", err, sent.Load())
	}
}

// The header check refuses exactly what net/http's Transport refuses (it
// would refuse it only once the attempt is under way, which the retry rule
// cannot tell from a failure after sending), byte by byte, in names and
// values.
func TestHeaderCheckMatchesNetHTTP(t *testing.T) {
	errDial := errors.New("dialled: the transport accepted the header")
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return nil, errDial }}
	defer tr.CloseIdleConnections()
	netHTTPSends := func(name, value string) bool {
		req, err := http.NewRequest("GET", "http://worker.test/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header[name] = []string{value}
		_, err = tr.RoundTrip(req)
		return errors.Is(err, errDial)
	}
	for b := range 256 {
		value, name := "a"+string([]byte{byte(b)})+"b", "X-"+string([]byte{byte(b)})
		if got, want := validHeaderValue(value), netHTTPSends("X-Note", value); got != want {
			t.Errorf("value with byte %#x: valid %v, net/http sends it %v", b, got, want)
		}
		if got, want := validHeaderName(name), netHTTPSends(name, "v"); got != want {
			t.Errorf("name with byte %#x: valid %v, net/http sends it %v", b, got, want)
		}
	}
}

// AI.Generate refuses the same headers before sending.
func TestGenerateRefusesBadHeaders(t *testing.T) {
	cc, err := newCallConfig([]CallOption{WithHeader("X-Note", "a\r\nb")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = GenerateRequest{UserID: "u1", ProjectID: "p1", Prompt: "hi"}.encode(cc)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "header X-Note" {
		t.Fatalf("%v; want a *ValidationError on the header", err)
	}
}

// An out that cannot receive the answer is refused before the request is
// sent (a billed POST would otherwise start a build whose answer is lost);
// nil out discards the answer.
func TestOutMustBeANonNilPointer(t *testing.T) {
	var sent atomic.Int32
	c := newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent.Add(1)
		return jsonResponse(r, 200, `{"buildId":"b1"}`), nil
	}))
	type answer struct{ BuildID string }
	var nilPointer *answer
	var nilRaw *[]byte
	for name, out := range map[string]any{
		"struct value":      answer{},
		"map value":         map[string]any{},
		"typed nil pointer": nilPointer,
		"nil *[]byte":       nilRaw,
	} {
		err := c.Do(context.Background(), "POST", "/v1/update-project", map[string]int{"a": 1}, out)
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != "out" {
			t.Errorf("%s: %v; want a *ValidationError on out", name, err)
		}
	}
	if n := sent.Load(); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
	var a answer
	if err := c.Do(context.Background(), "POST", "/v1/update-project", map[string]int{"a": 1}, &a); err != nil || a.BuildID != "b1" {
		t.Fatalf("pointer out: %v, %+v", err, a)
	}
	if err := c.Do(context.Background(), "POST", "/v1/update-project", map[string]int{"a": 1}, nil); err != nil {
		t.Fatalf("nil out: %v", err)
	}
}

// A TLS handshake that fails sends nothing, so it is never "outcome
// unknown"; one that will fail the same way again (a certificate that does
// not verify, a worker that does not speak TLS) is final at once, and one
// that timed out is tried again like a refused connection.
func TestTLSHandshakeFailuresSendNothing(t *testing.T) {
	var handled atomic.Int32
	untrusted := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
		io.WriteString(w, `{"success":true,"buildId":"b1"}`)
	}))
	untrusted.Config.ErrorLog = log.New(io.Discard, "", 0) // the client's refusal of the handshake
	t.Cleanup(untrusted.Close)
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handled.Add(1) }))
	t.Cleanup(plain.Close)

	for _, tc := range []struct {
		name, base string
		want       func(error) bool
	}{
		{"untrusted certificate", untrusted.URL, func(err error) bool {
			var v *tls.CertificateVerificationError
			return errors.As(err, &v)
		}},
		{"plain HTTP worker", strings.Replace(plain.URL, "http:", "https:", 1), func(err error) bool { return errors.Is(err, http.ErrSchemeMismatch) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := faultClient(t, tc.base, WithHTTPClient(&http.Client{Transport: &http.Transport{}}))
			var resp Response
			_, err := c.Builds.CreatePreview(context.Background(), CreatePreviewRequest{UserID: "u1", Prompt: "p"}, WithResponse(&resp))
			if !tc.want(err) || errors.Is(err, ErrOutcomeUnknown) || resp.Attempts != 1 {
				t.Fatalf("CreatePreview: %v after %d attempts; want the TLS failure, final, not outcome unknown", err, resp.Attempts)
			}
			err = c.Do(context.Background(), "GET", "/v1/x", nil, nil, WithResponse(&resp))
			if !tc.want(err) || resp.Attempts != 1 {
				t.Fatalf("GET: %v after %d attempts; want the TLS failure after 1", err, resp.Attempts)
			}
		})
	}
	if n := handled.Load(); n != 0 {
		t.Fatalf("the handler saw %d requests", n)
	}

	t.Run("handshake timeout", func(t *testing.T) {
		silent := silentListener(t)
		tr := &http.Transport{TLSHandshakeTimeout: 20 * time.Millisecond}
		t.Cleanup(tr.CloseIdleConnections)
		c := faultClient(t, "https://"+silent, WithHTTPClient(&http.Client{Transport: tr}))
		var resp Response
		_, err := c.Builds.CreatePreview(context.Background(), CreatePreviewRequest{UserID: "u1", Prompt: "p"}, WithResponse(&resp), WithCallAttempts(2))
		if err == nil || !strings.Contains(err.Error(), "TLS handshake timeout") || errors.Is(err, ErrOutcomeUnknown) || resp.Attempts != 2 {
			t.Fatalf("CreatePreview: %v after %d attempts; want the handshake timeout, tried twice, not outcome unknown", err, resp.Attempts)
		}
	})
}

// silentListener accepts connections and never writes to them: a TLS
// handshake with it times out. It returns its address.
func silentListener(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// A 2xx that cannot be used, to a call that may start a build, may mean
// the worker acted: whatever the shape, it is ErrOutcomeUnknown (still an
// unusable response, *ResponseError), sent once, and the user's cached
// balance is dropped as for a build that started. An answer that is no
// JSON object does not claim the build was not queued.
func TestUnusable2xxOnBuildIsOutcomeUnknown(t *testing.T) {
	big := `{"success":true,"buildId":"b1","pad":"` + strings.Repeat("0", maxResponseBody) + `"}`
	for name, body := range map[string]string{
		"array": `[]`, "string": `"queued"`, "number": `123`, "null": `null`, "object over the cap": big,
		"page": `<html>ok</html>`, "broken JSON": `{"a":`, "empty": ``,
	} {
		t.Run(name, func(t *testing.T) {
			c, mt, notes := buildsClient(t)
			mt.RegisterResponder("POST", buildsBase+"/v1/create-preview-for-new-project", buildsAnswer(200, body))
			_, err := c.Builds.CreatePreview(context.Background(), CreatePreviewRequest{UserID: "u1", Prompt: "p"})
			var re *ResponseError
			if !errors.Is(err, ErrOutcomeUnknown) || !errors.As(err, &re) || !errors.Is(err, ErrInvalidResponse) {
				t.Fatalf("%.300v; want ErrOutcomeUnknown over a *ResponseError", err)
			}
			if errors.Is(err, ErrBuildNotQueued) {
				t.Errorf("%.300v matches ErrBuildNotQueued: nothing says the build was not queued", err)
			}
			if n := mt.GetTotalCallCount(); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
			if diff := cmp.Diff([]string{"u1"}, notes.list()); diff != "" {
				t.Errorf("a build that may have started drops the cached balance (-want +got):\n%s", diff)
			}
		})
	}
	// The worker's own word that it queued nothing stays final and known.
	c, mt, notes := buildsClient(t)
	mt.RegisterResponder("POST", buildsBase+"/v1/create-preview-for-new-project", buildsAnswer(200, `{"success":true,"buildId":"","jobId":""}`))
	_, err := c.Builds.CreatePreview(context.Background(), CreatePreviewRequest{UserID: "u1", Prompt: "p"})
	if !errors.Is(err, ErrBuildNotQueued) || errors.Is(err, ErrOutcomeUnknown) || len(notes.list()) != 0 {
		t.Fatalf("success:true without a build id: %v, balance dropped for %v; want ErrBuildNotQueued, known", err, notes.list())
	}
}

// cancelAtEOF is a body that cancels the call's context as its last byte
// is read.
type cancelAtEOF struct {
	r      io.Reader
	cancel context.CancelFunc
}

func (b *cancelAtEOF) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.cancel()
	}
	return n, err
}
func (b *cancelAtEOF) Close() error { return nil }

// An answer read whole is the call's result even if the context ends right
// after it: a build that was queued and said so is returned, not a
// context error. An answer the rule would retry ends the call instead.
func TestAnswerReadWholeStandsAfterContextEnds(t *testing.T) {
	answer := func(status int, body string) (*WorkerClient, *atomic.Int32, context.Context) {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		var n atomic.Int32
		c := newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
			n.Add(1)
			resp := jsonResponse(r, status, "")
			resp.Body = &cancelAtEOF{r: strings.NewReader(body), cancel: cancel}
			return resp, nil
		}))
		return c, &n, ctx
	}

	c, _, ctx := answer(200, `{"success":true,"buildId":"b1"}`)
	b, err := c.Builds.CreatePreview(ctx, CreatePreviewRequest{UserID: "u1", Prompt: "p"})
	if err != nil || b.ID != "b1" {
		t.Fatalf("CreatePreview: %+v, %v; want build b1", b, err)
	}

	c, _, ctx = answer(404, `{"error":"not_found","message":"no such project"}`)
	err = c.Do(ctx, "GET", "/v1/x", nil, nil)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("404 read whole: %v; want the 404", err)
	}

	c, n, ctx := answer(503, `{"error":"busy"}`)
	err = c.Do(ctx, "GET", "/v1/x", nil, nil)
	if !errors.Is(err, context.Canceled) || n.Load() != 1 {
		t.Fatalf("503 then the context ends: %v after %d requests; want context.Canceled after 1", err, n.Load())
	}
}

// An error answer cut short keeps its meaning: a 402 to a build is the
// worker's refusal (insufficient balance), not a maybe-started build.
func TestCutErrorAnswerKeepsItsStatus(t *testing.T) {
	var n atomic.Int32
	c := newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		n.Add(1)
		resp := jsonResponse(r, 402, "")
		resp.Body = &failingBody{}
		return resp, nil
	}))
	_, err := c.Builds.CreatePreview(context.Background(), CreatePreviewRequest{UserID: "u1", Prompt: "p"})
	var ib *InsufficientBalanceError
	if !errors.As(err, &ib) || errors.Is(err, ErrOutcomeUnknown) || n.Load() != 1 {
		t.Fatalf("%v after %d requests; want an *InsufficientBalanceError, known, after 1", err, n.Load())
	}
}

// A client that NewWorkerClient did not make answers its accessors with
// zero values instead of panicking.
func TestZeroClientAccessors(t *testing.T) {
	var nilClient *WorkerClient
	for name, c := range map[string]*WorkerClient{"zero": {}, "nil": nilClient} {
		if got := c.BaseURL(); got != "" {
			t.Errorf("%s: BaseURL %q", name, got)
		}
		if got := c.Signing(); got != 0 {
			t.Errorf("%s: Signing %v", name, got)
		}
		if got := c.RateLimit(); got != (LimiterSnapshot{}) {
			t.Errorf("%s: RateLimit %+v", name, got)
		}
		if got := c.ClockOffset(); got != 0 {
			t.Errorf("%s: ClockOffset %s", name, got)
		}
	}
}

// A WithHTTPClient transport that answers neither a response nor an error
// gives the call an error, as net/http does, and the attempt's timer is
// released; a response without a body reads as empty.
func TestBrokenTransportAnswers(t *testing.T) {
	var attemptCtx context.Context
	c := newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		attemptCtx = r.Context()
		return nil, nil
	}))
	err := c.Do(context.Background(), "GET", "/v1/x", nil, nil, WithCallAttempts(1))
	if err == nil || !strings.Contains(err.Error(), "neither a response nor an error") {
		t.Fatalf("%v; want an error naming the broken transport", err)
	}
	if attemptCtx == nil || attemptCtx.Err() == nil {
		t.Fatal("the attempt's context (and its timer) was not released")
	}

	for _, status := range []int{200, 401} {
		c = newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: status, Header: http.Header{}, Request: r}, nil
		}))
		err = c.Do(context.Background(), "GET", "/v1/x", nil, nil, WithCallAttempts(1))
		if (status == 200) != (err == nil) {
			t.Errorf("%d without a body: %v", status, err)
		}
	}
}

// The wait before a retry is measured against the context's deadline on
// the clock that deadline is set on, whatever clock the client was given.
func TestRetryFitsDeadlineWhateverTheClock(t *testing.T) {
	c, mock := newMockClient(t, WithRetry(RetryConfig{MaxAttempts: 2, MaxWait: time.Second}),
		WithClock(newFakeClock(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))))
	r, n := sequence(httpmock.NewStringResponder(503, `{"error":"busy"}`), httpmock.NewStringResponder(200, `{}`))
	mock.RegisterResponder("GET", "=~/v1/op", r)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if err := c.Do(ctx, "GET", "/v1/op", nil, nil); err != nil || *n != 2 {
		t.Fatalf("%v after %d attempts; want a success on the second", err, *n)
	}
}
