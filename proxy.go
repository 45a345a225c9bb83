package sheen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// ResourceKind names the kind of worker resource a proxied request names,
// for ProxyConfig.AuthorizeResource.
type ResourceKind string

// Resource kinds of the default proxy routes.
const (
	ResourceProject ResourceKind = "project"
	ResourceVersion ResourceKind = "version"
	ResourceBuild   ResourceKind = "build"
)

// ProxyRoute is one worker route the proxy lets through. Build your own only
// for routes the SDK does not list; DefaultProxyRoutes has the spec's.
type ProxyRoute struct {
	// Pattern is the method and the path below the worker's base URL, as in
	// http.ServeMux: "GET /v1/billing/balance/{userId}". Wildcards match one
	// whole path segment. A {userId} wildcard must be the authorised user;
	// any other {name} is the id of a resource whose kind is name without
	// its "Id" suffix ({projectId} is a ResourceProject), passed to
	// ProxyConfig.AuthorizeResource.
	Pattern string
	// UserQuery says the worker reads the user from the userId query
	// parameter: the proxy sets it to the authorised user.
	UserQuery bool
	// Body says the route takes a JSON object whose top-level "userId" the
	// proxy checks, or fills in when absent. Routes without Body refuse a
	// non-empty body.
	Body bool
	// BodyIDs names top-level fields of the JSON body that hold resource
	// ids, with their kinds, for ProxyConfig.AuthorizeResource.
	BodyIDs map[string]ResourceKind
	// Unowned says no user id travels with the request, so the worker cannot
	// tell whether the resource belongs to the user (rebuilding a version,
	// listing a project's versions). Such a route is served only when
	// ProxyConfig.AuthorizeResource is set.
	Unowned bool
}

// DefaultProxyRoutes returns the routes a NewProxy without Routes lets
// through: the billing, builds, build events and status, versions and
// exports routes of the Worker API, nothing administrative.
//
// POST /v1/versions/{versionId}/rebuild and GET
// /v1/projects/{projectId}/versions carry no user id, so the worker cannot
// check that the version or project is the user's: they are Unowned and
// pass only when ProxyConfig.AuthorizeResource is set.
func DefaultProxyRoutes() []ProxyRoute {
	return []ProxyRoute{
		{Pattern: "GET /v1/billing/balance/{userId}"},
		{Pattern: "GET /v1/billing/legacy-balance/{userId}"},
		{Pattern: "POST /v1/billing/check-sufficient", Body: true},
		{Pattern: "POST /v1/billing/check-sufficient-batch", Body: true},
		{Pattern: "GET /v1/billing/usage/{userId}"},
		{Pattern: "GET /v1/billing/events/{userId}"},
		{Pattern: "POST /v1/create-preview-for-new-project", Body: true, BodyIDs: map[string]ResourceKind{"projectId": ResourceProject}},
		{Pattern: "POST /v1/update-project", Body: true, BodyIDs: map[string]ResourceKind{"projectId": ResourceProject}},
		{Pattern: "POST /v1/versions/rollback", Body: true, BodyIDs: map[string]ResourceKind{"projectId": ResourceProject, "targetVersionId": ResourceVersion}},
		{Pattern: "POST /v1/versions/{versionId}/rebuild", Unowned: true},
		{Pattern: "GET /v1/projects/{projectId}/versions", Unowned: true},
		{Pattern: "GET /v1/builds/{buildId}/events", UserQuery: true},
		{Pattern: "GET /v1/builds/{buildId}/status", UserQuery: true},
		{Pattern: "GET /v1/projects/{projectId}/export", UserQuery: true},
		{Pattern: "GET /v1/versions/{versionId}/download", UserQuery: true},
	}
}

