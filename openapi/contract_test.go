package openapi_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/openapi"
	"github.com/sheenapps/sheen-go/sheenhttp"
	"github.com/sheenapps/sheen-go/sheentest"
)

// notYetInSDK lists operations of the contract that the SDK does not call
// yet: they may be missing from sheen.Routes() (and only they). Remove an
// entry once its route constant lands.
var notYetInSDK = []string{"POST /generate"}

func load(t *testing.T) *openapi.Contract {
	t.Helper()
	c, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The document parses as OpenAPI 3.1, validates, and names each
// operation's SDK constant.
func TestDocumentLoads(t *testing.T) {
	c := load(t)
	if v := c.Document().OpenAPI; !strings.HasPrefix(v, "3.1") {
		t.Errorf("openapi: %q, want 3.1.x", v)
	}
	if len(c.Patterns()) < len(sheen.Routes()) {
		t.Errorf("%d operations for %d SDK routes", len(c.Patterns()), len(sheen.Routes()))
	}
	// An edited document that breaks a rule of the x- extensions is refused.
	bad := strings.Replace(string(openapi.Document()), "client: {SigningBodyPath: v2.1, SigningTimestamp: v1, SigningDual: dual}",
		"client: {SigningBodyPath: v2.1, SigningTimestamp: v9, SigningDual: dual}", 1)
	if _, err := openapi.Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), "v9") {
		t.Errorf("a scheme name x-sheen-signing does not define: %v", err)
	}
	if _, err := openapi.Parse([]byte(strings.Replace(string(openapi.Document()), "openapi: 3.1.0", "openapi: 3.0.3", 1))); err == nil {
		t.Error("a 3.0 document is accepted")
	}
}

// The SDK's route table and the contract name the same routes: a route in
// one and not the other fails. The route constants' names are the
// operations' x-sheen-route, and the proxy's defaults agree with the
// operations on bodies and on where the user id travels.
func TestRoutesMatchTheSDK(t *testing.T) {
	c := load(t)
	doc := c.Patterns()
	for _, r := range sheen.Routes() {
		if c.Operation(r) == nil {
			t.Errorf("sheen.Routes() has %q, the contract does not", r)
		}
	}
	for _, p := range doc {
		if !slices.Contains(sheen.Routes(), p) && !slices.Contains(notYetInSDK, p) {
			t.Errorf("the contract has %q, sheen.Routes() does not", p)
		}
	}
	for _, p := range notYetInSDK {
		if c.Operation(p) == nil {
			t.Errorf("notYetInSDK lists %q, which the contract does not have", p)
		} else if !slices.Contains(sheen.Routes(), p) {
			t.Logf("%s is in the contract and not yet in sheen.Routes()", p)
		}
	}

	consts := routeConstants(t)
	for name, pattern := range consts {
		op := c.Operation(pattern)
		if op == nil {
			t.Errorf("routes.go's %s = %q is not in the contract", name, pattern)
		} else if op.Route != name {
			t.Errorf("%s: x-sheen-route is %q, routes.go calls it %s", pattern, op.Route, name)
		}
	}
	for _, p := range doc {
		op := c.Operation(p)
		if got, ok := consts[op.Route]; ok && got != p {
			t.Errorf("x-sheen-route %s is %q in the contract and %q in routes.go", op.Route, p, got)
		}
	}

	for _, r := range sheenhttp.DefaultProxyRoutes() {
		op := c.Operation(r.Pattern)
		if op == nil {
			t.Errorf("DefaultProxyRoutes has %q, the contract does not", r.Pattern)
			continue
		}
		if r.Body != op.HasBody {
			t.Errorf("%s: the proxy's Body is %v, the contract's request body %v", r.Pattern, r.Body, op.HasBody)
		}
		if r.UserQuery != slices.Contains(op.RequiredQuery, "userId") {
			t.Errorf("%s: the proxy's UserQuery is %v, the contract's required query %q", r.Pattern, r.UserQuery, op.RequiredQuery)
		}
		userPath := strings.Contains(r.Pattern, "{userId}")
		if r.Unowned == (userPath || r.UserQuery || r.Body) {
			t.Errorf("%s: Unowned %v, but a user id travels in the path %v, query %v or body %v", r.Pattern, r.Unowned, userPath, r.UserQuery, r.Body)
		}
	}
}

// routeConstants reads routes.go's Route* constants: name -> pattern.
func routeConstants(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../routes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING || !strings.HasPrefix(n.Name, "Route") {
					continue
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				out[n.Name] = v
			}
		}
	}
	if len(out) < len(sheen.Routes()) {
		t.Fatalf("read %d Route constants from routes.go, sheen.Routes() has %d", len(out), len(sheen.Routes()))
	}
	return out
}

// Every golden fixture of sheentest is an answer the contract allows: those
// of a route for that route, the refusals any route can give for every /v1
// route.
func TestFixturesMatchTheContract(t *testing.T) {
	c := load(t)
	n := 0
	for _, f := range sheentest.Fixtures() {
		if f.Route == sheentest.RouteStore {
			continue // the object store is not the Worker API
		}
		if f.Body == nil {
			t.Errorf("fixture %s has no body", f.Name)
			continue
		}
		h := f.Header.Clone()
		if h == nil {
			h = http.Header{}
		}
		h.Set("Content-Type", f.ContentType)
		routes := []string{f.Route}
		if f.Route == "" {
			routes = slices.DeleteFunc(c.Patterns(), func(p string) bool { return !strings.Contains(p, " /v1/") })
		}
		for _, r := range routes {
			n++
			if err := c.ValidateAnswer(r, f.Status, h, f.Body); err != nil {
				t.Errorf("fixture %s (%s): %v", f.Name, f.About, err)
			}
		}
	}
	if n < 40 {
		t.Errorf("validated %d fixture answers; the fixtures went missing?", n)
	}
}
