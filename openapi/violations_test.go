package openapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/openapi"
	"github.com/sheenapps/sheen-go/sheentest"
)

const (
	hexSig   = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	hexNonce = "0123456789abcdef0123456789abcdef"
)

// signed is a request as a client signing with s sends it (the signature
// values are well-formed, not real: the contract checks their form).
func signed(method, target string, s sheen.Signing, body string) (*http.Request, []byte) {
	req, _ := http.NewRequest(method, target, nil)
	req.Header.Set(sheen.HeaderSignature, hexSig)
	if s != sheen.SigningBodyPath {
		req.Header.Set(sheen.HeaderTimestamp, "1768471200")
		req.Header.Set(sheen.HeaderNonce, hexNonce)
	}
	if s == sheen.SigningDual {
		req.Header.Set(sheen.HeaderSignatureV2, hexSig)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, []byte(body)
}

type want struct{ in, field string }

func (w want) found(vs []*openapi.Violation) bool {
	return slices.ContainsFunc(vs, func(v *openapi.Violation) bool { return v.In == w.in && v.Field == w.field })
}

// The validator catches each way a request can break the contract, and
// names the offending field; requests that keep it pass.
func TestRequestViolations(t *testing.T) {
	c := load(t)
	long := strings.Repeat("a", 100)
	cases := []struct {
		name   string
		method string
		target string
		scheme sheen.Signing
		body   string
		edit   func(*http.Request)
		want   []want // nil: valid
	}{
		{name: "balance", method: "GET", target: "/v1/billing/balance/u1", scheme: sheen.SigningBodyPath},
		{name: "a 100-character id", method: "GET", target: "/v1/billing/balance/" + long, scheme: sheen.SigningDual},
		{name: "a 101-character id", method: "GET", target: "/v1/billing/balance/" + long + "a", scheme: sheen.SigningDual, want: []want{{"path", "userId"}}},
		{name: "an escaped id counts escaped", method: "GET", target: "/v1/billing/balance/" + strings.Repeat("%20", 34), scheme: sheen.SigningDual, want: []want{{"path", "userId"}}},
		{name: "a dot-dot id", method: "GET", target: "/v1/projects/../versions", scheme: sheen.SigningDual, want: []want{{"route", ""}}},
		{name: "a body on a GET", method: "GET", target: "/v1/billing/balance/u1", scheme: sheen.SigningDual, body: `{}`, want: []want{{"body", ""}}},
		{name: "an unknown query parameter", method: "GET", target: "/v1/billing/balance/u1?debug=1", scheme: sheen.SigningDual, want: []want{{"query", "debug"}}},
		{name: "limit 0", method: "GET", target: "/v1/billing/events/u1?limit=0", scheme: sheen.SigningDual, want: []want{{"query", "limit"}}},
		{name: "limit 100", method: "GET", target: "/v1/billing/events/u1?limit=100", scheme: sheen.SigningDual},
		{name: "an unknown period", method: "GET", target: "/v1/billing/usage/u1?period=week", scheme: sheen.SigningDual, want: []want{{"query", "period"}}},
		{name: "an unknown state", method: "GET", target: "/v1/projects/p1/versions?state=draft", scheme: sheen.SigningDual, want: []want{{"query", "state"}}},
		{name: "a negative lastEventId", method: "GET", target: "/v1/builds/b1/events?userId=u1&lastEventId=-1", scheme: sheen.SigningDual, want: []want{{"query", "lastEventId"}}},
		{name: "status without userId", method: "GET", target: "/v1/builds/b1/status", scheme: sheen.SigningDual, want: []want{{"query", "userId"}}},
		{name: "an export", method: "GET", target: "/v1/projects/p1/export?userId=u1", scheme: sheen.SigningTimestamp},
		{name: "a route the contract lacks", method: "GET", target: "/v1/projects/p1/screenshots", scheme: sheen.SigningDual, want: []want{{"route", ""}}},
		{name: "a method the route lacks", method: "DELETE", target: "/v1/billing/balance/u1", scheme: sheen.SigningDual, want: []want{{"route", ""}}},

		{name: "create-preview", method: "POST", target: "/v1/create-preview-for-new-project", scheme: sheen.SigningDual,
			body: `{"userId":"u1","prompt":"A bakery <site> & menu","framework":"react","templateFiles":{"2":"b","10":"a","src/x":"c"}}`},
		{name: "an unknown body field", method: "POST", target: "/v1/create-preview-for-new-project", scheme: sheen.SigningDual,
			body: `{"userId":"u1","prompt":"p","colour":"red"}`, want: []want{{"body", "/colour"}}},
		{name: "a missing body field", method: "POST", target: "/v1/update-project", scheme: sheen.SigningDual,
			body: `{"userId":"u1","projectId":"p1"}`, want: []want{{"body", "/prompt"}}},
		{name: "an unknown framework", method: "POST", target: "/v1/create-preview-for-new-project", scheme: sheen.SigningDual,
			body: `{"userId":"u1","prompt":"p","framework":"angular"}`, want: []want{{"body", "/framework"}}},
		{name: "a string for a bool", method: "POST", target: "/v1/billing/check-sufficient", scheme: sheen.SigningDual,
			body: `{"userId":"u1","operationType":"update","projectSize":"small","isUpdate":"yes"}`, want: []want{{"body", "/isUpdate"}}},
		{name: "eleven operations", method: "POST", target: "/v1/billing/check-sufficient-batch", scheme: sheen.SigningDual,
			body: `{"userId":"u1","operations":[` + strings.Repeat(`{"operation":"build","estimate_seconds":1},`, 10) + `{"operation":"build","estimate_seconds":1}]}`,
			want: []want{{"body", "/operations"}}},
		{name: "an operation's unknown field", method: "POST", target: "/v1/billing/check-sufficient-batch", scheme: sheen.SigningDual,
			body: `{"userId":"u1","operations":[{"operation":"build","estimateSeconds":1}]}`, want: []want{{"body", "/operations/0/estimateSeconds"}, {"body", "/operations/0/estimate_seconds"}}},
		{name: "a body with a trailing newline", method: "POST", target: "/v1/update-project", scheme: sheen.SigningDual,
			body: `{"userId":"u1","projectId":"p1","prompt":"p"}` + "\n", want: []want{{"body", ""}}},
		{name: "an HTML-escaped body", method: "POST", target: "/v1/update-project", scheme: sheen.SigningDual,
			body: `{"userId":"u1","projectId":"p1","prompt":"\u003ch1\u003e"}`, want: []want{{"body", ""}}},
		{name: "an escaped backslash is not an HTML escape", method: "POST", target: "/v1/update-project", scheme: sheen.SigningDual,
			body: `{"userId":"u1","projectId":"p1","prompt":"\\u003c"}`},
		{name: "keys JSON.stringify would reorder", method: "POST", target: "/v1/create-preview-for-new-project", scheme: sheen.SigningDual,
			body: `{"userId":"u1","prompt":"p","templateFiles":{"10":"a","2":"b"}}`, want: []want{{"body", ""}}},
		{name: "a number JSON.stringify writes otherwise", method: "POST", target: "/v1/create-preview-for-new-project", scheme: sheen.SigningDual,
			body: `{"userId":"u1","prompt":"p","metadata":{"n":1.50}}`, want: []want{{"body", ""}}},
		{name: "the same keys on a route without the rule", method: "POST", target: "/v1/billing/check-sufficient", scheme: sheen.SigningDual,
			body: `{"isUpdate":false,"userId":"u1","operationType":"update","projectSize":"small"}`},
		{name: "a body as text", method: "POST", target: "/v1/update-project", scheme: sheen.SigningDual,
			body: `{"userId":"u1","projectId":"p1","prompt":"p"}`, edit: func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") }, want: []want{{"body", ""}}},

		{name: "rollback", method: "POST", target: "/v1/versions/rollback", scheme: sheen.SigningDual,
			body: `{"projectId":"p1","targetVersionId":"v1","userId":"u1"}`, edit: func(r *http.Request) { r.Header.Set("Idempotency-Key", "k1") }},
		{name: "rollback without an idempotency key", method: "POST", target: "/v1/versions/rollback", scheme: sheen.SigningDual,
			body: `{"projectId":"p1","targetVersionId":"v1","userId":"u1"}`, want: []want{{"header", "Idempotency-Key"}}},
		{name: "rebuild", method: "POST", target: "/v1/versions/v1/rebuild", scheme: sheen.SigningTimestamp},
		{name: "rebuild with a body", method: "POST", target: "/v1/versions/v1/rebuild", scheme: sheen.SigningTimestamp, body: `{}`, want: []want{{"body", ""}}},

		{name: "dual without its v2 signature", method: "GET", target: "/v1/billing/balance/u1", scheme: sheen.SigningDual,
			edit: func(r *http.Request) { r.Header.Del(sheen.HeaderSignatureV2) }, want: []want{{"signing", "x-sheen-sig-v2"}}},
		{name: "v2.1 with a timestamp", method: "GET", target: "/v1/billing/balance/u1", scheme: sheen.SigningBodyPath,
			edit: func(r *http.Request) { r.Header.Set(sheen.HeaderTimestamp, "1768471200") }, want: []want{{"signing", "x-sheen-timestamp"}}},
		{name: "v1 without its nonce is v1 still", method: "GET", target: "/v1/billing/balance/u1", scheme: sheen.SigningTimestamp,
			edit: func(r *http.Request) { r.Header.Del(sheen.HeaderNonce) }},
		{name: "an unsigned request", method: "GET", target: "/v1/billing/balance/u1", scheme: sheen.SigningBodyPath,
			edit: func(r *http.Request) { r.Header.Del(sheen.HeaderSignature) }, want: []want{{"signing", "x-sheen-signature"}}},
		{name: "a nonce that is not 32 hex", method: "GET", target: "/v1/billing/balance/u1", scheme: sheen.SigningDual,
			edit: func(r *http.Request) { r.Header.Set(sheen.HeaderNonce, "NONCE-SECRET-VALUE") }, want: []want{{"header", "x-sheen-nonce"}}},
		{name: "an uppercase signature", method: "GET", target: "/v1/billing/balance/u1", scheme: sheen.SigningDual,
			edit: func(r *http.Request) { r.Header.Set(sheen.HeaderSignature, strings.ToUpper(hexSig)) }, want: []want{{"header", "x-sheen-signature"}}},

		{name: "generate, body-only under dual", method: "POST", target: "/generate", scheme: sheen.SigningDual,
			body: `{"userId":"u1","projectId":"p1","prompt":"p"}`,
			edit: func(r *http.Request) {
				for _, h := range []string{sheen.HeaderTimestamp, sheen.HeaderNonce, sheen.HeaderSignatureV2} {
					r.Header.Del(h)
				}
			}},
		{name: "generate with the dual headers", method: "POST", target: "/generate", scheme: sheen.SigningDual,
			body: `{"userId":"u1","projectId":"p1","prompt":"p"}`, want: []want{{"signing", "x-sheen-timestamp"}, {"signing", "x-sheen-sig-v2"}}},
		{name: "generate with only a prompt (the reference client)", method: "POST", target: "/generate", scheme: sheen.SigningBodyPath,
			body: `{"prompt":"p"}`, want: []want{{"body", "/userId"}, {"body", "/projectId"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, body := signed(tc.method, tc.target, tc.scheme, tc.body)
			if tc.edit != nil {
				tc.edit(req)
			}
			err := c.ValidateRequest(req, body, tc.scheme)
			vs := openapi.Violations(err)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("a valid request is refused: %v", err)
				}
				return
			}
			for _, w := range tc.want {
				if !w.found(vs) {
					t.Errorf("no violation in %s %q; got:\n%v", w.in, w.field, err)
				}
			}
			msg := err.Error()
			for _, secret := range []string{hexSig, hexNonce, "NONCE-SECRET-VALUE"} {
				if strings.Contains(msg, secret) {
					t.Errorf("a signature header's value is in the error: %s", msg)
				}
			}
		})
	}
}

// The validator catches each way an answer can break the contract, and
// names the offending field; the answers the prose allows pass, including
// stripped and non-JSON error bodies.
func TestAnswerViolations(t *testing.T) {
	c := load(t)
	jsonH := func(kv ...string) http.Header {
		h := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	fixture := func(name, old, repl string) string {
		b := string(sheentest.FixtureNamed(name).Body)
		if !strings.Contains(b, old) {
			t.Fatalf("fixture %s has no %q", name, old)
		}
		return strings.Replace(b, old, repl, 1)
	}
	cases := []struct {
		name   string
		route  string
		status int
		header http.Header
		body   string
		want   []want
	}{
		{name: "a renamed balance field", route: sheen.RouteBalance, status: 200, header: jsonH(),
			body: fixture("balance", `"total_seconds"`, `"totalSeconds"`), want: []want{{"body", "/totals/total_seconds"}}},
		{name: "a v2.1 balance total as a word", route: sheen.RouteLegacyBalance, status: 200, header: jsonH(),
			body: fixture("legacy-balance", `"total": 7500`, `"total": "lots"`), want: []want{{"body", "/balance/total"}}},
		{name: "a balance number as a string", route: sheen.RouteLegacyBalance, status: 200, header: jsonH(),
			body: fixture("legacy-balance", `"total": 7500`, `"total": "7500"`)},
		{name: "an unknown phase", route: sheen.RouteBuildEvents, status: 200, header: jsonH(),
			body: fixture("build-events", `"phase": "build"`, `"phase": "bulid"`), want: []want{{"body", "/events/3/phase"}}},
		{name: "an event id as a number", route: sheen.RouteBuildEvents, status: 200, header: jsonH(),
			body: fixture("build-events", `"id": "1"`, `"id": 1`), want: []want{{"body", "/events/0/id"}}},
		{name: "a link without its URL", route: sheen.RouteExportProject, status: 200, header: jsonH(),
			body: fixture("export-project", `"downloadUrl"`, `"url"`), want: []want{{"body", "/downloadUrl"}}},
		{name: "a rollback status the worker does not have", route: sheen.RouteRollback, status: 200, header: jsonH(),
			body: fixture("rollback", `"deployed"`, `"done"`), want: []want{{"body", "/status"}}},
		// OpenAPI 3.1 keywords are enforced (const, type lists with "null").
		{name: "const: a link with success:false", route: sheen.RouteExportProject, status: 200, header: jsonH(),
			body: fixture("export-project", `"success": true`, `"success": false`), want: []want{{"body", "/success"}}},
		{name: "type list: a version description as a number", route: sheen.RouteVersions, status: 200, header: jsonH(),
			body: fixture("versions", `"description": "Add a page for wedding cakes"`, `"description": 5`), want: []want{{"body", "/versions/1/description"}}},
		{name: "type list: a null version description", route: sheen.RouteVersions, status: 200, header: jsonH(),
			body: fixture("versions", `"description": "Add a page for wedding cakes"`, `"description": null`)},
		{name: "a null bucket expiry", route: sheen.RouteBalance, status: 200, header: jsonH(),
			body: fixture("balance", `"next_expiry_at": "2026-01-16T00:00:00Z"`, `"next_expiry_at": null`)},
		{name: "a bucket expiry that is no time", route: sheen.RouteBalance, status: 200, header: jsonH(),
			body: fixture("balance", `"next_expiry_at": "2026-01-16T00:00:00Z"`, `"next_expiry_at": "tomorrow"`), want: []want{{"body", "/totals/next_expiry_at"}}},
		{name: "a status the route does not declare", route: sheen.RouteBuildStatus, status: 418, header: jsonH(), body: `{"error":"teapot"}`,
			want: []want{{"status", ""}}},
		{name: "a 402 from a route that does not charge", route: sheen.RouteVersions, status: 402, header: jsonH(), body: `{"error":"x"}`,
			want: []want{{"status", ""}}},
		{name: "a 429 with a bad Retry-After", route: sheen.RouteBalance, status: 429, header: jsonH("Retry-After", "soon"), body: `{"error":"Rate limit exceeded"}`,
			want: []want{{"header", "Retry-After"}}},
		{name: "a 429 with an HTTP-date Retry-After", route: sheen.RouteBalance, status: 429, header: jsonH("Retry-After", "Wed, 21 Oct 2026 07:28:00 GMT"), body: `{"error":"Rate limit exceeded"}`},
		{name: "a negative x-ratelimit-remaining", route: sheen.RouteBalance, status: 200, header: jsonH("X-Ratelimit-Remaining", "-1"),
			body: string(sheentest.FixtureNamed("balance").Body), want: []want{{"header", "x-ratelimit-remaining"}}},
		{name: "the deployed worker's fixed rate headers", route: sheen.RouteBalance, status: 200, header: jsonH("X-Ratelimit-Remaining", "90", "X-Ratelimit-Reset", "1768474800"),
			body: string(sheentest.FixtureNamed("balance").Body)},
		{name: "a nested 429", route: sheen.RouteCreatePreview, status: 429, header: jsonH(), body: `{"ok":false,"error":{"code":"RATE_LIMITED","message":"slow down","retryAfter":30}}`},
		{name: "a data/error 429", route: sheen.RouteCreatePreview, status: 429, header: jsonH(), body: `{"data":null,"error":{"code":"RATE_LIMIT_EXCEEDED","message":"m","hint":"h"},"status":429}`},
		{name: "an error that is no envelope", route: sheen.RouteCreatePreview, status: 400, header: jsonH(), body: `{"message":"no"}`,
			want: []want{{"body", "/error"}}},
		{name: "an error code that is a number", route: sheen.RouteCreatePreview, status: 400, header: jsonH(), body: `{"error":"Bad","code":400}`,
			want: []want{{"body", "/code"}}},
		{name: "an empty 402", route: sheen.RouteCreatePreview, status: 402, header: http.Header{}, body: ``},
		{name: "an HTML 402", route: sheen.RouteCreatePreview, status: 402, header: http.Header{"Content-Type": {"text/html"}}, body: `<html>Payment Required</html>`},
		{name: "the late builds 402", route: sheen.RouteUpdateProject, status: 402, header: jsonH(),
			body: `{"success":false,"error":"insufficient_ai_time","message":"m","available":60,"required":180,"breakdown":{"paid":60},"estimate":null,"correlationId":"c"}`},
		{name: "the v2.1 402", route: sheen.RouteCheckSufficient, status: 402, header: jsonH(),
			body: `{"sufficient":false,"estimate":null,"balance":{"welcomeBonus":0,"dailyGift":0,"paid":0,"total":0},"recommendation":{"suggestedPackage":"mini","costToComplete":5,"purchaseUrl":"https://x"}}`},
		{name: "a 402 of no known shape", route: sheen.RouteCreatePreview, status: 402, header: jsonH(), body: `{"error":"payment required"}`,
			want: []want{{"body", "/balance_seconds"}}},
		{name: "an HTML 502 from a proxy", route: sheen.RouteBalance, status: 502, header: http.Header{"Content-Type": {"text/html; charset=utf-8"}}, body: `<html>Bad Gateway</html>`},
		{name: "an empty 200", route: sheen.RouteBalance, status: 200, header: jsonH(), body: ``, want: []want{{"body", ""}}},
		{name: "a 200 in HTML", route: sheen.RouteBalance, status: 200, header: http.Header{"Content-Type": {"text/html"}}, body: `<html></html>`,
			want: []want{{"header", "Content-Type"}}},
		{name: "two JSON documents", route: sheen.RouteBalance, status: 200, header: jsonH(), body: string(sheentest.FixtureNamed("balance").Body) + `{}`,
			want: []want{{"body", ""}}},
		{name: "the inline check's 401", route: sheen.RouteCreatePreview, status: 401, header: jsonH(), body: `{"success":false,"error":"Invalid signature","serverTime":1768471200000}`},
		{name: "a generate answer after its heartbeat", route: "POST /generate", status: 200, header: jsonH(), body: ` {"success":true,"output":"done"}`},
		{name: "a generate failure inside a 200", route: "POST /generate", status: 200, header: jsonH(), body: ` {"success":false,"error":"Output buffer exceeded"}`},
		{name: "a generate answer without output", route: "POST /generate", status: 200, header: jsonH(), body: ` {"success":true}`,
			want: []want{{"body", "/output"}}},
		{name: "generate's budget", route: "POST /generate", status: 429, header: jsonH(), body: `{"error":"Rate limit exceeded"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := c.ValidateAnswer(tc.route, tc.status, tc.header, []byte(tc.body))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("an answer the contract allows is refused: %v", err)
				}
				return
			}
			vs := openapi.Violations(err)
			for _, w := range tc.want {
				if !w.found(vs) {
					t.Errorf("no violation in %s %q; got:\n%v", w.in, w.field, err)
				}
			}
		})
	}
}

// A Transport missing what it needs refuses to carry requests instead of
// panicking.
func TestTransportMisconfigured(t *testing.T) {
	for _, tr := range []*openapi.Transport{
		{BaseURL: "http://worker.test", Report: func(error) {}},
		{Contract: load(t), BaseURL: "http://worker.test"},
		{Contract: load(t), BaseURL: "worker.test", Report: func(error) {}},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://worker.test/v1/billing/balance/u1", nil)
		if _, err := tr.RoundTrip(req); err == nil || !strings.HasPrefix(err.Error(), "openapi: ") {
			t.Errorf("%+v: %v", tr, err)
		}
	}
}
