package sheenhttp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"unicode"

	"github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/wire"
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

// proxyRoute is a ProxyRoute parsed for matching.
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

// parseProxyRoute checks a route and parses its pattern.
func parseProxyRoute(rt ProxyRoute) (*proxyRoute, error) {
	method, p, err := checkProxyRoute(rt)
	if err != nil {
		return nil, err
	}
	pr := &proxyRoute{ProxyRoute: rt, method: method}
	names := map[string]bool{}
	for _, s := range strings.Split(p[1:], "/") {
		seg, err := parseRouteSeg(s, names)
		if err != nil {
			return nil, err
		}
		pr.segs = append(pr.segs, seg)
	}
	if rt.Unowned && names["userId"] {
		return nil, errors.New("a route with a {userId} is not Unowned")
	}
	return pr, nil
}

// checkProxyRoute checks what a route says besides its segments, and
// returns its method and path.
func checkProxyRoute(rt ProxyRoute) (method, p string, err error) {
	method, p, ok := strings.Cut(rt.Pattern, " ")
	if !ok {
		return "", "", errors.New(`want "METHOD /v1/path"`)
	}
	switch method {
	case http.MethodGet, http.MethodDelete:
		if rt.Body {
			return "", "", errors.New(method + " routes carry no body")
		}
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return "", "", fmt.Errorf("method %q is not GET, POST, PUT, PATCH or DELETE", method)
	}
	if !strings.HasPrefix(p, "/v1/") || strings.HasSuffix(p, "/") {
		return "", "", errors.New("the path must start with /v1/ and not end with /")
	}
	if len(rt.BodyIDs) > 0 && !rt.Body {
		return "", "", errors.New("BodyIDs needs Body")
	}
	for k := range rt.BodyIDs {
		if isUserKey(k) {
			return "", "", errors.New("BodyIDs cannot name the user id")
		}
	}
	return method, p, nil
}

// parseRouteSeg parses one segment of a pattern; names holds the wildcards
// seen so far.
func parseRouteSeg(s string, names map[string]bool) (routeSeg, error) {
	name, ok := strings.CutPrefix(s, "{")
	if !ok {
		if s == "" || s == "." || s == ".." || strings.ContainsFunc(s, func(r rune) bool { return !isUnreserved(r) }) {
			return routeSeg{}, fmt.Errorf("bad literal segment %q", s)
		}
		return routeSeg{lit: s}, nil
	}
	name, ok = strings.CutSuffix(name, "}")
	if !ok || !isWildcardName(name) || names[name] {
		return routeSeg{}, fmt.Errorf("bad or repeated wildcard %q", s)
	}
	names[name] = true
	seg := routeSeg{wild: name}
	if name != "userId" {
		seg.kind = ResourceKind(strings.TrimSuffix(name, "Id"))
	}
	return seg, nil
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
	// Like strings.Contains(lower-cased k with only its a-z0-9 kept,
	// "userid"), without building that string: "userid" repeats none of
	// its prefixes, so a mismatch restarts the search at that letter.
	const want = "userid"
	matched := 0
	for _, r := range k {
		r = unicode.ToLower(r)
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9') {
			continue
		}
		if byte(r) != want[matched] {
			matched = 0
		}
		if byte(r) == want[matched] {
			matched++
			if matched == len(want) {
				return true
			}
		}
	}
	return false
}

// proxyRefusal is an answer the proxy gives itself.
type proxyRefusal struct {
	status  int
	code    sheen.ErrorCode
	message string
}

