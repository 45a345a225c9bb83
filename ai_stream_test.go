package sheen

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// pipeTransport serves each request with h in this process through an
// io.Pipe: no socket, so in a synctest bubble every wait is durable and fake
// time runs. Like a connection, the body fails once the request's context
// ends, and a handler that panics (http.ErrAbortHandler) resets it.
type pipeTransport struct{ h http.Handler }

func (t pipeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	ctx := r.Context()
	sreq := httptest.NewRequestWithContext(ctx, r.Method, r.URL.String(), bytes.NewReader(body))
	sreq.Header = r.Header.Clone()
	sreq.RequestURI = r.URL.RequestURI()
	pr, pw := io.Pipe()
	rw := &pipeWriter{header: http.Header{}, pw: pw, ready: make(chan struct{})}
	go func() {
		defer func() {
			if recover() != nil {
				rw.fail(errReset)
				pw.CloseWithError(errReset)
			}
		}()
		t.h.ServeHTTP(rw, sreq)
		rw.WriteHeader(http.StatusOK)
		pw.Close()
	}()
	select {
	case <-rw.ready:
	case <-ctx.Done():
		pr.CloseWithError(ctx.Err())
		return nil, ctx.Err()
	}
	if rw.err != nil {
		return nil, rw.err
	}
	stop := context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
	return &http.Response{StatusCode: rw.status, Header: rw.sent, Body: &pipeBody{pr, stop}, Request: r}, nil
}

// pipeWriter is the handler's side of a pipeTransport.
type pipeWriter struct {
	header http.Header
	sent   http.Header // the header as of WriteHeader
	pw     *io.PipeWriter
	status int
	err    error
	ready  chan struct{}
	once   sync.Once
}

func (w *pipeWriter) Header() http.Header { return w.header }

func (w *pipeWriter) WriteHeader(status int) {
	w.once.Do(func() {
		w.status, w.sent = status, w.header.Clone()
		close(w.ready)
	})
}

func (w *pipeWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.pw.Write(p)
}

// fail ends a response that never started with err.
func (w *pipeWriter) fail(err error) {
	w.once.Do(func() {
		w.err = err
		close(w.ready)
	})
}

type pipeBody struct {
	*io.PipeReader
	stop func() bool
}

func (b *pipeBody) Close() error {
	b.stop()
	return b.PipeReader.Close()
}

// refused is a transport whose first n dials are refused; after that it
// hands requests to next.
type refused struct {
	n    int
	next http.RoundTripper

	mu    sync.Mutex
	dials int
}

func (r *refused) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.dials++
	refuse := r.dials <= r.n
	r.mu.Unlock()
	if refuse {
		return nil, errRefused
	}
	return r.next.RoundTrip(req)
}

// fakeGenerate is the deployed worker's /generate: a heartbeat at once, one
// more every beat (0: none), then after run the document. When status is
// set, it answers that at once instead. It records what it receives.
type fakeGenerate struct {
	beat   time.Duration
	run    time.Duration
	doc    string
	status int
	body   string
	header http.Header
	// chunks, when set, are written in turn after the run instead of doc;
	// resetAfter then resets the connection.
	chunks     []string
	resetAfter bool
	// answers, when set, script the status of each call in turn (0: the
	// streamed answer).
	answers []int

	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	target string
	header http.Header
	body   []byte
}

func (f *fakeGenerate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.seen = append(f.seen, seenRequest{target: r.RequestURI, header: r.Header.Clone(), body: body})
	status := f.status
	if n := len(f.seen) - 1; n < len(f.answers) {
		status = f.answers[n]
	}
	f.mu.Unlock()
	w.Header().Set("X-Correlation-Id", r.Header.Get("X-Correlation-Id"))
	if status != 0 {
		for k, v := range f.header {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, f.body)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if _, err := io.WriteString(w, " "); err != nil || !f.wait(r.Context(), w) {
		return
	}
	chunks := f.chunks
	if chunks == nil {
		chunks = []string{f.doc}
	}
	for _, c := range chunks {
		if _, err := io.WriteString(w, c); err != nil {
			return
		}
	}
	if f.resetAfter {
		panic(http.ErrAbortHandler)
	}
}

// wait runs the model for f.run, with a heartbeat every f.beat.
func (f *fakeGenerate) wait(ctx context.Context, w io.Writer) bool {
	end := time.Now().Add(f.run)
	for {
		d := time.Until(end)
		if d <= 0 {
			return true
		}
		beat := f.beat > 0 && f.beat < d
		if beat {
			d = f.beat
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return false
		}
		if beat {
			if _, err := io.WriteString(w, " "); err != nil {
				return false
			}
		}
	}
}

func (f *fakeGenerate) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.seen...)
}

