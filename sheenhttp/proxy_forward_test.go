package sheenhttp_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheenhttp"
	"github.com/sheenapps/sheen-go/sheentest"
)

// The proxy's request to the worker and the answer the browser gets.

// Signature, cookie, authorization, hop-by-hop and unknown x-sheen-*
// headers from the browser never reach the worker, and the request is
// still signed correctly: the worker verifies it and answers 200.
func TestProxyDropsSmuggledHeaders(t *testing.T) {
	for _, scheme := range []sheen.Signing{sheen.SigningBodyPath, sheen.SigningTimestamp, sheen.SigningDual} {
		t.Run(scheme.String(), func(t *testing.T) {
			rg := newPxRig(t, pxOptions{scheme: scheme})
			smuggled := http.Header{
				"X-Sheen-Signature":   {strings.Repeat("ab", 32)},
				"X-Sheen-Sig-V2":      {strings.Repeat("cd", 32)},
				"X-Sheen-Timestamp":   {"1700000000"},
				"X-Sheen-Nonce":       {"00000000000000000000000000000000"},
				"X-Sheen-Admin":       {"true"},
				"Authorization":       {"Bearer browser-token"},
				"Proxy-Authorization": {"Basic eDp5"},
				"Connection":          {"X-Hop"},
				"X-Hop":               {"named in Connection"},
				"Keep-Alive":          {"timeout=5"},
				"Te":                  {"trailers"},
				"Trailer":             {"X-Late"},
				"Upgrade":             {"websocket"},
				"Forwarded":           {"for=10.0.0.1"},
				"X-Forwarded-For":     {"10.0.0.1"},
				"X-Correlation-Id":    {"not-a-uuid"},
			}
			for _, c := range []pxCall{
				{method: "GET", path: pxBalance, header: smuggled, session: "sess-alice"},
				{method: "POST", path: "/api/worker/v1/billing/check-sufficient", body: `{"operationType":"main_build","projectSize":"small","isUpdate":false}`, header: smuggled, session: "sess-alice"},
			} {
				if a := rg.do(c); a.status != 200 {
					t.Fatalf("%s %s: %d %s", c.method, c.path, a.status, a.body)
				}
			}
			reqs := rg.srv.Requests()
			if len(reqs) != 2 {
				t.Fatalf("worker saw %d requests, want 2", len(reqs))
			}
			for _, r := range reqs {
				if r.Status != 200 {
					t.Errorf("%s %s: worker answered %d", r.Method, r.Path, r.Status)
				}
				for _, k := range []string{"X-Sheen-Admin", "Authorization", "Proxy-Authorization", "Cookie", "X-Hop", "Keep-Alive", "Te", "Trailer", "Upgrade", "Forwarded", "X-Forwarded-For"} {
					if v, ok := r.Header[k]; ok {
						t.Errorf("%s reached the worker: %q", k, v)
					}
				}
				if c := r.Header.Get("Connection"); c != "" && !strings.EqualFold(c, "close") && !strings.EqualFold(c, "keep-alive") {
					t.Errorf("Connection %q reached the worker", c)
				}
				ts := r.Header.Get(sheen.HeaderTimestamp)
				if scheme == sheen.SigningBodyPath && ts != "" || scheme != sheen.SigningBodyPath && (ts == "" || ts == "1700000000") {
					t.Errorf("timestamp at the worker %q: not the signer's", ts)
				}
				if _, err := uuid.Parse(r.Header.Get("X-Correlation-Id")); err != nil {
					t.Errorf("correlation id %q is not the proxy's", r.Header.Get("X-Correlation-Id"))
				}
			}
		})
	}
}