// ProxyConfig configures NewProxy.
type ProxyConfig struct {
	// Authorize returns the signed-in user of a browser request, from your
	// session. It is required. An error or an empty id answers 401 and
	// nothing reaches the worker. The id must be a valid worker id (no "/",
	// no control characters).
	Authorize func(r *http.Request) (userID string, err error)

	// AuthorizeResource, when set, is asked about every resource id a
	// request names (in its path or its JSON body) before it is sent:
	// return nil when userID may act on it. An error answers 403, or 404
	// when it matches ErrNotFound. It sees a projectId chosen for a new
	// project in create-preview too. Without it, the Unowned routes
	// (rebuild, versions list) are not served.
	AuthorizeResource func(r *http.Request, userID string, kind ResourceKind, id string) error

	// Prefix is the path the proxy is mounted under, such as "/api/worker"
	// for mux.Handle("/api/worker/", proxy): the proxy strips it and maps
	// /api/worker/v1/... to the worker's /v1/.... Leave it empty when the
	// prefix is already stripped (http.StripPrefix) or there is none.
	Prefix string

	// Routes is the allowlist; nil means DefaultProxyRoutes (without the
	// Unowned ones when AuthorizeResource is nil). Anything else answers
	// 404.
	Routes []ProxyRoute

	// CrossOrigin guards POST routes against cross-site requests (CSRF);
	// nil means a default http.CrossOriginProtection, which refuses
	// cross-origin browser requests that are not GET, HEAD or OPTIONS.
	CrossOrigin *http.CrossOriginProtection
}

// Codes in the JSON bodies of errors the proxy answers itself.
const (
	proxyCodeUnauthorized ErrorCode = "UNAUTHORIZED"
	proxyCodeForbidden    ErrorCode = "FORBIDDEN"
	proxyCodeCrossOrigin  ErrorCode = "CROSS_ORIGIN_REQUEST"
	proxyCodeNotFound     ErrorCode = "NOT_FOUND"
	proxyCodeBadPath      ErrorCode = "INVALID_PATH"
	proxyCodeBadMedia     ErrorCode = "FST_ERR_CTP_INVALID_MEDIA_TYPE"
	proxyCodeRateLimited  ErrorCode = "client_rate_limited"
	proxyCodeUnavailable  ErrorCode = "WORKER_UNAVAILABLE"
	proxyCodeSigning      ErrorCode = "PROXY_SIGNATURE_REJECTED"
)

// maxProxyJSONDepth caps how deeply a proxied JSON body may nest.
const maxProxyJSONDepth = 64

