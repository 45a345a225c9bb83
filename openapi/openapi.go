// Package openapi holds the Worker API's machine-readable contract,
// worker-api.yaml (OpenAPI 3.1), and checks HTTP exchanges against it: the
// requests a client sends and the answers a worker gives.
//
// It is test tooling. The SDK's tests run its flows through a Transport
// that validates every request the SDK sends and every answer the fake
// worker (sheentest) gives, and validate sheentest's golden fixtures with
// ValidateAnswer; a request or answer that does not match fails with the
// path of the offending field:
//
//	c, err := openapi.Load()
//	tr := &openapi.Transport{Contract: c, BaseURL: srv.URL, Signing: sheen.SigningDual, Report: func(err error) { t.Error(err) }}
//	client, err := srv.Client(sheen.WithHTTPClient(&http.Client{Transport: tr}))
//
// Schemas are checked with github.com/getkin/kin-openapi (openapi3filter, with
// its JSON Schema 2020-12 validator for OpenAPI 3.1). Every format the
// document uses is asserted, not only annotated: date and date-time (RFC
// 3339) by kin-openapi, uri (RFC 3986, absolute) by this package; Parse
// refuses a document that uses a format nothing enforces. A violation may
// quote the value it refuses, never the query of one (it may carry a
// signature).
//
// The rules OpenAPI cannot state are x- extensions of the document, checked
// here: the signing scheme a route expects (x-sheen-schemes,
// x-sheen-signing), the body that must equal JavaScript's JSON.stringify of
// itself (x-json-stringify-body), compact JSON bodies, the idempotency
// header a client always sends (x-idempotency), no query parameter the
// route does not declare, answers that may arrive empty (x-sheen-empty-body).
package openapi

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/jsonx"
)

//go:embed worker-api.yaml
var document []byte

// Document returns the contract's text (worker-api.yaml), as embedded.
func Document() []byte { return bytes.Clone(document) }

// Contract is the parsed and validated document with its operations. It is
// safe for concurrent use.
type Contract struct {
	doc     *openapi3.T
	ops     map[string]*Operation // by pattern
	mux     *http.ServeMux
	schemes map[string]scheme // x-sheen-signing schemes by name
}

// Operation is one route of the contract.
type Operation struct {
	// Pattern is the route in net/http.ServeMux syntax, as the SDK names it:
	// "GET /v1/billing/balance/{userId}".
	Pattern string
	// Route is the name of the SDK's constant for it (x-sheen-route), such
	// as "RouteBalance".
	Route string
	// Method and Path are the operation's method and path template.
	Method, Path string
	// HasBody says the operation takes a request body.
	HasBody bool
	// Query lists the query parameters the operation declares, and
	// RequiredQuery those it requires.
	Query, RequiredQuery []string
	// StringifyBody is x-json-stringify-body: the body must equal
	// JSON.stringify(JSON.parse(body)).
	StringifyBody bool
	// InlineV1Check is x-inline-v1-check: the deployed handler checks a v1
	// signature itself.
	InlineV1Check bool

	op        *openapi3.Operation
	item      *openapi3.PathItem
	clientFor map[string]string // sheen.Signing constant name -> scheme name
	idemKey   string            // header a client always sends, if any
	segments  []string          // path template split on "/"
}

// scheme is one signing scheme of x-sheen-signing.
type scheme struct {
	headers  []string // sent every time, lowercase
	optional []string // may be sent
}

// signingNames maps the SDK's schemes to the names the document uses in
// x-sheen-schemes.client.
var signingNames = map[sheen.Signing]string{
	sheen.SigningBodyPath:  "SigningBodyPath",
	sheen.SigningTimestamp: "SigningTimestamp",
	sheen.SigningDual:      "SigningDual",
}

var loadOnce = sync.OnceValues(func() (*Contract, error) { return Parse(document) })

// Load returns the contract of the embedded worker-api.yaml, parsed and
// validated once (it is read-only and shared).
func Load() (*Contract, error) { return loadOnce() }