// What comes back: status, JSON content type, correlation id and
// rate-limit headers pass; anything else the worker (or a CDN) sends does
// not, and a page that is not JSON is served as plain text. After the
// worker's 429 the proxy answers 429 itself until the pause is over.
func TestProxyResponseHeaders(t *testing.T) {
	rg := newPxRig(t, pxOptions{scheme: sheen.SigningDual})
	rg.srv.AddFault(sheentest.Fault{Route: "GET /v1/billing/balance/{userId}", Calls: []int{1}, Status: 502,
		Body: `<html><script>alert(1)</script></html>`, Header: http.Header{"Content-Type": {"text/html"}}})
	rg.srv.AddFault(sheentest.Fault{Route: "GET /v1/billing/balance/{userId}", Calls: []int{2}, Status: 429,
		Body: `{"error":"Rate limit exceeded","retryAfter":30}`,
		Header: http.Header{
			"Content-Type": {"application/json; charset=utf-8"}, "Retry-After": {"30"},
			"X-Ratelimit-Limit": {"600"}, "X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"30"}, "Ratelimit-Policy": {"600;w=60"},
			"Set-Cookie": {"worker_session=secret; Path=/"}, "Server": {"worker/1.2"}, "X-Powered-By": {"Fastify"},
			"Access-Control-Allow-Origin": {"*"}, "Location": {"https://elsewhere.example/"},
		}})

	a := rg.do(pxCall{method: "GET", path: pxBalance, session: "sess-alice"})
	if a.status != 502 || a.header.Get("Content-Type") != "text/plain; charset=utf-8" || a.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("HTML from the worker: %d, Content-Type %q", a.status, a.header.Get("Content-Type"))
	}

	a = rg.do(pxCall{method: "GET", path: pxBalance, session: "sess-alice", header: http.Header{"X-Correlation-Id": {"1b4e28ba-2fa1-41d2-883f-0e1f2c3d4e5f"}}})
	want := map[string]string{
		"Content-Type": "application/json; charset=utf-8", "Retry-After": "30", "X-Ratelimit-Limit": "600",
		"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "30", "Ratelimit-Policy": "600;w=60",
		"X-Correlation-Id": "1b4e28ba-2fa1-41d2-883f-0e1f2c3d4e5f", "Cache-Control": "no-store",
	}
	if a.status != 429 || a.code != "" || !strings.Contains(string(a.body), "retryAfter") {
		t.Errorf("got %d %s", a.status, a.body)
	}
	for k, v := range want {
		if got := a.header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"Set-Cookie", "Server", "X-Powered-By", "Access-Control-Allow-Origin", "Location"} {
		if v, ok := a.header[k]; ok {
			t.Errorf("%s leaked to the browser: %q", k, v)
		}
	}

	a = rg.do(pxCall{method: "GET", path: pxBalance, session: "sess-alice"})
	if ra, _ := strconv.Atoi(a.header.Get("Retry-After")); a.status != 429 || a.code != "client_rate_limited" || ra < 1 || ra > 30 {
		t.Errorf("during the pause: %d %s, Retry-After %q", a.status, a.body, a.header.Get("Retry-After"))
	}
	if n := len(rg.srv.Requests()); n != 2 {
		t.Errorf("worker saw %d requests, want 2", n)
	}
}

// An answer without a Content-Type (from the worker, or something in front
// of it) reaches the browser as plain text, never with the type net/http
// would sniff from the body (text/html for an HTML error page).
func TestProxyServesUntypedAnswersAsPlainText(t *testing.T) {
	worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil // no Content-Type, and no sniffing on the worker's side
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, "<html><script>alert(document.cookie)</script></html>")
	}))
	defer worker.Close()
	front := httptest.NewServer(pxDefaultProxy(t, worker.URL))
	defer front.Close()
	req, _ := http.NewRequest("GET", front.URL+"/v1/billing/balance/"+pxAlice, nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: "sess-alice"})
	resp, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusBadGateway || ct != "text/plain; charset=utf-8" ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("got %d, Content-Type %q, X-Content-Type-Options %q; want 502 as nosniff plain text",
			resp.StatusCode, ct, resp.Header.Get("X-Content-Type-Options"))
	}
	if !strings.Contains(string(body), "<script>") {
		t.Errorf("body %q, want the worker's, byte for byte", body)
	}
}

