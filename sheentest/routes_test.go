package sheentest

import (
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	sheen "github.com/sheenapps/sheen-go"
)

// sample fills a route's wildcards with ids and returns the method, the
// path and the ids in order.
func sample(route string) (method, path string, ids []string) {
	method, p, _ := strings.Cut(route, " ")
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") {
			id := "id-" + strings.Trim(s, "{}")
			segs[i] = id
			ids = append(ids, id)
		}
	}
	return method, strings.Join(segs, "/"), ids
}

// The fake serves exactly the routes the SDK names, under those names:
// sheen.Routes() plus its object store.
func TestServerServesTheSDKRoutes(t *testing.T) {
	srv := NewServer(WithTest(t))
	want := append(sheen.Routes(), RouteStore)
	for _, route := range want {
		method, path, _ := sample(route)
		req, _ := http.NewRequest(method, srv.URL+path+"?userId=u1", nil)
		if _, pattern := srv.mux.Handler(req); pattern != route {
			t.Errorf("%s %s is served as %q, want %q", method, path, pattern, route)
		}
	}
	// And nothing else: a route registered by its literal pattern must be
	// one of them (a route the SDK does not call has no name to use).
	src, err := os.ReadFile("server.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`HandleFunc\("([^"]+)"`).FindAllSubmatch(src, -1) {
		if !slices.Contains(want, string(m[1])) {
			t.Errorf("server.go serves %q, which is neither a sheen.Route* constant nor RouteStore", m[1])
		}
	}
}

// MatchRoute's regexp matches a route's URLs the ways httpmock tries them
// (full URL, path alone, with and without the query), captures the ids,
// and matches no other route's URLs.
func TestMatchRoute(t *testing.T) {
	routes := append(sheen.Routes(), RouteStore)
	for _, route := range routes {
		method, re := MatchRoute(route)
		wantMethod, path, ids := sample(route)
		if method != wantMethod {
			t.Errorf("%s: method %q", route, method)
		}
		for _, u := range []string{"https://worker.test" + path + "?userId=u1&lastEventId=0", path, path + "?userId=u1", "https://worker.test/base" + path} {
			m := re.FindStringSubmatch(u)
			if m == nil {
				t.Errorf("%s: %s does not match %s", route, re, u)
				continue
			}
			if !slices.Equal(m[1:], ids) {
				t.Errorf("%s: %s captured %q, want %q", route, u, m[1:], ids)
			}
		}
		for _, other := range routes {
			otherMethod, otherPath, _ := sample(other)
			if other != route && otherMethod == method && re.MatchString(otherPath) {
				t.Errorf("%s's regexp %s matches %s of %s", route, re, otherPath, other)
			}
		}
	}
	if m, re := MatchRoute("/v1/x/{id}"); m != "" || !re.MatchString("/v1/x/7") {
		t.Errorf("a pattern without a method: %q %s", m, re)
	}
}