// Parse parses and validates an OpenAPI document of the Worker API (the
// embedded one, or an edited copy in a test).
func Parse(data []byte) (*Contract, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("openapi: load: %w", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		return nil, fmt.Errorf("openapi: the document is OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("openapi: invalid document: %w", err)
	}
	c := &Contract{doc: doc, ops: map[string]*Operation{}, mux: http.NewServeMux()}
	if c.schemes, err = parseSchemes(doc.Extensions["x-sheen-signing"]); err != nil {
		return nil, err
	}
	if err := checkFormats(doc); err != nil {
		return nil, err
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			o, err := c.newOperation(method, path, item, op)
			if err != nil {
				return nil, err
			}
			c.ops[o.Pattern] = o
			c.mux.Handle(o.Pattern, http.NotFoundHandler())
		}
	}
	return c, nil
}

func parseSchemes(ext any) (map[string]scheme, error) {
	m, _ := ext.(map[string]any)
	list, _ := m["schemes"].(map[string]any)
	if len(list) == 0 {
		return nil, errors.New("openapi: x-sheen-signing.schemes is missing")
	}
	out := map[string]scheme{}
	for name, v := range list {
		s, _ := v.(map[string]any)
		sc := scheme{headers: stringList(s["headers"]), optional: stringList(s["optional"])}
		if len(sc.headers) == 0 {
			return nil, fmt.Errorf("openapi: signing scheme %q lists no headers", name)
		}
		out[name] = sc
	}
	return out, nil
}

func stringList(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, strings.ToLower(s))
		}
	}
	return out
}

func (c *Contract) newOperation(method, path string, item *openapi3.PathItem, op *openapi3.Operation) (*Operation, error) {
	o := &Operation{
		Pattern: method + " " + path, Method: method, Path: path, op: op, item: item,
		HasBody: op.RequestBody != nil, segments: strings.Split(path, "/"),
	}
	o.Route, _ = op.Extensions["x-sheen-route"].(string)
	if o.Route == "" {
		return nil, fmt.Errorf("openapi: %s has no x-sheen-route", o.Pattern)
	}
	o.StringifyBody, _ = op.Extensions["x-json-stringify-body"].(bool)
	_, o.InlineV1Check = op.Extensions["x-inline-v1-check"]
	for _, p := range append(slices.Clone(item.Parameters), op.Parameters...) {
		if p.Value != nil && p.Value.In == openapi3.ParameterInQuery {
			o.Query = append(o.Query, p.Value.Name)
			if p.Value.Required {
				o.RequiredQuery = append(o.RequiredQuery, p.Value.Name)
			}
		}
	}
	schemes, _ := op.Extensions["x-sheen-schemes"].(map[string]any)
	client, _ := schemes["client"].(map[string]any)
	o.clientFor = map[string]string{}
	for _, name := range signingNames {
		s, _ := client[name].(string)
		if _, ok := c.schemes[s]; !ok {
			return nil, fmt.Errorf("openapi: %s: x-sheen-schemes.client.%s names no scheme of x-sheen-signing (%q)", o.Pattern, name, s)
		}
		o.clientFor[name] = s
	}
	if idem, ok := op.Extensions["x-idempotency"].(map[string]any); !ok {
		return nil, fmt.Errorf("openapi: %s has no x-idempotency", o.Pattern)
	} else if idem["clientSends"] == "always" {
		o.idemKey, _ = idem["header"].(string)
	}
	return o, nil
}

// Document returns the parsed document. Treat it as read-only.
func (c *Contract) Document() *openapi3.T { return c.doc }