// Requests pass through the client's rate limiter: once its quota is used
// up and the wait is longer than the client allows, the proxy answers 429
// itself and the worker sees nothing more.
func TestProxyUsesTheClientsRateLimiter(t *testing.T) {
	rg := newPxRig(t, pxOptions{client: []sheen.Option{sheen.WithRateLimit(1), sheen.WithRetry(sheen.RetryConfig{MaxAttempts: 1, MaxWait: 50 * time.Millisecond})}})
	var last pxAnswer
	for range 10 {
		last = rg.do(pxCall{method: "GET", path: pxBalance, session: "sess-alice"})
		if last.status != 200 {
			break
		}
	}
	if last.status != 429 || last.code != "client_rate_limited" || last.header.Get("Retry-After") == "" {
		t.Fatalf("got %d %q Retry-After %q", last.status, last.body, last.header.Get("Retry-After"))
	}
	sent := len(rg.srv.Requests())
	if sent == 0 || sent >= 10 {
		t.Errorf("worker saw %d requests", sent)
	}
	if a := rg.do(pxCall{method: "GET", path: pxBalance, session: "sess-alice"}); a.status != 429 || len(rg.srv.Requests()) != sent {
		t.Errorf("next request: %d, worker saw %d", a.status, len(rg.srv.Requests()))
	}
}

// A browser's Idempotency-Key is scoped to the signed-in user: the same key
// from the same user is the same key at the worker, from another user a
// different one.
func TestProxyScopesIdempotencyKeys(t *testing.T) {
	rg := newPxRig(t, pxOptions{})
	body := `{"operationType":"main_build","projectSize":"small","isUpdate":false}`
	for _, sess := range []string{"sess-alice", "sess-alice", "sess-bob"} {
		if a := rg.do(pxCall{method: "POST", path: "/api/worker/v1/billing/check-sufficient", body: body, session: sess, header: http.Header{"Idempotency-Key": {"key-1"}}}); a.status != 200 {
			t.Fatalf("%d %s", a.status, a.body)
		}
	}
	var keys []string
	for _, r := range rg.srv.Requests() {
		keys = append(keys, r.Header.Get("Idempotency-Key"))
	}
	if keys[0] == "key-1" || keys[0] == "" || keys[0] != keys[1] || keys[2] == keys[0] {
		t.Errorf("keys at the worker: %q", keys)
	}
}

const pxSecret = "proxy-test-secret-0123456789abcdef0123"

// A 256 MiB answer from the worker streams through the proxy: the bytes
// arrive whole and in order while the process allocates a small fraction
// of them and its heap stays flat.
func TestProxyStreamsLargeResponses(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 256 MiB")
	}
	const total = 256 << 20
	const period = 251
	chunk := make([]byte, period*256)
	for i := range chunk {
		chunk[i] = byte(i % period)
	}
	verifier := &sheenhttp.Verifier{Secret: pxSecret}
	worker := httptest.NewServer(verifier.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for left := total; left > 0; {
			n := min(left, len(chunk))
			if _, err := w.Write(chunk[:n]); err != nil {
				return
			}
			left -= n
		}
	})))
	defer worker.Close()
	c, err := sheen.NewWorkerClient(sheen.WithBaseURL(worker.URL), sheen.WithSecret(pxSecret))
	if err != nil {
		t.Fatal(err)
	}
	h, err := sheenhttp.NewProxy(c, sheenhttp.ProxyConfig{Authorize: pxAuthorize, Prefix: "/api/worker"})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(h)
	defer front.Close()

	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	req, _ := http.NewRequest("GET", front.URL+"/api/worker/v1/billing/events/"+pxAlice, nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: "sess-alice"})
	resp, err := front.Client().Do(req)
	if err != nil {
		close(stop)
		<-sampled
		t.Fatal(err)
	}
	check := &patternWriter{period: period}
	n, err := io.Copy(check, resp.Body)
	resp.Body.Close()
	close(stop)
	<-sampled
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if err != nil || resp.StatusCode != 200 || n != total || check.bad >= 0 {
		t.Fatalf("status %d, %d bytes, err %v, first wrong byte at %d", resp.StatusCode, n, err, check.bad)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	grown := int64(peak.Load()) - int64(before.HeapAlloc)
	t.Logf("streamed %d MiB: %.1f MiB allocated in all, heap peak %.1f MiB above the start", total>>20, float64(allocated)/(1<<20), float64(grown)/(1<<20))
	if allocated > 32<<20 {
		t.Errorf("allocated %d MiB to stream %d MiB: the body is being buffered", allocated>>20, total>>20)
	}
	if grown > 32<<20 {
		t.Errorf("heap grew by %d MiB while streaming", grown>>20)
	}
}

