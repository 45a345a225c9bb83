package sheenhttp_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheenhttp"
	"github.com/sheenapps/sheen-go/sheentest"
)

// The proxy as a browser meets it: a front server with the proxy at its
// root under the /api/worker prefix, the fake worker behind it, and a toy
// session cookie naming the user.

const (
	pxAlice = "a11ce000-0000-4000-8000-000000000001"
	pxBob   = "b0b00000-0000-4000-8000-000000000002"
)

var pxSessions = map[string]string{"sess-alice": pxAlice, "sess-bob": pxBob}

type pxRig struct {
	t      *testing.T
	srv    *sheentest.Server
	client *sheen.WorkerClient
	front  *httptest.Server

	mu    sync.Mutex
	owned map[string]string // kind:id -> owner
}

type pxOptions struct {
	scheme    sheen.Signing
	hook      bool // set AuthorizeResource
	worker    []sheentest.Option
	client    []sheen.Option
	configure func(*sheenhttp.ProxyConfig)
}

func newPxRig(t *testing.T, o pxOptions) *pxRig {
	t.Helper()
	rg := &pxRig{t: t, owned: map[string]string{}}
	rg.srv = sheentest.NewServer(append([]sheentest.Option{
		sheentest.WithTest(t), sheentest.WithSigning(o.scheme), sheentest.WithRateLimit(60_000),
		sheentest.WithUser(pxAlice, 10*time.Hour), sheentest.WithUser(pxBob, 10*time.Hour),
	}, o.worker...)...)
	c, err := rg.srv.Client(append([]sheen.Option{sheen.WithRateLimit(60_000)}, o.client...)...)
	if err != nil {
		t.Fatal(err)
	}
	rg.client = c
	cfg := sheenhttp.ProxyConfig{Prefix: "/api/worker", Authorize: pxAuthorize}
	if o.hook {
		cfg.AuthorizeResource = rg.owns
	}
	if o.configure != nil {
		o.configure(&cfg)
	}
	h, err := sheenhttp.NewProxy(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rg.front = httptest.NewServer(h)
	t.Cleanup(rg.front.Close)
	return rg
}

func pxAuthorize(r *http.Request) (string, error) {
	c, err := r.Cookie("session")
	if err != nil {
		return "", err
	}
	if u := pxSessions[c.Value]; u != "" {
		return u, nil
	}
	return "", errors.New("unknown session")
}

func (rg *pxRig) own(kind sheenhttp.ResourceKind, id, user string) {
	rg.mu.Lock()
	defer rg.mu.Unlock()
	rg.owned[string(kind)+":"+id] = user
}

func (rg *pxRig) owns(_ *http.Request, user string, kind sheenhttp.ResourceKind, id string) error {
	rg.mu.Lock()
	defer rg.mu.Unlock()
	switch owner, ok := rg.owned[string(kind)+":"+id]; {
	case !ok:
		return sheen.ErrNotFound
	case owner != user:
		return errors.New("not yours")
	}
	return nil
}

type pxCall struct {
	method  string
	path    string // raw request target path, sent as is
	query   string // raw query
	body    string
	header  http.Header
	session string // "" for none
}

type pxAnswer struct {
	status int
	header http.Header
	body   []byte
	code   string // the JSON body's "code", if any
}

func (rg *pxRig) do(c pxCall) pxAnswer {
	rg.t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(c.method, rg.front.URL, body)
	if err != nil {
		rg.t.Fatal(err)
	}
	req.URL.Opaque = c.path // the path goes on the wire exactly as written
	req.URL.RawQuery = c.query
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	if c.body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.session != "" {
		req.AddCookie(&http.Cookie{Name: "session", Value: c.session})
	}
	resp, err := rg.front.Client().Do(req)
	if err != nil {
		rg.t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		rg.t.Fatal(err)
	}
	a := pxAnswer{status: resp.StatusCode, header: resp.Header, body: b}
	var env struct {
		Code string `json:"code"`
	}
	if json.Unmarshal(b, &env) == nil {
		a.code = env.Code
	}
	return a
}

const pxBalance = "/api/worker/v1/billing/balance/" + pxAlice

// A body over 1 MiB sent without a Content-Length (chunked) is cut off at
// the cap and refused the same way.
func TestProxyRefusesChunkedOversizedBody(t *testing.T) {
	rg := newPxRig(t, pxOptions{})
	pr, pw := io.Pipe()
	go func() {
		chunk := bytes.Repeat([]byte("a"), 64<<10)
		pw.Write([]byte(`{"prompt":"`))
		for range 20 {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Write([]byte(`"}`))
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", rg.front.URL+"/api/worker/v1/create-preview-for-new-project", pr)
	req.Header.Set("Content-Type", "application/json")
	req.AddCookie(&http.Cookie{Name: "session", Value: "sess-alice"})
	resp, err := rg.front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	pr.CloseWithError(errors.New("test over"))
	var got map[string]any
	_ = json.Unmarshal(body, &got)
	want := map[string]any{"statusCode": 413.0, "code": "FST_ERR_CTP_BODY_TOO_LARGE", "error": "Payload Too Large", "message": "Request body is too large"}
	if resp.StatusCode != 413 || !cmp.Equal(got, want) {
		t.Errorf("got %d %s", resp.StatusCode, body)
	}
	if n := len(rg.srv.Requests()); n != 0 {
		t.Errorf("the worker received %d request(s)", n)
	}
}

func TestProxyConfigErrors(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t))
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  sheenhttp.ProxyConfig
		want string
	}{
		{"no Authorize", sheenhttp.ProxyConfig{}, "Authorize is required"},
		{"relative prefix", sheenhttp.ProxyConfig{Authorize: pxAuthorize, Prefix: "api"}, "Prefix"},
		{"prefix with dots", sheenhttp.ProxyConfig{Authorize: pxAuthorize, Prefix: "/api/../x"}, "Prefix"},
		{"route outside /v1", sheenhttp.ProxyConfig{Authorize: pxAuthorize, Routes: []sheenhttp.ProxyRoute{{Pattern: "GET /admin/{userId}"}}}, "/v1/"},
		{"route without method", sheenhttp.ProxyConfig{Authorize: pxAuthorize, Routes: []sheenhttp.ProxyRoute{{Pattern: "/v1/x"}}}, "METHOD"},
		{"GET with a body", sheenhttp.ProxyConfig{Authorize: pxAuthorize, Routes: []sheenhttp.ProxyRoute{{Pattern: "GET /v1/x", Body: true}}}, "no body"},
		{"BodyIDs naming the user", sheenhttp.ProxyConfig{Authorize: pxAuthorize, Routes: []sheenhttp.ProxyRoute{{Pattern: "POST /v1/x", Body: true, BodyIDs: map[string]sheenhttp.ResourceKind{"user_id": "user"}}}}, "user id"},
		{"partial wildcard", sheenhttp.ProxyConfig{Authorize: pxAuthorize, Routes: []sheenhttp.ProxyRoute{{Pattern: "GET /v1/x-{id}"}}}, "literal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sheenhttp.NewProxy(c, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := sheenhttp.NewProxy(nil, sheenhttp.ProxyConfig{Authorize: pxAuthorize}); err == nil {
		t.Error("nil client accepted")
	}
}

// Every allowed route works through the proxy under each signing scheme:
// the user id is filled in where the browser left it out, every request
// reaches the worker signed well enough for it to answer 200.
func TestProxyHappyPaths(t *testing.T) {
	for _, scheme := range []sheen.Signing{sheen.SigningBodyPath, sheen.SigningTimestamp, sheen.SigningDual} {
		t.Run(scheme.String(), func(t *testing.T) {
			rg := newPxRig(t, pxOptions{scheme: scheme, hook: true})
			const sess = "sess-alice"
			ok := func(c pxCall) map[string]any {
				t.Helper()
				c.session = sess
				a := rg.do(c)
				if a.status != 200 {
					t.Fatalf("%s %s: %d %s", c.method, c.path, a.status, a.body)
				}
				var m map[string]any
				_ = json.Unmarshal(a.body, &m) // nil for the batch route's array
				return m
			}
			ok(pxCall{method: "GET", path: pxBalance})
			ok(pxCall{method: "GET", path: "/api/worker/v1/billing/legacy-balance/" + pxAlice})
			if m := ok(pxCall{method: "POST", path: "/api/worker/v1/billing/check-sufficient", body: `{"operationType":"main_build","projectSize":"small","isUpdate":false}`}); m["sufficient"] != true {
				t.Errorf("check-sufficient: %v", m)
			}
			ok(pxCall{method: "POST", path: "/api/worker/v1/billing/check-sufficient-batch", body: `{"userId":"` + pxAlice + `","operations":[{"operation":"build","estimate_seconds":60}]}`})
			ok(pxCall{method: "GET", path: "/api/worker/v1/billing/usage/" + pxAlice, query: "period=day"})
			ok(pxCall{method: "GET", path: "/api/worker/v1/billing/events/" + pxAlice, query: "limit=10"})

			b := ok(pxCall{method: "POST", path: "/api/worker/v1/create-preview-for-new-project", body: `{"prompt":"A bakery <site> & more","framework":"react"}`})
			buildID, projectID := b["buildId"].(string), b["projectId"].(string)
			rg.own(sheenhttp.ResourceProject, projectID, pxAlice)
			rg.own(sheenhttp.ResourceBuild, buildID, pxAlice)
			versionID := rg.srv.LatestVersion(projectID)
			rg.own(sheenhttp.ResourceVersion, versionID, pxAlice)

			if m := ok(pxCall{method: "GET", path: "/api/worker/v1/builds/" + buildID + "/status"}); m["finished"] != true {
				t.Errorf("status: %v", m)
			}
			if m := ok(pxCall{method: "GET", path: "/api/worker/v1/builds/" + buildID + "/events", query: "lastEventId=0&userId=" + pxAlice}); len(m["events"].([]any)) == 0 {
				t.Errorf("events: %v", m)
			}
			if m := ok(pxCall{method: "GET", path: "/api/worker/v1/projects/" + projectID + "/versions", query: "limit=5"}); len(m["versions"].([]any)) != 1 {
				t.Errorf("versions: %v", m)
			}
			if m := ok(pxCall{method: "GET", path: "/api/worker/v1/projects/" + projectID + "/export"}); m["downloadUrl"] == "" {
				t.Errorf("export: %v", m)
			}
			ok(pxCall{method: "GET", path: "/api/worker/v1/versions/" + versionID + "/download"})
			ok(pxCall{method: "POST", path: "/api/worker/v1/update-project", body: `{"projectId":"` + projectID + `","prompt":"Add a menu"}`})
			ok(pxCall{method: "POST", path: "/api/worker/v1/versions/rollback", body: `{"projectId":"` + projectID + `","targetVersionId":"` + versionID + `"}`,
				header: http.Header{"Idempotency-Key": {"rollback-1"}}})
			ok(pxCall{method: "POST", path: "/api/worker/v1/versions/" + versionID + "/rebuild"})

			for _, rt := range sheenhttp.DefaultProxyRoutes() {
				if n := rg.srv.Calls(rt.Pattern); n != 1 {
					t.Errorf("%s: %d call(s) reached the worker, want 1", rt.Pattern, n)
				}
			}
			for _, r := range rg.srv.Requests() {
				if r.Status != 200 {
					t.Errorf("worker answered %s %s with %d", r.Method, r.Path, r.Status)
				}
				if strings.HasPrefix(r.Route, "GET /v1/builds/") || strings.HasSuffix(r.Route, "/export") || strings.HasSuffix(r.Route, "/download") {
					if q, _ := url.ParseQuery(r.Path[strings.Index(r.Path, "?")+1:]); !cmp.Equal(q["userId"], []string{pxAlice}) {
						t.Errorf("%s: userId %v, want exactly the signed-in user", r.Path, q["userId"])
					}
				}
			}
		})
	}
}

// The proxy can be mounted under a ServeMux with Prefix, or behind
// http.StripPrefix with no Prefix.
func TestProxyMounting(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithSigning(sheen.SigningDual))
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	withPrefix, err := sheenhttp.NewProxy(c, sheenhttp.ProxyConfig{Authorize: pxAuthorize, Prefix: "/api/worker/"})
	if err != nil {
		t.Fatal(err)
	}
	bare, err := sheenhttp.NewProxy(c, sheenhttp.ProxyConfig{Authorize: pxAuthorize})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/worker/", withPrefix)
	mux.Handle("/stripped/", http.StripPrefix("/stripped", bare))
	front := httptest.NewServer(mux)
	defer front.Close()
	for _, p := range []string{"/api/worker/v1/billing/balance/", "/stripped/v1/billing/balance/"} {
		req, _ := http.NewRequest("GET", front.URL+p+pxAlice, nil)
		req.AddCookie(&http.Cookie{Name: "session", Value: "sess-alice"})
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
	if n := srv.Calls("GET /v1/billing/balance/{userId}"); n != 2 {
		t.Errorf("worker saw %d balance calls, want 2", n)
	}
}

// The body the worker gets is the browser's, re-encoded the way
// JSON.stringify writes it: compact, "<>&" literal, numbers as JavaScript
// prints them, the user filled in first when absent.
func TestProxyReencodesBodies(t *testing.T) {
	var got atomic.Value
	worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(string(b))
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"sufficient":true}`)
	}))
	defer worker.Close()
	c, err := sheen.NewWorkerClient(sheen.WithBaseURL(worker.URL), sheen.WithSecret(pxSecret))
	if err != nil {
		t.Fatal(err)
	}
	h, err := sheenhttp.NewProxy(c, sheenhttp.ProxyConfig{Authorize: pxAuthorize})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, want string }{
		{`{}`, `{"userId":"` + pxAlice + `"}`},
		{``, `{"userId":"` + pxAlice + `"}`},
		{" {\n \"operationType\" : \"main_build\" ,\"isUpdate\":false} \n", `{"userId":"` + pxAlice + `","operationType":"main_build","isUpdate":false}`},
		{`{"a":1.50,"b":1e3,"c":-0,"d":1E21,"e":0.0000001,"f":12345678901234567890,"g":null,"h":[true,{"x":"\u003c\u0041>&"}]}`,
			`{"userId":"` + pxAlice + `","a":1.5,"b":1000,"c":0,"d":1e+21,"e":1e-7,"f":12345678901234567000,"g":null,"h":[true,{"x":"<A>&"}]}`},
		{`{"operationType":"x","userId":"` + pxAlice + `"}`, `{"operationType":"x","userId":"` + pxAlice + `"}`},
	}
	for _, tc := range tests {
		req := httptest.NewRequest("POST", "/v1/billing/check-sufficient", strings.NewReader(tc.in))
		req.Header.Set("Content-Type", "application/json")
		req.AddCookie(&http.Cookie{Name: "session", Value: "sess-alice"})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Errorf("%q: %d %s", tc.in, rec.Code, rec.Body)
			continue
		}
		if g := got.Load().(string); g != tc.want {
			t.Errorf("%q:\n got %s\nwant %s", tc.in, g, tc.want)
		}
	}
}