// Patterns returns the pattern of every operation, sorted.
func (c *Contract) Patterns() []string {
	out := make([]string, 0, len(c.ops))
	for p := range c.ops {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Operation returns the operation of a pattern such as
// "GET /v1/billing/balance/{userId}", or nil.
func (c *Contract) Operation(pattern string) *Operation { return c.ops[pattern] }

// Match returns the operation a request goes to, by method and escaped
// path (without the base URL's path), and its path parameters as they
// appear in the path (escaped, as the worker's router counts them).
func (c *Contract) Match(method, escapedPath string) (*Operation, map[string]string, bool) {
	u := &url.URL{Path: escapedPath}
	if p, err := url.PathUnescape(escapedPath); err == nil {
		u = &url.URL{Path: p, RawPath: escapedPath}
	}
	_, pattern := c.mux.Handler(&http.Request{Method: method, URL: u, Host: "worker"})
	op := c.ops[pattern]
	if op == nil {
		return nil, nil, false
	}
	got := strings.Split(escapedPath, "/")
	params := map[string]string{}
	for i, seg := range op.segments {
		if strings.HasPrefix(seg, "{") && i < len(got) {
			params[strings.Trim(seg, "{}")] = got[i]
		}
	}
	return op, params, true
}

// Violation is one way a request or an answer breaks the contract.
type Violation struct {
	// Route is the operation's pattern, or the method and path of a
	// request the contract has no route for.
	Route string
	// Status is the answer's status; 0 for a request.
	Status int
	// In says where: "route", "path", "query", "header", "body", "status"
	// or "signing".
	In string
	// Field names what is wrong: a JSON pointer into the body
	// ("/totals/total_seconds"), or a parameter or header name.
	Field string
	// Reason says why.
	Reason string
}

// Error implements error:
// "GET /v1/billing/balance/{userId} answer 200: body /totals: ...".
func (v *Violation) Error() string {
	var b strings.Builder
	b.WriteString(v.Route)
	if v.Status != 0 {
		b.WriteString(" answer ")
		b.WriteString(strconv.Itoa(v.Status))
	} else {
		b.WriteString(" request")
	}
	b.WriteString(": ")
	b.WriteString(v.In)
	if v.Field != "" {
		b.WriteString(" ")
		b.WriteString(v.Field)
	}
	b.WriteString(": ")
	b.WriteString(v.Reason)
	return b.String()
}

// ValidateRequest checks a request as it goes on the wire, with req.URL
// holding the route's path (the base URL's path removed) and body its exact
// bytes, from a client that signs with scheme. It returns nil or the
// violations joined (each a *Violation; see errors.As and Violations).
func (c *Contract) ValidateRequest(req *http.Request, body []byte, scheme sheen.Signing) error {
	op, params, ok := c.Match(req.Method, req.URL.EscapedPath())
	if !ok {
		return &Violation{Route: req.Method + " " + req.URL.EscapedPath(), In: "route", Reason: "the contract has no such route"}
	}
	r := req.Clone(context.Background())
	r.Body = http.NoBody
	if len(body) > 0 {
		r.Body = readCloser{bytes.NewReader(body)}
	}
	r.ContentLength = int64(len(body))
	input := &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params, Route: op.route(c.doc),
		Options: &openapi3filter.Options{
			MultiError: true, RejectWhenRequestBodyNotSpecified: true,
			AuthenticationFunc: authenticate, SchemaValidationOptions: schemaOptions,
		},
	}
	var errs []error
	if err := openapi3filter.ValidateRequest(context.Background(), input); err != nil {
		errs = append(errs, c.convert(op.Pattern, 0, err, secretsOf(req.Header), valueQueries(body))...)
	}
	errs = append(errs, op.checkQuery(req.URL.Query())...)
	errs = append(errs, c.checkSigning(op, req.Header, scheme)...)
	errs = append(errs, op.checkBody(req.Header, body)...)
	if op.idemKey != "" && req.Header.Get(op.idemKey) == "" {
		errs = append(errs, &Violation{Route: op.Pattern, In: "header", Field: op.idemKey, Reason: "a client always sends it on this route (x-idempotency)"})
	}
	return errors.Join(errs...)
}

// ValidateResponse checks the answer to req (as in ValidateRequest): its
// status, headers and body.
func (c *Contract) ValidateResponse(req *http.Request, status int, header http.Header, body []byte) error {
	op, _, ok := c.Match(req.Method, req.URL.EscapedPath())
	if !ok {
		return &Violation{Route: req.Method + " " + req.URL.EscapedPath(), Status: status, In: "route", Reason: "the contract has no such route"}
	}
	return c.validateAnswer(op, status, header, body, false)
}

// ValidateAnswer checks an answer of the route pattern (such as
// sheen.RouteBalance) without its request: for golden fixtures.
func (c *Contract) ValidateAnswer(pattern string, status int, header http.Header, body []byte) error {
	op := c.ops[pattern]
	if op == nil {
		return &Violation{Route: pattern, Status: status, In: "route", Reason: "the contract has no such route"}
	}
	return c.validateAnswer(op, status, header, body, false)
}

// validateAnswer checks an answer of op; headOnly leaves its body out (a
// reader stopped before its end).
func (c *Contract) validateAnswer(op *Operation, status int, header http.Header, body []byte, headOnly bool) error {
	req, _ := http.NewRequest(op.Method, "http://worker"+op.Path, nil)
	opts := &openapi3filter.Options{MultiError: true, IncludeResponseStatus: true, ExcludeResponseBody: headOnly, SchemaValidationOptions: schemaOptions}
	var errs []error
	ref := op.op.Responses.Status(status)
	if ref != nil && ref.Value != nil && !headOnly {
		empty := len(bytes.TrimSpace(body)) == 0
		ct := header.Get("Content-Type")
		switch {
		case empty && ref.Value.Extensions["x-sheen-empty-body"] == true:
			opts.ExcludeResponseBody = true
		case empty && len(ref.Value.Content) > 0:
			errs = append(errs, &Violation{Route: op.Pattern, Status: status, In: "body", Reason: "empty, and this answer has a body (no x-sheen-empty-body)"})
			opts.ExcludeResponseBody = true
		case isJSON(ct) && !json.Valid(body):
			errs = append(errs, &Violation{Route: op.Pattern, Status: status, In: "body", Reason: "not one JSON document"})
			opts.ExcludeResponseBody = true
		}
	}
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, Route: op.route(c.doc), Options: opts},
		Status:                 status, Header: header, Options: opts,
	}
	input.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), input); err != nil {
		errs = append(errs, c.convert(op.Pattern, status, err, nil, valueQueries(body))...)
	}
	return errors.Join(errs...)
}