// patternWriter checks that byte i is i mod period.
type patternWriter struct {
	period int
	off    int
	bad    int
}

func (p *patternWriter) Write(b []byte) (int, error) {
	if p.off == 0 && p.bad == 0 {
		p.bad = -1
	}
	for i, c := range b {
		if p.bad < 0 && int(c) != (p.off+i)%p.period {
			p.bad = p.off + i
		}
	}
	p.off += len(b)
	return len(b), nil
}

// A worker that cannot be reached is a 502 with the proxy's JSON.
func TestProxyWorkerUnreachable(t *testing.T) {
	worker := httptest.NewServer(http.NotFoundHandler())
	base := worker.URL
	worker.Close()
	rec := aliceBalanceVia(t, base)
	if rec.Code != 502 || !strings.Contains(rec.Body.String(), `"code":"WORKER_UNAVAILABLE"`) || strings.Contains(rec.Body.String(), base) {
		t.Errorf("got %d %s", rec.Code, rec.Body)
	}
}

// The worker refusing the proxy's own signature is the server's
// misconfiguration: the browser gets a 502 (not a 401 that would send its
// user to sign in again), and other refusals pass through as they are.
func TestProxyWorkerRefusesItsSignature(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   int
		code   string
	}{
		{"bad signature", 403, `{"error":"Signature validation failed","code":"INVALID_SIGNATURE"}`, 502, "PROXY_SIGNATURE_REJECTED"},
		{"missing signature", 401, `{"error":"Missing signature","code":"MISSING_SIGNATURE"}`, 502, "PROXY_SIGNATURE_REJECTED"},
		{"clock", 408, `{"error":"skew","code":"TIMESTAMP_OUT_OF_RANGE"}`, 502, "PROXY_SIGNATURE_REJECTED"},
		{"a real conflict passes", 409, `{"success":false,"error":"rollback_in_progress","message":"busy"}`, 409, "rollback_in_progress"},
		{"a real forbidden passes", 403, `{"success":false,"error":"forbidden","message":"no"}`, 403, "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer worker.Close()
			rec := aliceBalanceVia(t, worker.URL)
			if rec.Code != tc.want || !strings.Contains(rec.Body.String(), tc.code) {
				t.Errorf("got %d %s, want %d with %s", rec.Code, rec.Body, tc.want, tc.code)
			}
		})
	}
}