// NewProxy returns a handler that forwards browser requests to the worker
// through client, so the shared secret never leaves the server. It is safe
// by construction:
//
//   - Authorize must name a user, else 401.
//   - Only the allowlisted routes pass (ProxyConfig.Routes), else 404. The
//     path is matched decoded, and refused (400 INVALID_PATH) when its raw
//     form has dot segments, empty segments, backslashes or percent-encoded
//     dots, slashes, backslashes, percent signs or control characters: the
//     proxy refuses rather than normalises. The path sent to the worker is
//     rebuilt from the route with every id escaped.
//   - A user id in the path, in the query (any key that reads userId when
//     case, "_" and "-" are ignored, duplicates included) or in the JSON body
//     (top-level "userId") must be the authorised user, else 403 FORBIDDEN;
//     where the route needs it and it is absent, it is filled in. A body with
//     a userId below the top level, or a key twice in one object, is
//     refused; the body sent is re-encoded the way JSON.stringify writes it.
//   - Requests to the worker carry only headers the proxy sets (no cookie,
//     Authorization, x-sheen-* or hop-by-hop header from the browser); a
//     browser's Idempotency-Key is scoped to the user. They are signed by
//     the client's signer and paced by its rate limiter, and are not
//     retried: the browser decides that. While the worker has asked the
//     client to pause (a 429, or a window with no quota left) the proxy
//     answers 429 client_rate_limited with Retry-After at once; otherwise a
//     request waits for quota as long as the client's maximum wait
//     (WithRetry) allows, then gets the same 429. Give the proxy a client of
//     its own with WithRetry(1, a few seconds) to keep browsers from
//     waiting long, and a WithRateLimit that fits all your users.
//   - Bodies over 1 MiB answer 413 FST_ERR_CTP_BODY_TOO_LARGE, as the worker
//     would. Responses are streamed, with their status, Content-Type (JSON
//     only; anything else is served as text/plain), X-Correlation-Id,
//     Retry-After and rate-limit headers; no other worker header reaches the
//     browser, and every response is marked Cache-Control: no-store.
//
// Errors the proxy answers itself have JSON bodies like the worker's:
// {"error": message, "code": code}, with codes UNAUTHORIZED (401),
// FORBIDDEN and CROSS_ORIGIN_REQUEST (403), NOT_FOUND (404), INVALID_PATH and
// BAD_REQUEST (400), FST_ERR_CTP_BODY_TOO_LARGE (413),
// FST_ERR_CTP_INVALID_MEDIA_TYPE (415, a body that is not application/json),
// client_rate_limited (429), WORKER_UNAVAILABLE (502) and INTERNAL_ERROR
// (500, when Authorize returns an id that is not a valid worker id).
//
// Mount it with mux.Handle("/api/worker/", proxy) and Prefix "/api/worker",
// or behind http.StripPrefix with no Prefix. An http.ServeMux cleans paths
// with dot segments or double slashes and redirects to the clean path before
// the proxy sees them; the proxy then checks the clean path like any other.
func NewProxy(client *WorkerClient, cfg ProxyConfig) (http.Handler, error) {
	if client == nil || client.core == nil {
		return nil, errors.New("sheen: NewProxy: client is nil")
	}
	if cfg.Authorize == nil {
		return nil, errors.New("sheen: NewProxy: ProxyConfig.Authorize is required")
	}
	prefix := strings.TrimSuffix(cfg.Prefix, "/")
	if prefix != "" && (!strings.HasPrefix(prefix, "/") || checkRawProxyPath(prefix) != nil) {
		return nil, fmt.Errorf("sheen: NewProxy: Prefix %q must be a clean absolute path such as /api/worker", cfg.Prefix)
	}
	routes := cfg.Routes
	explicit := routes != nil
	if !explicit {
		routes = DefaultProxyRoutes()
	}
	p := &proxy{c: client.core, billing: client.Billing, authorize: cfg.Authorize, authorizeResource: cfg.AuthorizeResource, prefix: prefix, cop: cfg.CrossOrigin}
	if p.cop == nil {
		p.cop = http.NewCrossOriginProtection()
	}
	for _, rt := range routes {
		pr, err := parseProxyRoute(rt)
		if err != nil {
			return nil, fmt.Errorf("sheen: NewProxy: route %q: %w", rt.Pattern, err)
		}
		if rt.Unowned && cfg.AuthorizeResource == nil {
			if explicit {
				return nil, fmt.Errorf("sheen: NewProxy: route %q is Unowned: it needs ProxyConfig.AuthorizeResource", rt.Pattern)
			}
			continue
		}
		p.routes = append(p.routes, pr)
	}
	return p, nil
}

type proxy struct {
	c                 *core
	billing           *BillingService // told when a user's balance changed
	authorize         func(*http.Request) (string, error)
	authorizeResource func(*http.Request, string, ResourceKind, string) error
	prefix            string
	routes            []*proxyRoute
	cop               *http.CrossOriginProtection
}

type proxyRoute struct {
	ProxyRoute
	method string
	segs   []routeSeg
}

// routeSeg is one segment of a route: a literal, or a wildcard with its name
// and the kind of resource it holds ("" for the user).
type routeSeg struct {
	lit  string
	wild string
	kind ResourceKind
}

func parseProxyRoute(rt ProxyRoute) (*proxyRoute, error) {
	method, p, ok := strings.Cut(rt.Pattern, " ")
	if !ok {
		return nil, errors.New(`want "METHOD /v1/path"`)
	}
	switch method {
	case http.MethodGet, http.MethodDelete:
		if rt.Body {
			return nil, errors.New(method + " routes carry no body")
		}
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return nil, fmt.Errorf("method %q is not GET, POST, PUT, PATCH or DELETE", method)
	}
	if !strings.HasPrefix(p, "/v1/") || strings.HasSuffix(p, "/") {
		return nil, errors.New("the path must start with /v1/ and not end with /")
	}
	if len(rt.BodyIDs) > 0 && !rt.Body {
		return nil, errors.New("BodyIDs needs Body")
	}
	for k := range rt.BodyIDs {
		if isUserKey(k) {
			return nil, errors.New("BodyIDs cannot name the user id")
		}
	}
	pr := &proxyRoute{ProxyRoute: rt, method: method}
	names := map[string]bool{}
	for _, s := range strings.Split(p[1:], "/") {
		if name, ok := strings.CutPrefix(s, "{"); ok {
			name, ok = strings.CutSuffix(name, "}")
			if !ok || !isWildcardName(name) || names[name] {
				return nil, fmt.Errorf("bad or repeated wildcard %q", s)
			}
			names[name] = true
			seg := routeSeg{wild: name}
			if name != "userId" {
				seg.kind = ResourceKind(strings.TrimSuffix(name, "Id"))
			}
			pr.segs = append(pr.segs, seg)
			continue
		}
		if s == "" || s == "." || s == ".." || strings.ContainsFunc(s, func(r rune) bool { return !isUnreserved(r) }) {
			return nil, fmt.Errorf("bad literal segment %q", s)
		}
		pr.segs = append(pr.segs, routeSeg{lit: s})
	}
	if rt.Unowned && names["userId"] {
		return nil, errors.New("a route with a {userId} is not Unowned")
	}
	return pr, nil
}

