package sheentest

import (
	"regexp"
	"strings"
)

// RouteStore is the route of the fake object store that download links
// point at, for a Fault on downloads (ResetAfterBytes, TruncateAfterBytes,
// a 403). The worker's own routes are the sheen.Route* constants.
const RouteStore = "GET /_store/{key}"

// MatchRoute splits a route pattern such as sheen.RouteBalance into its
// method and a regular expression matching the request URLs of the route,
// with or without a query and whatever the base URL. Each {name} wildcard is
// a capture group, in order. It is what httpmock's RegisterRegexpResponder
// takes:
//
//	method, url := sheentest.MatchRoute(sheen.RouteBalance)
//	mock.RegisterRegexpResponder(method, url, sheentest.FixtureNamed("balance").Respond)
//
// and httpmock.MustGetSubmatch(req, 1) then reads the user id. A pattern
// without a method matches every method ("").
func MatchRoute(route string) (method string, url *regexp.Regexp) {
	path := route
	if m, p, ok := strings.Cut(route, " "); ok {
		method, path = m, p
	}
	var b strings.Builder
	for i, seg := range strings.Split(path, "/") {
		if i > 0 {
			b.WriteString("/")
		}
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			b.WriteString(`([^/?#]+)`)
			continue
		}
		b.WriteString(regexp.QuoteMeta(seg))
	}
	// Anchored at the end only: httpmock tries the full URL, then the path
	// alone, each with and without the query.
	return method, regexp.MustCompile(b.String() + `(?:\?[^#]*)?\z`)
}