// Violations returns the *Violation values inside err (as joined by the
// Validate methods), in order.
func Violations(err error) []*Violation {
	var out []*Violation
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *Violation:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		default:
			var v *Violation
			if errors.As(err, &v) {
				out = append(out, v)
			}
		}
	}
	walk(err)
	return out
}

func (o *Operation) route(doc *openapi3.T) *routers.Route {
	return &routers.Route{Spec: doc, Path: o.Path, PathItem: o.item, Method: o.Method, Operation: o.op}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// authenticate is the security check of openapi3filter. It passes every
// request: the document's security requirements are alternatives (any
// scheme's headers satisfy them), so the exact headers of the scheme a
// route expects from a client are checked by checkSigning instead, and
// their formats by the header parameters.
func authenticate(context.Context, *openapi3filter.AuthenticationInput) error { return nil }

// checkQuery refuses query parameters the route does not declare: the
// worker's validation refuses some, and the SDK has no reason to send any.
func (o *Operation) checkQuery(q url.Values) []error {
	var errs []error
	for _, k := range sortedKeys(q) {
		if !slices.Contains(o.Query, k) {
			errs = append(errs, &Violation{Route: o.Pattern, In: "query", Field: k, Reason: "the route declares no such parameter"})
		}
	}
	return errs
}

// checkSigning checks that the request carries exactly the headers of the
// scheme the route expects from a client signing with s.
func (c *Contract) checkSigning(o *Operation, h http.Header, s sheen.Signing) []error {
	name, ok := signingNames[s]
	if !ok {
		return []error{&Violation{Route: o.Pattern, In: "signing", Reason: fmt.Sprintf("unknown client scheme %v", s)}}
	}
	want := o.clientFor[name]
	sc := c.schemes[want]
	var errs []error
	for _, hd := range sc.headers {
		if h.Get(hd) == "" {
			errs = append(errs, &Violation{Route: o.Pattern, In: "signing", Field: hd, Reason: fmt.Sprintf("missing: the %s scheme sends %s (client %s)", want, strings.Join(sc.headers, ", "), name)})
		}
	}
	for _, k := range sortedKeys(h) {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-sheen-") && !slices.Contains(sc.headers, lk) && !slices.Contains(sc.optional, lk) {
			errs = append(errs, &Violation{Route: o.Pattern, In: "signing", Field: lk, Reason: fmt.Sprintf("not part of the %s scheme this route expects from a %s client", want, name)})
		}
	}
	return errs
}