// sleepCtx sleeps d unless ctx ends first; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-ctx.Done():
		return false
	}
}

// aiClient is a test client whose requests go to h in process.
func aiClient(t *testing.T, h http.Handler, opts ...Option) *WorkerClient {
	t.Helper()
	return newTestClient(t, pipeTransport{h}, opts...)
}

const okDoc = `{"success":true,"output":"Added a dark mode toggle."}`

var genReq = GenerateRequest{UserID: "u1", ProjectID: "p1", Prompt: "Add a dark mode toggle"}

// A model that runs for 3 minutes while the worker heart-beats every 20 s
// is not cut: neither by the attempt timeout (1 s here) nor by the stall
// timeout (60 s). In the bubble, the 3 minutes take no time.
func TestGenerateLongRunIsNotCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := &fakeGenerate{beat: 20 * time.Second, run: 3 * time.Minute, doc: okDoc}
		c := aiClient(t, fake, WithRetry(RetryConfig{AttemptTimeout: time.Second}))
		start := time.Now()
		res, err := c.AI.Generate(context.Background(), genReq)
		if err != nil {
			t.Fatal(err)
		}
		if res.Output != "Added a dark mode toggle." || res.Fallback {
			t.Errorf("result %+v", res)
		}
		if d := time.Since(start); d < 3*time.Minute {
			t.Errorf("the call ended after %s, before the model did", d)
		}
		if n := len(fake.requests()); n != 1 {
			t.Errorf("the worker saw %d requests", n)
		}
	})
}

// A stream that goes silent after its heartbeat is cut at the stall
// timeout, not sent again, and reported as an outcome unknown that also
// matches context.DeadlineExceeded; a longer stall timeout, or none, lets
// the same silent run finish.
func TestGenerateStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := &fakeGenerate{run: DefaultGenerateStallTimeout + 3*time.Minute, doc: okDoc}
		c := aiClient(t, fake)
		start := time.Now()
		_, err := c.AI.Generate(context.Background(), genReq)
		if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			t.Fatalf("a stall gave %v", err)
		}
		if !strings.Contains(err.Error(), "stall timeout of "+DefaultGenerateStallTimeout.String()) {
			t.Errorf("the error does not name the stall: %v", err)
		}
		if d := time.Since(start); d != DefaultGenerateStallTimeout {
			t.Errorf("cut after %s, want the stall timeout %s", d, DefaultGenerateStallTimeout)
		}
		if n := len(fake.requests()); n != 1 {
			t.Errorf("the worker saw %d requests", n)
		}
	})
	for _, stall := range []time.Duration{-1, DefaultGenerateStallTimeout + 5*time.Minute} { // -1: none
		synctest.Test(t, func(t *testing.T) {
			fake := &fakeGenerate{run: DefaultGenerateStallTimeout + 3*time.Minute, doc: okDoc}
			c := aiClient(t, fake, WithGenerate(GenerateConfig{StallTimeout: stall}))
			if _, err := c.AI.Generate(context.Background(), genReq); err != nil {
				t.Errorf("stall timeout %s: %v", stall, err)
			}
		})
	}
}

