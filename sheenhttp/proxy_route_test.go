package sheenhttp_test

import (
	"net/http"
	"strings"
	"testing"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheenhttp"
)

// What the proxy lets through: routes, paths, users and resources.

// Every attack is refused by the proxy, with the proxy's own JSON error,
// and not one request reaches the worker.
func TestProxyRefusesAttacks(t *testing.T) {
	rg := newPxRig(t, pxOptions{scheme: sheen.SigningDual, hook: true})
	rg.own(sheenhttp.ResourceProject, "proj-bob", pxBob)
	rg.own(sheenhttp.ResourceVersion, "ver-bob", pxBob)
	rg.own(sheenhttp.ResourceProject, "proj-alice", pxAlice)
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

	_, err := sheenhttp.NewProxy(rg.client, sheenhttp.ProxyConfig{Authorize: pxAuthorize, Routes: sheenhttp.DefaultProxyRoutes()})
	if err == nil || !strings.Contains(err.Error(), "AuthorizeResource") {
		t.Errorf("explicit Unowned routes without a hook: err = %v", err)
	}
}