func refuse(status int, code sheen.ErrorCode, message string) *proxyRefusal {
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

// check runs every check in turn: session, cross-origin, path and route,
// user id in path, query and body, resource ownership.
func (p *proxy) check(w http.ResponseWriter, r *http.Request) (*forward, *proxyRefusal) {
	userID, no := p.user(r)
	if no != nil {
		return nil, no
	}
	if err := p.cop.Check(r); err != nil {
		return nil, refuse(http.StatusForbidden, proxyCodeCrossOrigin, "Cross-origin request refused")
	}
	route, segs, no := p.match(r)
	if no != nil {
		return nil, no
	}
	fw := &forward{route: route, userID: userID}
	var sb strings.Builder
	if no := fw.writePath(&sb, segs); no != nil {
		return nil, no
	}
	if no := fw.writeQuery(&sb, r.URL.RawQuery); no != nil {
		return nil, no
	}
	fw.target = sb.String()
	if no := p.readBody(w, r, fw); no != nil {
		return nil, no
	}
	return fw, p.authorizeResources(r, fw)
}

// user asks Authorize who is signed in.
func (p *proxy) user(r *http.Request) (string, *proxyRefusal) {
	userID, err := p.authorize(r)
	if err != nil || userID == "" {
		return "", refuse(http.StatusUnauthorized, proxyCodeUnauthorized, "Sign in to continue")
	}
	if _, err := escapeID("userId", userID); err != nil {
		p.c.Logger.LogAttrs(r.Context(), slog.LevelError, "sheenhttp: proxy: Authorize returned an unusable user id", slog.String("error", err.Error()))
		return "", refuse(http.StatusInternalServerError, codeInternal, "Internal error")
	}
	return userID, nil
}

// writePath writes the path sent to the worker, rebuilt from the route with
// every id escaped, and notes the resources it names. segs are the
// request's decoded segments.
func (fw *forward) writePath(sb *strings.Builder, segs []string) *proxyRefusal {
	for i, seg := range fw.route.segs {
		sb.WriteByte('/')
		if seg.lit != "" {
			sb.WriteString(seg.lit)
			continue
		}
		v := segs[i]
		if seg.kind == "" && v != fw.userID {
			return refuse(http.StatusForbidden, proxyCodeForbidden, "The user id in the path is not yours")
		}
		esc, err := escapeID(seg.wild, v)
		if err != nil {
			return refuse(http.StatusBadRequest, proxyCodeBadPath, "Invalid "+seg.wild)
		}
		sb.WriteString(esc)
		if seg.kind != "" {
			fw.resources = append(fw.resources, resourceRef{seg.kind, v})
		}
	}
	return nil
}

// writeQuery writes the query sent to the worker: the browser's,
// re-encoded, with the user's id and nobody else's.
func (fw *forward) writeQuery(sb *strings.Builder, raw string) *proxyRefusal {
	if raw == "" && !fw.route.UserQuery {
		return nil
	}
	query, err := url.ParseQuery(raw)
	if err != nil {
		return refuse(http.StatusBadRequest, codeBadRequest, "Invalid query string")
	}
	for k, vs := range query {
		if !isUserKey(k) {
			continue
		}
		for _, v := range vs {
			if v != fw.userID {
				return refuse(http.StatusForbidden, proxyCodeForbidden, "The user id in the query is not yours")
			}
		}
		delete(query, k)
	}
	if fw.route.UserQuery {
		query.Set("userId", fw.userID)
	}
	if q := query.Encode(); q != "" {
		sb.WriteByte('?')
		sb.WriteString(q)
	}
	return nil
}

// authorizeResources asks AuthorizeResource about every resource the
// request names.
func (p *proxy) authorizeResources(r *http.Request, fw *forward) *proxyRefusal {
	if p.authorizeResource == nil {
		return nil
	}
	for _, res := range fw.resources {
		if err := p.authorizeResource(r, fw.userID, res.kind, res.id); err != nil {
			if errors.Is(err, sheen.ErrNotFound) {
				return refuse(http.StatusNotFound, proxyCodeNotFound, "Not found")
			}
			return refuse(http.StatusForbidden, proxyCodeForbidden, "That "+string(res.kind)+" is not yours")
		}
	}
	return nil
}

// match finds the route of a request and returns it with the request's
// decoded path segments.
func (p *proxy) match(r *http.Request) (*proxyRoute, []string, *proxyRefusal) {
	segs, no := p.pathSegments(r)
	if no != nil {
		return nil, nil, no
	}
	for _, rt := range p.routes {
		if rt.method == r.Method && rt.matches(segs) {
			return rt, segs, nil
		}
	}
	return nil, nil, refuse(http.StatusNotFound, proxyCodeNotFound, "Not found")
}

// matches reports whether the decoded segments fit the route's.
func (rt *proxyRoute) matches(segs []string) bool {
	if len(rt.segs) != len(segs) {
		return false
	}
	for i, seg := range rt.segs {
		if seg.lit != "" && seg.lit != segs[i] {
			return false
		}
	}
	return true
}

// pathSegments checks the raw path (as received, and as net/url escapes
// it), strips the prefix, and decodes each segment, refusing any that could
// be read as more or less than one segment.
func (p *proxy) pathSegments(r *http.Request) ([]string, *proxyRefusal) {
	badPath := func() *proxyRefusal { return refuse(http.StatusBadRequest, proxyCodeBadPath, "Invalid path") }
	if raw, _, _ := strings.Cut(r.RequestURI, "?"); strings.HasPrefix(raw, "/") && checkRawProxyPath(raw) != nil {
		return nil, badPath()
	}
	raw := r.URL.EscapedPath()
	if checkRawProxyPath(raw) != nil {
		return nil, badPath()
	}
	rest, ok := strings.CutPrefix(raw, p.prefix)
	if !ok || !strings.HasPrefix(rest, "/") {
		return nil, refuse(http.StatusNotFound, proxyCodeNotFound, "Not found")
	}
	segs := strings.Split(rest[1:], "/")
	for i, s := range segs {
		d, err := url.PathUnescape(s)
		if err != nil || d == "" || d == "." || d == ".." || strings.ContainsAny(d, "/\\") ||
			strings.ContainsFunc(d, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, badPath()
		}
		segs[i] = d
	}
	if decoded := "/" + strings.Join(segs, "/"); path.Clean(decoded) != decoded {
		return nil, badPath()
	}
	return segs, nil
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
		if i+2 >= len(raw) || !wire.IsHex(raw[i+1]) || !wire.IsHex(raw[i+2]) {
			return errors.New("refused path")
		}
		if b := wire.Unhex(raw[i+1])<<4 | wire.Unhex(raw[i+2]); b < 0x20 || b == 0x7f {
			return errors.New("refused path")
		}
	}
	return nil
}