func isWildcardName(s string) bool {
	if s == "" || !('a' <= s[0] && s[0] <= 'z' || 'A' <= s[0] && s[0] <= 'Z') {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool { return !isUnreserved(r) || r == '.' || r == '~' || r == '-' })
}

func isUnreserved(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '.' || r == '_' || r == '~'
}

// isUserKey reports whether a query or JSON key may mean the user: one that
// holds "userId" in any case, with any punctuation ("user_id", "USER-ID",
// "userId[]", "a[userId]", for parsers that nest keys).
func isUserKey(k string) bool {
	var sb strings.Builder
	for _, r := range strings.ToLower(k) {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
			sb.WriteRune(r)
		}
	}
	return strings.Contains(sb.String(), "userid")
}

// proxyRefusal is an answer the proxy gives itself.
type proxyRefusal struct {
	status  int
	code    ErrorCode
	message string
}

func refuse(status int, code ErrorCode, message string) *proxyRefusal {
	return &proxyRefusal{status: status, code: code, message: message}
}

// forward is a request that passed every check, as it goes to the worker.
type forward struct {
	route     *proxyRoute
	userID    string
	target    string // escaped path and query below the base URL
	body      []byte // nil: none
	resources []resourceRef
}

type resourceRef struct {
	kind ResourceKind
	id   string
}

// ServeHTTP implements http.Handler.
func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fw, no := p.check(w, r)
	if no != nil {
		p.answer(w, r, no)
		return
	}
	p.send(w, r, fw)
}

// check runs every check in turn: session, cross-origin, path and route,
// user id in path, query and body, resource ownership.
func (p *proxy) check(w http.ResponseWriter, r *http.Request) (*forward, *proxyRefusal) {
	userID, err := p.authorize(r)
	if err != nil || userID == "" {
		return nil, refuse(http.StatusUnauthorized, proxyCodeUnauthorized, "Sign in to continue")
	}
	if _, err := escapeID("userId", userID); err != nil {
		p.c.logger.LogAttrs(r.Context(), slog.LevelError, "sheen: proxy: Authorize returned an unusable user id", slog.String("error", err.Error()))
		return nil, refuse(http.StatusInternalServerError, codeInternal, "Internal error")
	}
	if err := p.cop.Check(r); err != nil {
		return nil, refuse(http.StatusForbidden, proxyCodeCrossOrigin, "Cross-origin request refused")
	}
	route, vals, no := p.match(r)
	if no != nil {
		return nil, no
	}
	fw := &forward{route: route, userID: userID}

	// The path, rebuilt from the route with every id escaped.
	var sb strings.Builder
	for i, seg := range route.segs {
		sb.WriteByte('/')
		if seg.lit != "" {
			sb.WriteString(seg.lit)
			continue
		}
		v := vals[i]
		if seg.kind == "" && v != userID {
			return nil, refuse(http.StatusForbidden, proxyCodeForbidden, "The user id in the path is not yours")
		}
		esc, err := escapeID(seg.wild, v)
		if err != nil {
			return nil, refuse(http.StatusBadRequest, proxyCodeBadPath, "Invalid "+seg.wild)
		}
		sb.WriteString(esc)
		if seg.kind != "" {
			fw.resources = append(fw.resources, resourceRef{seg.kind, v})
		}
	}

	// The query, re-encoded, with the user's id and nobody else's.
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, codeBadRequest, "Invalid query string")
	}
	for k, vs := range query {
		if !isUserKey(k) {
			continue
		}
		for _, v := range vs {
			if v != userID {
				return nil, refuse(http.StatusForbidden, proxyCodeForbidden, "The user id in the query is not yours")
			}
		}
		delete(query, k)
	}
	if route.UserQuery {
		query.Set("userId", userID)
	}
	if q := query.Encode(); q != "" {
		sb.WriteByte('?')
		sb.WriteString(q)
	}
	fw.target = sb.String()

	if no := p.readBody(w, r, fw); no != nil {
		return nil, no
	}
	if p.authorizeResource != nil {
		for _, res := range fw.resources {
			if err := p.authorizeResource(r, userID, res.kind, res.id); err != nil {
				if errors.Is(err, ErrNotFound) {
					return nil, refuse(http.StatusNotFound, proxyCodeNotFound, "Not found")
				}
				return nil, refuse(http.StatusForbidden, proxyCodeForbidden, "That "+string(res.kind)+" is not yours")
			}
		}
	}
	return fw, nil
}