// checkBody applies the body rules OpenAPI cannot state: compact JSON
// without HTML escaping or a trailing newline, and on x-json-stringify-body
// routes the exact text of JSON.stringify(JSON.parse(body)).
func (o *Operation) checkBody(h http.Header, body []byte) []error {
	if len(body) == 0 || !isJSON(h.Get("Content-Type")) {
		return nil
	}
	v := func(reason string) error { return &Violation{Route: o.Pattern, In: "body", Reason: reason} }
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		return []error{v("not JSON: " + err.Error())}
	}
	var errs []error
	if !bytes.Equal(compact.Bytes(), body) {
		errs = append(errs, v("not compact JSON (insignificant whitespace or a trailing newline)"))
	}
	if esc := htmlEscape(body); esc != "" {
		errs = append(errs, v(fmt.Sprintf("HTML-escaped JSON (%s): <, > and & are written literally", esc)))
	}
	if o.StringifyBody {
		want, err := jsonx.Restringify(body)
		switch {
		case err != nil:
			errs = append(errs, v("x-json-stringify-body: "+err.Error()))
		case !bytes.Equal(want, body):
			at := firstDiff(want, body)
			errs = append(errs, v(fmt.Sprintf("x-json-stringify-body: differs from JSON.stringify(JSON.parse(body)) at byte %d (%q, want %q)", at, around(body, at), around(want, at))))
		}
	}
	return errs
}

// htmlEscape returns the first \u003c, \u003e or \u0026 escape inside a
// JSON string of body, or "".
func htmlEscape(body []byte) string {
	in := false
	for i := 0; i < len(body); i++ {
		switch ch := body[i]; {
		case ch == '"':
			in = !in
		case in && ch == '\\' && i+1 < len(body):
			if body[i+1] == 'u' && i+6 <= len(body) {
				switch strings.ToLower(string(body[i+2 : i+6])) {
				case "003c", "003e", "0026":
					return string(body[i : i+6])
				}
			}
			i++ // skip the escaped character
		}
	}
	return ""
}

func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func around(b []byte, at int) string {
	lo, hi := max(0, at-10), min(len(b), at+10)
	return string(b[lo:hi])
}

func isJSON(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// secretsOf returns the values of a request's signature headers, which
// must never appear in an error.
func secretsOf(h http.Header) []string {
	var out []string
	for _, k := range []string{sheen.HeaderSignature, sheen.HeaderSignatureV2, sheen.HeaderNonce} {
		if v := h.Get(k); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// signedQuery matches the query of a URL, which may carry a signature.
// A query already redacted stays as it is.
var signedQuery = regexp.MustCompile(`(https?://[^\s"?]*)\?(?:\[redacted\]|[^\s"]*)`)

// redact removes signature values, the queries of the body's strings
// (valueQueries) and URL queries from a message.
func redact(msg string, secrets, queries []string) string {
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, "[redacted]")
	}
	for _, q := range queries {
		msg = strings.ReplaceAll(msg, q, "?[redacted]")
	}
	return signedQuery.ReplaceAllString(msg, "$1?[redacted]")
}
