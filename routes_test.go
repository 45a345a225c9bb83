package sheen_test

import (
	"slices"
	"testing"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheenhttp"
)

// The route constants and the proxy's default allowlist name the same
// routes: a route added to one and forgotten in the other would leave the
// proxy refusing a call the SDK makes, or a Fault.Route naming nothing.
func TestRoutesAreTheProxyDefaults(t *testing.T) {
	var proxied []string
	for _, r := range sheenhttp.DefaultProxyRoutes() {
		proxied = append(proxied, r.Pattern)
	}
	routes := sheen.Routes()
	slices.Sort(proxied)
	slices.Sort(routes)
	if !slices.Equal(routes, proxied) {
		t.Fatalf("sheen.Routes() and DefaultProxyRoutes differ:\nroutes %q\nproxy  %q", routes, proxied)
	}
	if len(slices.Compact(slices.Clone(routes))) != len(routes) {
		t.Fatalf("a route is listed twice: %q", routes)
	}
}
