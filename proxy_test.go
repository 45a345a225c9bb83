package sheen_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	sheen "github.com/sheenapps/sheen-go"
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
	configure func(*sheen.ProxyConfig)
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
	cfg := sheen.ProxyConfig{Prefix: "/api/worker", Authorize: pxAuthorize}
	if o.hook {
		cfg.AuthorizeResource = rg.owns
	}
	if o.configure != nil {
		o.configure(&cfg)
	}
	h, err := sheen.NewProxy(c, cfg)
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

func (rg *pxRig) own(kind sheen.ResourceKind, id, user string) {
	rg.mu.Lock()
	defer rg.mu.Unlock()
	rg.owned[string(kind)+":"+id] = user
}

func (rg *pxRig) owns(_ *http.Request, user string, kind sheen.ResourceKind, id string) error {
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

// Every attack is refused by the proxy, with the proxy's own JSON error,
// and not one request reaches the worker.
func TestProxyRefusesAttacks(t *testing.T) {
	rg := newPxRig(t, pxOptions{scheme: sheen.SigningDual, hook: true})
	rg.own(sheen.ResourceProject, "proj-bob", pxBob)
	rg.own(sheen.ResourceVersion, "ver-bob", pxBob)
	rg.own(sheen.ResourceProject, "proj-alice", pxAlice)
	big := `{"prompt":"` + strings.Repeat("x", sheen.MaxRequestBody) + `"}`
	const sess = "sess-alice"
	status := "/api/worker/v1/builds/b1/status"
	check := "/api/worker/v1/billing/check-sufficient"
	tests := []struct {
		name string
		call pxCall
		want int
		code string
	}{
		{"no session", pxCall{method: "GET", path: pxBalance}, 401, "UNAUTHORIZED"},
		{"unknown session", pxCall{method: "GET", path: pxBalance, session: "forged"}, 401, "UNAUTHORIZED"},

		{"other user in path", pxCall{method: "GET", path: "/api/worker/v1/billing/balance/" + pxBob, session: sess}, 403, "FORBIDDEN"},
		{"other user in path, escaped", pxCall{method: "GET", path: "/api/worker/v1/billing/usage/" + strings.Replace(pxBob, "b", "%62", 1), session: sess}, 403, "FORBIDDEN"},

		{"other user in query", pxCall{method: "GET", path: status, query: "userId=" + pxBob, session: sess}, 403, "FORBIDDEN"},
		{"duplicated query key", pxCall{method: "GET", path: status, query: "userId=" + pxAlice + "&userId=" + pxBob, session: sess}, 403, "FORBIDDEN"},
		{"duplicated query key, other first", pxCall{method: "GET", path: status, query: "userId=" + pxBob + "&userId=" + pxAlice, session: sess}, 403, "FORBIDDEN"},
		{"query key in capitals", pxCall{method: "GET", path: status, query: "USERID=" + pxBob, session: sess}, 403, "FORBIDDEN"},
		{"query key in another case", pxCall{method: "GET", path: status, query: "userid=" + pxAlice + "&UserId=" + pxBob, session: sess}, 403, "FORBIDDEN"},
		{"query key snake case", pxCall{method: "GET", path: status, query: "user_id=" + pxBob, session: sess}, 403, "FORBIDDEN"},
		{"query key percent-encoded", pxCall{method: "GET", path: status, query: "user%49d=" + pxBob, session: sess}, 403, "FORBIDDEN"},
		{"query key with brackets", pxCall{method: "GET", path: status, query: "userId[]=" + pxBob, session: sess}, 403, "FORBIDDEN"},
		{"query key nested for qs-style parsers", pxCall{method: "GET", path: status, query: "a[userId]=" + pxBob, session: sess}, 403, "FORBIDDEN"},
		{"user in query of a path route", pxCall{method: "GET", path: pxBalance, query: "userId=" + pxBob, session: sess}, 403, "FORBIDDEN"},
		{"query that does not parse", pxCall{method: "GET", path: status, query: "userId=" + pxAlice + ";userId=" + pxBob, session: sess}, 400, "BAD_REQUEST"},

		{"other user in body", pxCall{method: "POST", path: check, body: `{"userId":"` + pxBob + `","operationType":"main_build"}`, session: sess}, 403, "FORBIDDEN"},
		{"duplicated body key", pxCall{method: "POST", path: check, body: `{"userId":"` + pxAlice + `","operationType":"main_build","userId":"` + pxBob + `"}`, session: sess}, 403, "FORBIDDEN"},
		{"duplicated body key, same user", pxCall{method: "POST", path: check, body: `{"userId":"` + pxAlice + `","userId":"` + pxAlice + `"}`, session: sess}, 403, "FORBIDDEN"},
		{"nested body key", pxCall{method: "POST", path: "/api/worker/v1/billing/check-sufficient-batch", body: `{"operations":[{"operation":"build","estimate_seconds":60,"userId":"` + pxBob + `"}]}`, session: sess}, 403, "FORBIDDEN"},
		{"nested body key in an object", pxCall{method: "POST", path: "/api/worker/v1/create-preview-for-new-project", body: `{"prompt":"p","metadata":{"owner":{"userId":"` + pxBob + `"}}}`, session: sess}, 403, "FORBIDDEN"},
		{"body key in another case", pxCall{method: "POST", path: check, body: `{"UserId":"` + pxBob + `"}`, session: sess}, 403, "FORBIDDEN"},
		{"body key escaped", pxCall{method: "POST", path: check, body: `{"user\u0049d":"` + pxBob + `"}`, session: sess}, 403, "FORBIDDEN"},
		{"body user not a string", pxCall{method: "POST", path: check, body: `{"userId":["` + pxBob + `"]}`, session: sess}, 403, "FORBIDDEN"},
		{"other duplicated body key", pxCall{method: "POST", path: "/api/worker/v1/update-project", body: `{"projectId":"proj-alice","prompt":"p","projectId":"proj-bob"}`, session: sess}, 400, "BAD_REQUEST"},
		{"body not an object", pxCall{method: "POST", path: check, body: `[{"userId":"` + pxAlice + `"}]`, session: sess}, 400, "BAD_REQUEST"},
		{"two JSON values", pxCall{method: "POST", path: check, body: `{"operationType":"main_build"}{"userId":"` + pxBob + `"}`, session: sess}, 400, "BAD_REQUEST"},
		{"broken JSON", pxCall{method: "POST", path: check, body: `{"operationType":"main_build",}`, session: sess}, 400, "BAD_REQUEST"},
		{"form body", pxCall{method: "POST", path: check, body: "userId=" + pxAlice, header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, session: sess}, 415, "FST_ERR_CTP_INVALID_MEDIA_TYPE"},

		{"another user's project in the body", pxCall{method: "POST", path: "/api/worker/v1/update-project", body: `{"projectId":"proj-bob","prompt":"p"}`, session: sess}, 403, "FORBIDDEN"},
		{"another user's version in the body", pxCall{method: "POST", path: "/api/worker/v1/versions/rollback", body: `{"projectId":"proj-alice","targetVersionId":"ver-bob"}`, session: sess}, 403, "FORBIDDEN"},
		{"another user's version to rebuild", pxCall{method: "POST", path: "/api/worker/v1/versions/ver-bob/rebuild", session: sess}, 403, "FORBIDDEN"},
		{"another user's project's versions", pxCall{method: "GET", path: "/api/worker/v1/projects/proj-bob/versions", session: sess}, 403, "FORBIDDEN"},
		{"another user's version to download", pxCall{method: "GET", path: "/api/worker/v1/versions/ver-bob/download", session: sess}, 403, "FORBIDDEN"},
		{"unknown project", pxCall{method: "GET", path: "/api/worker/v1/projects/proj-nobody/export", session: sess}, 404, "NOT_FOUND"},

		{"dot-dot", pxCall{method: "GET", path: "/api/worker/v1/billing/balance/" + pxAlice + "/../" + pxBob, session: sess}, 400, "INVALID_PATH"},
		{"dot-dot to the prefix", pxCall{method: "GET", path: "/api/worker/../worker/v1/billing/balance/" + pxAlice, session: sess}, 400, "INVALID_PATH"},
		{"encoded dot-dot", pxCall{method: "GET", path: "/api/worker/v1/billing/balance/%2e%2e/" + pxBob, session: sess}, 400, "INVALID_PATH"},
		{"encoded dot-dot, capitals", pxCall{method: "GET", path: "/api/worker/v1/billing/balance/%2E%2E", session: sess}, 400, "INVALID_PATH"},
		{"half-encoded dot-dot", pxCall{method: "GET", path: "/api/worker/v1/billing/balance/.%2e/x", session: sess}, 400, "INVALID_PATH"},
		{"double-encoded dot-dot", pxCall{method: "GET", path: "/api/worker/v1/billing/balance/%252e%252e", session: sess}, 400, "INVALID_PATH"},
		{"dot segment", pxCall{method: "GET", path: "/api/worker/v1/billing/./balance/" + pxAlice, session: sess}, 400, "INVALID_PATH"},
		{"encoded slash", pxCall{method: "GET", path: "/api/worker/v1/versions/x%2f..%2fadmin/download", session: sess}, 400, "INVALID_PATH"},
		{"encoded slash, capitals", pxCall{method: "GET", path: "/api/worker/v1/billing/balance/" + pxAlice + "%2F..", session: sess}, 400, "INVALID_PATH"},
		{"encoded backslash", pxCall{method: "GET", path: "/api/worker/v1/versions/x%5cadmin/download", session: sess}, 400, "INVALID_PATH"},
		{"backslash", pxCall{method: "GET", path: "/api/worker/v1/versions/x\\..\\admin/download", session: sess}, 400, "INVALID_PATH"},
		{"double slash", pxCall{method: "GET", path: "/api/worker/v1/billing//balance/" + pxAlice, session: sess}, 400, "INVALID_PATH"},
		{"trailing slash", pxCall{method: "GET", path: pxBalance + "/", session: sess}, 400, "INVALID_PATH"},
		{"encoded NUL", pxCall{method: "GET", path: pxBalance + "%00", session: sess}, 400, "INVALID_PATH"},
		{"matrix parameter", pxCall{method: "GET", path: pxBalance + ";jsessionid=x", session: sess}, 400, "INVALID_PATH"},

		{"admin route", pxCall{method: "GET", path: "/api/worker/v1/admin/users", session: sess}, 404, "NOT_FOUND"},
		{"admin route by POST", pxCall{method: "POST", path: "/api/worker/v1/admin/billing/credit", body: `{"seconds":99999}`, session: sess}, 404, "NOT_FOUND"},
		{"object store", pxCall{method: "GET", path: "/api/worker/_store/abc", session: sess}, 404, "NOT_FOUND"},
		{"allowed path, wrong method", pxCall{method: "DELETE", path: pxBalance, session: sess}, 404, "NOT_FOUND"},
		{"outside the prefix", pxCall{method: "GET", path: "/v1/billing/balance/" + pxAlice, session: sess}, 404, "NOT_FOUND"},
		{"prefix look-alike", pxCall{method: "GET", path: "/api/workerz/v1/billing/balance/" + pxAlice, session: sess}, 404, "NOT_FOUND"},

		{"oversized body", pxCall{method: "POST", path: "/api/worker/v1/create-preview-for-new-project", body: big, session: sess}, 413, "FST_ERR_CTP_BODY_TOO_LARGE"},
		{"body on a route without one", pxCall{method: "POST", path: "/api/worker/v1/versions/ver-x/rebuild", body: `{"userId":"` + pxAlice + `"}`, session: sess}, 400, "BAD_REQUEST"},
		{"cross-site POST", pxCall{method: "POST", path: check, body: `{}`, header: http.Header{"Sec-Fetch-Site": {"cross-site"}}, session: sess}, 403, "CROSS_ORIGIN_REQUEST"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := rg.do(tc.call)
			if a.status != tc.want || a.code != tc.code {
				t.Errorf("got %d %q (%s), want %d %q", a.status, a.code, a.body, tc.want, tc.code)
			}
			if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want JSON", ct)
			}
			if n := len(rg.srv.Requests()); n != 0 {
				t.Fatalf("the worker received %d request(s): %+v", n, rg.srv.Requests())
			}
		})
	}
}

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