// A worker that takes the request and sends no header is cut at the stall
// timeout too, as an outcome unknown: it may have started the model. The
// headers count as the answer's first bytes: the stall timeout runs again
// from them.
func TestGenerateStallBeforeHeaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if sleepCtx(r.Context(), 50*time.Second) {
				w.WriteHeader(http.StatusOK)
			}
			if sleepCtx(r.Context(), 50*time.Second) {
				io.WriteString(w, okDoc)
			}
		})
		c := aiClient(t, h)
		if _, err := c.AI.Generate(context.Background(), genReq); err != nil {
			t.Fatalf("headers at 50 s, the document 50 s later: %v", err)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		var seen atomic.Int32
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen.Add(1)
			<-r.Context().Done()
		})
		c := aiClient(t, h, WithGenerate(GenerateConfig{StallTimeout: 10 * time.Second}))
		_, err := c.AI.Generate(context.Background(), genReq)
		if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v", err)
		}
		if n := seen.Load(); n != 1 {
			t.Errorf("sent %d times", n)
		}
	})
}

// The answer is read whatever its chunking: whitespace heartbeats skipped,
// one document decoded, escapes and non-ASCII text intact.
func TestGenerateDecodesHeartbeatsThenDocument(t *testing.T) {
	for name, chunks := range map[string][]string{
		"one piece":        {okDoc},
		"more heartbeats":  {" ", "\n", "\t\r\n  ", okDoc, "\n"},
		"byte by byte":     strings.Split(okDoc, ""),
		"split mid-string": {`{"success":tr`, `ue,"output":"Added a dark `, `mode toggle."}`},
	} {
		t.Run(name, func(t *testing.T) {
			c := aiClient(t, &fakeGenerate{chunks: chunks})
			res, err := c.AI.Generate(context.Background(), genReq)
			if err != nil || res.Output != "Added a dark mode toggle." {
				t.Fatalf("got %+v, %v", res, err)
			}
		})
	}
	c := aiClient(t, &fakeGenerate{doc: `{"success":true,"output":"line 1\nline 2 \"é\" \u2028 <b>&</b>"}`})
	res, err := c.AI.Generate(context.Background(), genReq)
	if err != nil || res.Output != "line 1\nline 2 \"é\" \u2028 <b>&</b>" {
		t.Fatalf("got %+v, %v", res, err)
	}
}