// match finds the route of a request: the raw path is checked, the prefix
// stripped, and each segment decoded and compared. vals holds the decoded
// value of each wildcard segment, by index.
func (p *proxy) match(r *http.Request) (*proxyRoute, []string, *proxyRefusal) {
	badPath := refuse(http.StatusBadRequest, proxyCodeBadPath, "Invalid path")
	if raw, _, _ := strings.Cut(r.RequestURI, "?"); strings.HasPrefix(raw, "/") && checkRawProxyPath(raw) != nil {
		return nil, nil, badPath
	}
	raw := r.URL.EscapedPath()
	if checkRawProxyPath(raw) != nil {
		return nil, nil, badPath
	}
	rest, ok := strings.CutPrefix(raw, p.prefix)
	if !ok || !strings.HasPrefix(rest, "/") {
		return nil, nil, refuse(http.StatusNotFound, proxyCodeNotFound, "Not found")
	}
	raws := strings.Split(rest[1:], "/")
	segs := make([]string, len(raws))
	for i, s := range raws {
		d, err := url.PathUnescape(s)
		if err != nil || d == "" || d == "." || d == ".." || strings.ContainsAny(d, "/\\") ||
			strings.ContainsFunc(d, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, nil, badPath
		}
		segs[i] = d
	}
	if decoded := "/" + strings.Join(segs, "/"); path.Clean(decoded) != decoded {
		return nil, nil, badPath
	}
	for _, rt := range p.routes {
		if rt.method != r.Method || len(rt.segs) != len(segs) {
			continue
		}
		vals := make([]string, len(segs))
		matched := true
		for i, seg := range rt.segs {
			if seg.lit != "" {
				if seg.lit != segs[i] {
					matched = false
					break
				}
				continue
			}
			vals[i] = segs[i]
		}
		if matched {
			return rt, vals, nil
		}
	}
	return nil, nil, refuse(http.StatusNotFound, proxyCodeNotFound, "Not found")
}

// checkRawProxyPath refuses raw paths that a server or a proxy on the way
// might read differently from the proxy: dot segments, empty segments,
// backslashes, percent-encoded dots, slashes, backslashes, percent signs and
// control characters, bytes outside printable ASCII, and ';'.
func checkRawProxyPath(raw string) error {
	lower := strings.ToLower(raw)
	for _, bad := range []string{"..", "//", "\\", ";", "%2e", "%2f", "%5c", "%25", "%00"} {
		if strings.Contains(lower, bad) {
			return errors.New("refused path")
		}
	}
	if strings.ContainsFunc(raw, func(r rune) bool { return r <= 0x20 || r >= 0x7f }) {
		return errors.New("refused path")
	}
	for seg := range strings.SplitSeq(raw, "/") {
		if seg == "." {
			return errors.New("refused path")
		}
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '%' {
			continue
		}
		if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
			return errors.New("refused path")
		}
		if b := unhex(raw[i+1])<<4 | unhex(raw[i+2]); b < 0x20 || b == 0x7f {
			return errors.New("refused path")
		}
	}
	return nil
}