// The routes that carry no user id (rebuild, versions list) are not served
// without an ownership hook; asking for them with explicit routes and no
// hook is a configuration error.
func TestProxyUnownedRoutesNeedTheHook(t *testing.T) {
	rg := newPxRig(t, pxOptions{})
	for _, c := range []pxCall{
		{method: "POST", path: "/api/worker/v1/versions/ver-1/rebuild", session: "sess-alice"},
		{method: "GET", path: "/api/worker/v1/projects/proj-1/versions", session: "sess-alice"},
	} {
		if a := rg.do(c); a.status != 404 || a.code != "NOT_FOUND" {
			t.Errorf("%s %s: got %d %s, want 404", c.method, c.path, a.status, a.body)
		}
	}
	if n := len(rg.srv.Requests()); n != 0 {
		t.Errorf("the worker received %d request(s)", n)
	}

	_, err := sheen.NewProxy(rg.client, sheen.ProxyConfig{Authorize: pxAuthorize, Routes: sheen.DefaultProxyRoutes()})
	if err == nil || !strings.Contains(err.Error(), "AuthorizeResource") {
		t.Errorf("explicit Unowned routes without a hook: err = %v", err)
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
		cfg  sheen.ProxyConfig
		want string
	}{
		{"no Authorize", sheen.ProxyConfig{}, "Authorize is required"},
		{"relative prefix", sheen.ProxyConfig{Authorize: pxAuthorize, Prefix: "api"}, "Prefix"},
		{"prefix with dots", sheen.ProxyConfig{Authorize: pxAuthorize, Prefix: "/api/../x"}, "Prefix"},
		{"route outside /v1", sheen.ProxyConfig{Authorize: pxAuthorize, Routes: []sheen.ProxyRoute{{Pattern: "GET /admin/{userId}"}}}, "/v1/"},
		{"route without method", sheen.ProxyConfig{Authorize: pxAuthorize, Routes: []sheen.ProxyRoute{{Pattern: "/v1/x"}}}, "METHOD"},
		{"GET with a body", sheen.ProxyConfig{Authorize: pxAuthorize, Routes: []sheen.ProxyRoute{{Pattern: "GET /v1/x", Body: true}}}, "no body"},
		{"BodyIDs naming the user", sheen.ProxyConfig{Authorize: pxAuthorize, Routes: []sheen.ProxyRoute{{Pattern: "POST /v1/x", Body: true, BodyIDs: map[string]sheen.ResourceKind{"user_id": "user"}}}}, "user id"},
		{"partial wildcard", sheen.ProxyConfig{Authorize: pxAuthorize, Routes: []sheen.ProxyRoute{{Pattern: "GET /v1/x-{id}"}}}, "literal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sheen.NewProxy(c, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := sheen.NewProxy(nil, sheen.ProxyConfig{Authorize: pxAuthorize}); err == nil {
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
			rg.own(sheen.ResourceProject, projectID, pxAlice)
			rg.own(sheen.ResourceBuild, buildID, pxAlice)
			versionID := rg.srv.LatestVersion(projectID)
			rg.own(sheen.ResourceVersion, versionID, pxAlice)

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

			for _, rt := range sheen.DefaultProxyRoutes() {
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
	withPrefix, err := sheen.NewProxy(c, sheen.ProxyConfig{Authorize: pxAuthorize, Prefix: "/api/worker/"})
	if err != nil {
		t.Fatal(err)
	}
	bare, err := sheen.NewProxy(c, sheen.ProxyConfig{Authorize: pxAuthorize})
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

// Requests pass through the client's rate limiter: once its quota is used
// up and the wait is longer than the client allows, the proxy answers 429
// itself and the worker sees nothing more.
func TestProxyUsesTheClientsRateLimiter(t *testing.T) {
	rg := newPxRig(t, pxOptions{client: []sheen.Option{sheen.WithRateLimit(1), sheen.WithRetry(1, 50*time.Millisecond)}})
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
	h, err := sheen.NewProxy(c, sheen.ProxyConfig{Authorize: pxAuthorize})
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
	verifier := &sheen.Verifier{Secret: pxSecret}
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
	h, err := sheen.NewProxy(c, sheen.ProxyConfig{Authorize: pxAuthorize, Prefix: "/api/worker"})
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
	h, err := sheen.NewProxy(c, sheen.ProxyConfig{Authorize: pxAuthorize})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/v1/billing/balance/"+pxAlice, nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: "sess-alice"})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}