// A document the worker wrote saying the run failed is its word: a
// *GenerateError. Any other 2xx that cannot be used is an outcome unknown:
// the worker sent its 200 and heartbeat before the model started, so the
// model ran; it is sent once, and the fallback does not answer it.
func TestGenerateFailedDocuments(t *testing.T) {
	for _, tc := range []struct {
		name, doc, contentType string
		want                   []error
		unknown                bool
		message                string
	}{
		{name: "success false", doc: `{"success":false,"error":"Claude exited with code 1"}`,
			want: []error{ErrGenerationFailed}, message: "generation failed: Claude exited with code 1"},
		{name: "output buffer", doc: `{"success":false,"error":"Output buffer exceeded"}`,
			want: []error{ErrGenerationFailed, ErrPayloadTooLarge}, message: "Output buffer exceeded"},
		{name: "no message", doc: `{"success":false}`,
			want: []error{ErrGenerationFailed}, message: "without a message"},
		{name: "html", doc: "<html><body>Bad gateway</body></html>", contentType: "text/html",
			want: []error{ErrInvalidResponse}, unknown: true, message: "got a page of text/html"},
		{name: "no flag", doc: `{"output":"x"}`,
			want: []error{ErrInvalidResponse}, unknown: true, message: `no "success" flag`},
		{name: "not json", doc: `success`,
			want: []error{ErrInvalidResponse}, unknown: true, message: "decoding JSON"},
		{name: "a JSON string", doc: `"success"`,
			want: []error{ErrInvalidResponse}, unknown: true, message: "decoding JSON"},
		{name: "truncated", doc: `{"success":true,"output":"x"`,
			want: []error{ErrInvalidResponse, io.ErrUnexpectedEOF}, unknown: true, message: "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			sent, asked := 0, 0
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				sent++
				mu.Unlock()
				w.Header().Set("Content-Type", cmpOr(tc.contentType, "application/json; charset=utf-8"))
				io.WriteString(w, " "+tc.doc)
			})
			c := aiClient(t, h, WithGenerate(GenerateConfig{Fallback: func(context.Context, GenerateRequest) (string, error) {
				mu.Lock()
				defer mu.Unlock()
				asked++
				return "from the fallback", nil
			}}))
			res, err := c.AI.Generate(context.Background(), genReq, WithCorrelationID("corr-2"))
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Errorf("%v does not match %v", err, want)
				}
			}
			if err == nil || !strings.Contains(err.Error(), tc.message) || res != nil {
				t.Errorf("got %+v, %v", res, err)
			}
			var ou *OutcomeUnknownError
			if errors.As(err, &ou) != tc.unknown {
				t.Errorf("outcome unknown = %v, want %v: %v", !tc.unknown, tc.unknown, err)
			}
			if tc.unknown && (ou.Attempts != 1 || ou.CorrelationID != "corr-2" || ou.Path != "/base/generate") {
				t.Errorf("got %#v", ou)
			}
			mu.Lock()
			defer mu.Unlock()
			if sent != 1 || asked != 0 {
				t.Errorf("sent %d times, the fallback asked %d times", sent, asked)
			}
		})
	}
	var ge *GenerateError
	c := aiClient(t, &fakeGenerate{doc: `{"success":false,"error":"Claude exited with code 1"}`})
	_, err := c.AI.Generate(context.Background(), genReq, WithCorrelationID("corr-1"))
	if !errors.As(err, &ge) || ge.Message != "Claude exited with code 1" || ge.CorrelationID != "corr-1" {
		t.Errorf("got %#v", err)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// An output at the worker's 10 MiB cap is read, even escaped; a stream past
// the client's own cap is cut and refused, as an outcome unknown (the model
// ran).
func TestGenerateAnswerCap(t *testing.T) {
	text := strings.Repeat("a\n", MaxGenerateOutput/2) // 10 MiB of text, 15 MiB escaped
	c := aiClient(t, &fakeGenerate{chunks: []string{`{"success":true,"output":"`, strings.ReplaceAll(text, "\n", `\n`), `"}`}})
	res, err := c.AI.Generate(context.Background(), genReq)
	if err != nil || res.Output != text {
		t.Fatalf("a 10 MiB output: %v", err)
	}
	c = aiClient(t, &fakeGenerate{chunks: []string{`{"success":true,"output":"`, strings.Repeat("x", maxGenerateAnswer), `"}`}})
	_, err = c.AI.Generate(context.Background(), genReq)
	if !errors.Is(err, ErrPayloadTooLarge) || !errors.Is(err, ErrInvalidResponse) || !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("an answer over the cap: %v", err)
	}
}

// Whatever may have reached the worker is sent once: a connection reset
// after the heartbeat or mid-document, a stream that ends without its
// document, a 5xx, the caller giving up mid-run. An Idempotency-Key does not
// change that: the worker keeps no replay cache for /generate.
func TestGenerateAmbiguousFailuresAreNotResent(t *testing.T) {
	for _, tc := range []struct {
		name string
		fake *fakeGenerate
	}{
		{"reset after heartbeat", &fakeGenerate{chunks: []string{}, resetAfter: true}},
		{"reset mid-document", &fakeGenerate{chunks: []string{`{"success":true,"out`}, resetAfter: true}},
		{"ends without document", &fakeGenerate{chunks: []string{"  "}}},
		{"ends mid-document", &fakeGenerate{chunks: []string{`{"success":true,"output":"Add`}}},
		{"500", &fakeGenerate{status: 500, body: `{"error":"Internal Server Error"}`}},
		{"502", &fakeGenerate{status: 502, body: "<html>Bad Gateway</html>"}},
		{"503", &fakeGenerate{status: 503}},
		{"504", &fakeGenerate{status: 504}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := aiClient(t, tc.fake)
			var resp Response
			_, err := c.AI.Generate(context.Background(), genReq, WithIdempotencyKey("k1"), WithResponse(&resp))
			var ou *OutcomeUnknownError
			if !errors.As(err, &ou) || ou.Attempts != 1 || ou.Path != "/base/generate" {
				t.Fatalf("got %v", err)
			}
			if n := len(tc.fake.requests()); n != 1 || resp.Attempts != 1 {
				t.Errorf("sent %d times (Response says %d)", n, resp.Attempts)
			}
		})
	}
	t.Run("caller cancels", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			fake := &fakeGenerate{beat: 10 * time.Second, run: time.Hour, doc: okDoc}
			c := aiClient(t, fake)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_, err := c.AI.Generate(ctx, genReq)
			if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) || len(fake.requests()) != 1 {
				t.Fatalf("got %v after %d requests", err, len(fake.requests()))
			}
		})
	})
}