// aliceBalanceVia asks a default proxy in front of the worker at base for
// Alice's balance, signed in as Alice.
func aliceBalanceVia(t *testing.T, base string) *httptest.ResponseRecorder {
	t.Helper()
	c, err := sheen.NewWorkerClient(sheen.WithBaseURL(base), sheen.WithSecret(pxSecret))
	if err != nil {
		t.Fatal(err)
	}
	h, err := sheenhttp.NewProxy(c, sheenhttp.ProxyConfig{Authorize: pxAuthorize})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/v1/billing/balance/"+pxAlice, nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: "sess-alice"})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// An answer that arrives over time (chunks without a length, or an event
// stream) reaches the browser piece by piece: the browser reads the first
// piece while the worker still holds the rest back. An answer of known
// length arrives with that length.
func TestProxyForwardsPiecesAsTheyCome(t *testing.T) {
	for _, ct := range []string{"application/json", "text/event-stream"} {
		t.Run(ct, func(t *testing.T) {
			release := make(chan struct{})
			worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ct)
				io.WriteString(w, `{"first":true}`)
				http.NewResponseController(w).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				io.WriteString(w, `{"second":true}`)
			}))
			defer worker.Close()
			front := httptest.NewServer(pxDefaultProxy(t, worker.URL))
			defer front.Close()

			req, _ := http.NewRequest("GET", front.URL+"/v1/billing/balance/"+pxAlice, nil)
			req.AddCookie(&http.Cookie{Name: "session", Value: "sess-alice"})
			var resp *http.Response
			first := make([]byte, len(`{"first":true}`))
			got := make(chan error, 1)
			go func() {
				var err error
				if resp, err = front.Client().Do(req); err == nil {
					_, err = io.ReadFull(resp.Body, first)
				}
				got <- err
			}()
			select {
			case err := <-got:
				if err != nil || string(first) != `{"first":true}` {
					t.Fatalf("first piece %q, %v", first, err)
				}
			case <-time.After(20 * time.Second): // only so a failure does not hang the run
				close(release)
				<-got
				t.Fatal("the first piece did not reach the browser while the worker held the rest back")
			}
			defer resp.Body.Close()
			close(release)
			rest, err := io.ReadAll(resp.Body)
			if err != nil || string(rest) != `{"second":true}` || resp.ContentLength != -1 {
				t.Errorf("rest %q, %v, ContentLength %d", rest, err, resp.ContentLength)
			}
		})
	}
	t.Run("known length", func(t *testing.T) {
		body := strings.Repeat(`{"a":1}`, 20_000)
		worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			io.WriteString(w, body)
		}))
		defer worker.Close()
		front := httptest.NewServer(pxDefaultProxy(t, worker.URL))
		defer front.Close()
		resp := pxGetBalance(t, front)
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil || string(got) != body || resp.ContentLength != int64(len(body)) {
			t.Errorf("%d bytes of %d, %v, ContentLength %d", len(got), len(body), err, resp.ContentLength)
		}
	})
}

// An answer the worker breaks off is broken off for the browser too: it
// reads an error, never a shorter answer that looks whole.
func TestProxyPassesOnACutAnswer(t *testing.T) {
	for _, tc := range []struct{ name, head, body string }{
		{"with a length", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", `{"items":[1,2,3`},
		{"chunked", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", "f\r\n{\"items\":[1,2,3\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				conn, buf, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				defer conn.Close()
				buf.WriteString(tc.head + tc.body)
				buf.Flush()
			}))
			defer worker.Close()
			front := httptest.NewServer(pxDefaultProxy(t, worker.URL))
			defer front.Close()
			req, _ := http.NewRequest("GET", front.URL+"/v1/billing/balance/"+pxAlice, nil)
			req.AddCookie(&http.Cookie{Name: "session", Value: "sess-alice"})
			resp, err := front.Client().Do(req)
			if err != nil {
				return // cut before the headers were sent: an error too
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err == nil {
				t.Errorf("the browser read %d %q and no error", resp.StatusCode, got)
			}
		})
	}
}

// pxDefaultProxy is a default proxy, without a prefix, in front of the
// worker at base.
func pxDefaultProxy(t *testing.T, base string) http.Handler {
	t.Helper()
	c, err := sheen.NewWorkerClient(sheen.WithBaseURL(base), sheen.WithSecret(pxSecret), sheen.WithRetry(sheen.RetryConfig{MaxAttempts: 1, MaxWait: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	h, err := sheenhttp.NewProxy(c, sheenhttp.ProxyConfig{Authorize: pxAuthorize})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// pxGetBalance asks the front server for Alice's balance as Alice.
func pxGetBalance(t *testing.T, front *httptest.Server) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", front.URL+"/v1/billing/balance/"+pxAlice, nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: "sess-alice"})
	resp, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return resp
}
