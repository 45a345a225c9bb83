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

// formatCase is a value in a field the document gives a format, and
// whether the contract accepts it.
type formatCase struct {
	format, fixture, route, old, value string
	field                              string // "": accepted
}

// Each format the document uses is enforced: a value that does not have
// the format is refused and named by its field, a value that has it
// passes. The table covers every format the document uses (a format added
// to the document fails here until it has cases).
func TestFormatsEnforced(t *testing.T) {
	c := load(t)
	const link = `"https://worker.test/_store/000000000000000000000000?X-Expires=1768557600&X-Signature=0000000000000000000000000000000000000000000000000000000000000000"`
	uri := func(v, field string) formatCase {
		return formatCase{"uri", "export-project", sheen.RouteExportProject, link, `"` + v + `"`, field}
	}
	dateTime := func(v, field string) formatCase {
		return formatCase{"date-time", "export-project", sheen.RouteExportProject, `"expiresAt": "2026-01-16T10:00:00Z"`, `"expiresAt": "` + v + `"`, field}
	}
	date := func(v, field string) formatCase {
		return formatCase{"date", "usage", sheen.RouteUsage, `"date": "2026-01-15"`, `"date": "` + v + `"`, field}
	}
	cases := []formatCase{
		uri("not a uri at all", "/downloadUrl"),
		uri(":/x?token=abc", "/downloadUrl"),
		uri("/_store/a.zip?X-Signature=abc", "/downloadUrl"), // a relative reference
		uri("worker.test/_store/a.zip", "/downloadUrl"),      // no scheme
		uri("https://worker.test/a b.zip", "/downloadUrl"),
		uri("https://worker.test/caf\u00e9.zip", "/downloadUrl"), // an IRI, not a URI
		uri("https://worker.test/a%zz.zip", "/downloadUrl"),
		uri("https://worker.test/a.zip?sig=%2", "/downloadUrl"),
		uri("https://worker.test/a.zip#x#y", "/downloadUrl"),
		uri("https://worker.test/a%20b.zip?X-Signature=abc&X-Expires=1;x=2#frag", ""),
		uri("https://[::1]:8443/a.zip", ""),
		uri("urn:isbn:0451450523", ""),
		dateTime("tomorrow", "/expiresAt"),
		dateTime("2026-02-30T10:00:00Z", "/expiresAt"),
		dateTime("2026-01-16 10:00:00", "/expiresAt"),
		dateTime("2026-01-16T10:00:00.123+01:00", ""),
		date("2026-13-01", "/daily_trend/0/date"),
		date("15/01/2026", "/daily_trend/0/date"),
		date("2026-01-15T00:00:00Z", "/daily_trend/0/date"),
		date("2026-02-28", ""),
	}
	used, err := openapi.DocumentFormats(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range used {
		refused := slices.ContainsFunc(cases, func(tc formatCase) bool { return tc.format == f && tc.field != "" })
		accepted := slices.ContainsFunc(cases, func(tc formatCase) bool { return tc.format == f && tc.field == "" })
		if !refused || !accepted {
			t.Errorf("the document uses format %q and the table has no value it refuses (%v) or accepts (%v)", f, refused, accepted)
		}
	}
	for _, tc := range cases {
		t.Run(tc.format+" "+tc.value, func(t *testing.T) {
			if !slices.Contains(used, tc.format) {
				t.Fatalf("the document no longer uses format %q (uses %v)", tc.format, used)
			}
			body := string(sheentest.FixtureNamed(tc.fixture).Body)
			if !strings.Contains(body, tc.old) {
				t.Fatalf("fixture %s has no %s", tc.fixture, tc.old)
			}
			body = strings.Replace(body, tc.old, tc.value, 1)
			err := c.ValidateAnswer(tc.route, 200, http.Header{"Content-Type": {"application/json"}}, []byte(body))
			if tc.field == "" {
				if err != nil {
					t.Fatalf("a %s the format allows is refused: %v", tc.format, err)
				}
				return
			}
			if !(want{"body", tc.field}).found(openapi.Violations(err)) {
				t.Fatalf("no violation in body %s; got: %v", tc.field, err)
			}
		})
	}
}

// A document that uses a format the checker would let anything through
// is refused when parsed, instead of checking less than it says.
func TestParseRefusesUnenforcedFormat(t *testing.T) {
	doc := string(openapi.Document())
	const uri = "downloadUrl: {type: string, format: uri}"
	if !strings.Contains(doc, uri) {
		t.Fatalf("the document has no %q", uri)
	}
	bad := strings.Replace(doc, uri, "downloadUrl: {type: string, format: uri-template}", 1)
	if _, err := openapi.Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), `"uri-template"`) {
		t.Errorf("a document using format uri-template parses: %v", err)
	}
	// A property named format, and an example, are no format keywords.
	odd := strings.Replace(doc, uri, "downloadUrl: {type: string, format: uri, examples: [{format: hex}]}", 1)
	if _, err := openapi.Parse([]byte(odd)); err != nil {
		t.Errorf("an example with a format field: %v", err)
	}
}

// A value a format refuses is quoted in the violation, but never the query
// of it, which may carry a signature: in whatever form the validator
// quotes it, on answers and on requests.
func TestFormatViolationsRedactQueries(t *testing.T) {
	c := load(t)
	const secret = "5ec12e7"
	body := string(sheentest.FixtureNamed("export-project").Body)
	answers := []struct{ old, new string }{
		{`"downloadUrl": "https://worker.test/_store/`, `"downloadUrl": ":/x?X-Signature=` + secret + `&u=https://worker.test/_store/`},
		{`"downloadUrl": "https://worker.test/_store/`, `"downloadUrl": "https://worker.test/caf\u00e9?X-Signature=` + secret + `&u=`},
		{`"downloadUrl": "https://worker.test/_store/`, `"downloadUrl": "x y?it's=\"` + secret + `\"\n&u=`},
		{`"expiresAt": "2026-01-16T10:00:00Z"`, `"expiresAt": "soon?sig=` + secret + `"`},
	}
	for _, a := range answers {
		if !strings.Contains(body, a.old) {
			t.Fatalf("fixture has no %s", a.old)
		}
		b := strings.Replace(body, a.old, a.new, 1)
		err := c.ValidateAnswer(sheen.RouteExportProject, 200, http.Header{"Content-Type": {"application/json"}}, []byte(b))
		if err == nil {
			t.Errorf("%s: passes", a.new)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the violation quotes the query: %v", a.new, err)
		} else if !strings.Contains(err.Error(), "?[redacted]") {
			t.Errorf("%s: the violation says nothing of the value: %v", a.new, err)
		}
	}
	// No request body field of the document has a format: give user ids
	// one to see formats enforced on requests too. (Request bodies go
	// through kin-openapi's own validator, which does not quote the value
	// today; the redaction covers them if it starts to.)
	const id = "    ID:\n      type: string\n      minLength: 1\n"
	doc := string(openapi.Document())
	if !strings.Contains(doc, id) {
		t.Fatalf("the document has no %q", id)
	}
	edited, err := openapi.Parse([]byte(strings.Replace(doc, id, id+"      format: uri\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	req, reqBody := signed("POST", "/v1/update-project", sheen.SigningDual,
		`{"userId":"u1?sig=`+secret+`","projectId":"p1","prompt":"p"}`)
	err = edited.ValidateRequest(req, reqBody, sheen.SigningDual)
	if !(want{"body", "/userId"}).found(openapi.Violations(err)) {
		t.Fatalf("a user id that is no URI passes a document that says it is one: %v", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("the violation quotes the query: %v", err)
	}
}