// What provably did not start is tried again: refused connections, and a
// 429 when no fallback is set.
func TestGenerateRetriesWhatDidNotStart(t *testing.T) {
	fake := &fakeGenerate{doc: okDoc}
	rt := &refused{n: 2, next: pipeTransport{fake}}
	c := newTestClient(t, rt)
	var resp Response
	res, err := c.AI.Generate(context.Background(), genReq, WithResponse(&resp))
	if err != nil || res.Output == "" || resp.Attempts != 3 || len(fake.requests()) != 1 {
		t.Fatalf("refused twice: %+v %v, attempts %d", res, err, resp.Attempts)
	}

	fake = &fakeGenerate{doc: okDoc, answers: []int{429}, body: `{"error":"Rate limit exceeded"}`}
	c = aiClient(t, fake)
	res, err = c.AI.Generate(context.Background(), genReq, WithResponse(&resp))
	if err != nil || res.Fallback || len(fake.requests()) != 2 || resp.Attempts != 2 {
		t.Fatalf("429 then 200: %+v %v, %d requests", res, err, len(fake.requests()))
	}

	// Tries end: all refused.
	rt = &refused{n: 100, next: pipeTransport{fake}}
	c = newTestClient(t, rt, WithRetry(RetryConfig{MaxAttempts: 3, MaxWait: time.Second}))
	_, err = c.AI.Generate(context.Background(), genReq)
	if !errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, ErrOutcomeUnknown) || rt.dials != 3 {
		t.Fatalf("refused every time: %v after %d dials", err, rt.dials)
	}
}

// Refusals are typed with the worker's message: 400 and 403 (an invalid
// project path, not a signature) are plain *APIErrors, 404 matches
// ErrNotFound, 401 is an *AuthError that says what to check.
func TestGenerateRefusalsTyped(t *testing.T) {
	for _, tc := range []struct {
		status  int
		body    string
		message string
		auth    bool
		is      error
	}{
		{400, `{"error":"Prompt is required"}`, "Prompt is required", false, nil},
		{400, `{"error":"userId and projectId are required"}`, "userId and projectId are required", false, nil},
		{403, `{"error":"Invalid project path"}`, "Invalid project path", false, nil},
		{404, `{"error":"Project directory not found"}`, "Project directory not found", false, ErrNotFound},
		{401, `{"error":"Invalid signature"}`, "Invalid signature; the deployed worker signs /generate over the body alone", true, ErrUnauthorized},
		{403, `{"error":"Signature validation failed","code":"INVALID_SIGNATURE"}`, "Signature validation failed", true, ErrUnauthorized},
	} {
		fake := &fakeGenerate{status: tc.status, body: tc.body, header: http.Header{"Content-Type": {"application/json"}}}
		c := aiClient(t, fake)
		_, err := c.AI.Generate(context.Background(), genReq)
		var ae *APIError
		var auth *AuthError
		if !errors.As(err, &ae) || ae.StatusCode != tc.status || !strings.HasPrefix(ae.Message, tc.message) {
			t.Errorf("%d %s: got %v", tc.status, tc.body, err)
			continue
		}
		if errors.As(err, &auth) != tc.auth || tc.is != nil && !errors.Is(err, tc.is) || errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("%d %s: typed as %T (%v)", tc.status, tc.body, err, err)
		}
		if len(fake.requests()) != 1 {
			t.Errorf("%d: sent %d times", tc.status, len(fake.requests()))
		}
	}
	// Under the deployed worker's schemes a 401 points at the generation
	// secret instead.
	c := aiClient(t, &fakeGenerate{status: 401, body: `{"error":"Invalid signature"}`}, WithSigning(SigningDual))
	_, err := c.AI.Generate(context.Background(), genReq)
	if err == nil || !strings.Contains(err.Error(), "generation secret from WithSecret") || strings.Contains(err.Error(), testSecret) {
		t.Errorf("got %v", err)
	}
}