// readBody reads, caps and checks the request body of fw's route.
func (p *proxy) readBody(w http.ResponseWriter, r *http.Request, fw *forward) *proxyRefusal {
	tooLarge := &proxyRefusal{status: http.StatusRequestEntityTooLarge, code: CodeBodyTooLarge, message: "Request body is too large"}
	if r.Method == http.MethodGet || r.Method == http.MethodDelete {
		return nil // sent without a body: the worker signs these with an empty one
	}
	if r.ContentLength > MaxRequestBody {
		return tooLarge
	}
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBody))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return tooLarge
			}
			return refuse(http.StatusBadRequest, codeBadRequest, "Could not read the request body")
		}
		body = b
	}
	if !fw.route.Body {
		if len(body) > 0 {
			return refuse(http.StatusBadRequest, codeBadRequest, "This route takes no body")
		}
		return nil
	}
	if len(bytes.TrimSpace(body)) > 0 {
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			return refuse(http.StatusUnsupportedMediaType, proxyCodeBadMedia, "Unsupported Media Type: send application/json")
		}
	} else {
		body = []byte("{}")
	}
	out, ids, no := scanProxyBody(body, fw.userID, fw.route.BodyIDs)
	if no != nil {
		return no
	}
	if len(out) > MaxRequestBody {
		return tooLarge
	}
	fw.body = out
	fw.resources = append(fw.resources, ids...)
	return nil
}

// answer writes a refusal as JSON.
func (p *proxy) answer(w http.ResponseWriter, r *http.Request, no *proxyRefusal) {
	if p.c.logger.Enabled(r.Context(), slog.LevelDebug) {
		p.c.logger.LogAttrs(r.Context(), slog.LevelDebug, "sheen: proxy refused a request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", no.status), slog.String("code", string(no.code)))
	}
	writeError(w, no.status, no.code, no.message)
}

// send forwards a checked request through the client's signing, rate-limited
// transport, once, and streams the answer back.
func (p *proxy) send(w http.ResponseWriter, r *http.Request, fw *forward) {
	c := p.c
	ctx := r.Context()
	if wait := p.pausedFor(); wait > 0 {
		// The worker said stop (a 429, or no quota left until the window
		// resets): tell the browser now rather than hold its request.
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(wait.Seconds())), 10))
		writeError(w, http.StatusTooManyRequests, proxyCodeRateLimited, "Too many requests; try again later")
		return
	}
	var body io.Reader
	if fw.body != nil {
		body = newRequestBody(fw.body)
	}
	req, err := http.NewRequestWithContext(ctx, fw.route.method, c.baseURL.Scheme+"://"+c.baseURL.Host+c.basePath+fw.target, body)
	if err != nil {
		writeError(w, http.StatusBadRequest, proxyCodeBadPath, "Invalid path")
		return
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if fw.body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength = int64(len(fw.body))
	}
	// The browser's correlation id is kept when it is a plain UUID.
	corr := r.Header.Get("X-Correlation-Id")
	if id, err := uuid.Parse(corr); err != nil || len(corr) != 36 {
		corr = uuid.NewString()
	} else {
		corr = id.String()
	}
	req.Header.Set("X-Correlation-Id", corr)
	if key := r.Header.Get("Idempotency-Key"); key != "" && fw.body != nil {
		if len(key) > 256 || strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			writeError(w, http.StatusBadRequest, codeBadRequest, "Invalid Idempotency-Key")
			return
		}
		// Keys are scoped to the user, so one user can never replay
		// another's answer by sending the same key.
		req.Header.Set("Idempotency-Key", uuid.NewSHA1(proxyIdempotencySpace, []byte(fw.userID+"\x00"+key)).String())
	}

	resp, err := c.http.Do(req)
	if err != nil {
		p.sendFailed(w, r, err)
		return
	}
	defer resp.Body.Close()
	refused, peeked := workerRefusedSignature(resp)
	if refused {
		// The worker refused the proxy's own signature: a server
		// misconfiguration (secret, scheme, clock), not something the
		// browser can act on; a 401 would send its user to sign in again.
		c.logger.LogAttrs(ctx, slog.LevelError, "sheen: proxy: the worker refused the proxy's signature; check the secret, the signing scheme and the clock",
			slog.Int("status", resp.StatusCode), slog.String("method", fw.route.method), slog.String("path", c.basePath+pathOnly(fw.target)))
		writeError(w, http.StatusBadGateway, proxyCodeSigning, "The worker refused the proxy's request")
		return
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(peeked), resp.Body), resp.Body}
	if resp.StatusCode == http.StatusPaymentRequired ||
		fw.route.method == http.MethodPost && resp.StatusCode/100 == 2 && !strings.HasPrefix(fw.target, "/v1/billing/") {
		if fw.userID != "" {
			p.billing.InvalidateBalance(fw.userID)
		}
	}

	h := w.Header()
	for k, vs := range resp.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-ratelimit-") || strings.HasPrefix(lk, "ratelimit") || lk == "retry-after" || lk == "x-correlation-id" {
			h[k] = append([]string(nil), vs...)
		}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		if mt, _, _ := mime.ParseMediaType(ct); mt == "application/json" || strings.HasSuffix(mt, "+json") {
			h.Set("Content-Type", ct)
		} else {
			h.Set("Content-Type", "text/plain; charset=utf-8")
		}
	}
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(resp.StatusCode)
	streamBody(ctx, w, resp.Body)
}

// workerRefusedSignature reports whether the worker answered with one of
// its signature refusals (401, or a MISSING_SIGNATURE, INVALID_SIGNATURE,
// TIMESTAMP_OUT_OF_RANGE or REPLAY_ATTACK_DETECTED code). It reads at most a
// few KiB of an error body to find the code and returns what it read, to be
// sent on when the answer is anything else.
func workerRefusedSignature(resp *http.Response) (bool, []byte) {
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return true, nil
	case http.StatusForbidden, http.StatusRequestTimeout, http.StatusConflict:
	default:
		return false, nil
	}
	peek, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	switch newAPIError(resp.StatusCode, nil, peek).Code {
	case CodeMissingSignature, CodeInvalidSignature, CodeTimestampOutOfRange, CodeReplayAttackDetected:
		return true, peek
	}
	return false, peek
}

func pathOnly(target string) string {
	p, _, _ := strings.Cut(target, "?")
	return p
}

// pausedFor is how long the client's limiter will send nothing: the rest of
// a pause after a 429, or of a window whose quota the worker said is used up.
func (p *proxy) pausedFor() time.Duration {
	snap := p.c.limiter.snapshot()
	now := p.c.clock.Now()
	var wait time.Duration
	if !snap.PausedUntil.IsZero() {
		wait = snap.PausedUntil.Sub(now)
	}
	if snap.Remaining == 0 && !snap.Reset.IsZero() {
		wait = max(wait, snap.Reset.Sub(now))
	}
	return wait
}

// proxyIdempotencySpace is the UUID namespace of user-scoped idempotency keys.
var proxyIdempotencySpace = uuid.MustParse("6f3a1c52-9d2e-4b7a-8c15-0e4d7b9a2f61")

// streamBody copies a response body to the browser as it arrives, flushing
// each piece, in a fixed buffer. When the worker's body breaks off, the
// connection to the browser is aborted so the cut cannot pass for a whole
// answer.
func streamBody(ctx context.Context, w http.ResponseWriter, body io.Reader) {
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the browser went away
			}
			_ = rc.Flush()
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			panic(http.ErrAbortHandler)
		}
	}
}

// sendFailed answers for a request that got no response from the worker.
func (p *proxy) sendFailed(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the browser went away; nobody is listening
	}
	var rl *RateLimitError
	if errors.As(err, &rl) {
		if rl.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(rl.RetryAfter.Seconds())), 10))
		}
		writeError(w, http.StatusTooManyRequests, proxyCodeRateLimited, "Too many requests; try again later")
		return
	}
	p.c.logger.LogAttrs(r.Context(), slog.LevelWarn, "sheen: proxy: worker unreachable",
		slog.String("method", r.Method), slog.String("error", redactedError(err)))
	writeError(w, http.StatusBadGateway, proxyCodeUnavailable, "The worker could not be reached")
}
