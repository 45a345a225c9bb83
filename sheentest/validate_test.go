package sheentest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/openapi"
)

// A body is read as JSON.parse reads it and checked in the order Ajv
// checks it, so the refusal names the same field the worker's does.
func TestValidateBodyAsTheWorkerReadsIt(t *testing.T) {
	create := bodySchemas[sheen.RouteCreatePreview]
	for _, tc := range []struct {
		name, body string
		deployed   bool
		want       string
	}{
		// JavaScript puts integer-like keys first: "9" is checked before "b.js".
		{"integer-like keys first", `{"userId":"u","prompt":"p","templateFiles":{"b.js":true,"9":1}}`, false, "body/templateFiles/9 must be string"},
		{"other keys in their order", `{"userId":"u","prompt":"p","templateFiles":{"b.js":true,"a.js":1}}`, false, "body/templateFiles/b.js must be string"},
		{"a repeated key keeps its last value", `{"userId":"u","prompt":"p","prompt":""}`, false, "body/prompt must NOT have fewer than 1 characters"},
		{"a repeated key's last value passes", `{"userId":"u","prompt":"","prompt":"p"}`, false, ""},
		{"required before unknown fields", `{"userId":"u","extra":1}`, false, "body must have required property 'prompt'"},
		{"unknown fields before declared ones", `{"userId":"","prompt":"p","extra":1}`, false, "body must NOT have additional properties"},
		{"declared fields in the schema's order", `{"prompt":"","userId":""}`, false, "body/userId must NOT have fewer than 1 characters"},
		{"~ and / escaped in the path", `{"userId":"u","prompt":"p","templateFiles":{"~/x":null}}`, false, "body/templateFiles/~0~1x must be string"},
		{"null is no string", `{"userId":null,"prompt":"p"}`, false, "body/userId must be string"},
		{"data after the document", `{"userId":"u","prompt":"p"} {}`, false, "body is not valid JSON"},
		{"not JSON", `{"userId":"u",}`, false, "body is not valid JSON"},
		{"deployed ignores templateFiles", `{"userId":"u","prompt":"p","templateFiles":"none"}`, true, ""},
		{"deployed ignores metadata", `{"userId":"u","prompt":"p","metadata":[1]}`, true, ""},
		{"deployed checks the rest", `{"userId":"u","prompt":"p","metadata":[1],"framework":"angular"}`, true, "body/framework must be equal to one of the allowed values"},
	} {
		if got := validateBody(create, []byte(tc.body), tc.deployed); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// The schemas are the request bodies of openapi/worker-api.yaml, keyword
// for keyword; POST /generate alone answers refusals of its own
// (worker-api.md 9).
func TestBodySchemasAreTheContracts(t *testing.T) {
	c, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, pattern := range c.Patterns() {
		op := c.Operation(pattern)
		mine := bodySchemas[pattern]
		switch {
		case pattern == sheen.RouteGenerate:
			if mine != nil {
				t.Errorf("%s has a schema; its handler refuses bodies itself", pattern)
			}
			continue
		case !op.HasBody:
			if mine != nil {
				t.Errorf("%s takes no body, but has a schema", pattern)
			}
			continue
		case mine == nil:
			t.Errorf("%s takes a body, but has no schema", pattern)
			continue
		}
		body := c.Document().Paths.Find(op.Path).GetOperation(op.Method).RequestBody.Value
		media := body.Content.Get("application/json")
		if media == nil {
			t.Errorf("%s: the contract has no application/json body", pattern)
			continue
		}
		for _, d := range diffSchema("body", mine, media.Schema) {
			t.Errorf("%s: %s", pattern, d)
		}
	}
	for pattern := range bodySchemas {
		if c.Operation(pattern) == nil {
			t.Errorf("%s has a schema, but is not in the contract", pattern)
		}
	}
}

// diffSchema lists how mine differs from the contract's schema at path.
func diffSchema(path string, mine *schema, ref *openapi3.SchemaRef) []string {
	if ref == nil || ref.Value == nil {
		return []string{path + ": the contract has no schema here"}
	}
	d := ref.Value
	var out []string
	differ := func(what string, m, c any) {
		out = append(out, fmt.Sprintf("%s: %s %v here, %v in the contract", path, what, m, c))
	}
	unsupported := d.Pattern != "" || d.MaxLength != nil || d.Max != nil || d.MultipleOf != nil || d.Const != nil ||
		len(d.OneOf)+len(d.AnyOf)+len(d.AllOf) > 0 || d.Not != nil || d.MinProps > 0 || d.MaxProps != nil ||
		len(d.PatternProperties) > 0 || d.UniqueItems || d.ExclusiveMin.IsSet() || d.ExclusiveMax.IsSet()
	if unsupported {
		out = append(out, path+": the contract uses a keyword the fake's schemas cannot state")
	}
	if typ := strings.Join(d.Type.Slice(), ","); typ != mine.typ {
		differ("type", mine.typ, typ)
	}
	var enum []string
	for _, e := range d.Enum {
		enum = append(enum, fmt.Sprint(e))
	}
	if !slices.Equal(enum, mine.enum) {
		differ("enum", mine.enum, enum)
	}
	if int(d.MinLength) != mine.minLength {
		differ("minLength", mine.minLength, d.MinLength)
	}
	if (d.Min == nil) != (mine.minimum == nil) || d.Min != nil && *d.Min != *mine.minimum {
		show := func(f *float64) any {
			if f == nil {
				return "none"
			}
			return *f
		}
		differ("minimum", show(mine.minimum), show(d.Min))
	}
	if int(d.MinItems) != mine.minItems {
		differ("minItems", mine.minItems, d.MinItems)
	}
	maxItems := 0 // no limit
	if d.MaxItems != nil {
		maxItems = int(*d.MaxItems)
	}
	if maxItems != mine.maxItems {
		differ("maxItems", mine.maxItems, maxItems)
	}
	switch {
	case d.Items == nil && mine.items != nil, d.Items != nil && mine.items == nil:
		differ("items", mine.items != nil, d.Items != nil)
	case d.Items != nil:
		out = append(out, diffSchema(path+"/items", mine.items, d.Items)...)
	}
	if !slices.Equal(d.Required, mine.required) {
		differ("required", mine.required, d.Required)
	}
	var names []string
	for _, p := range mine.props {
		names = append(names, p.name)
		out = append(out, diffSchema(path+"/"+p.name, p.s, d.Properties[p.name])...)
	}
	if want := slices.Sorted(maps.Keys(d.Properties)); !slices.Equal(slices.Sorted(slices.Values(names)), want) {
		differ("properties", names, want)
	}
	closed := d.AdditionalProperties.Has != nil && !*d.AdditionalProperties.Has
	if closed != mine.closed {
		differ("additionalProperties: false", mine.closed, closed)
	}
	switch extra := d.AdditionalProperties.Schema; {
	case (extra == nil) != (mine.values == nil):
		differ("additionalProperties schema", mine.values != nil, extra != nil)
	case extra != nil:
		out = append(out, diffSchema(path+"/*", mine.values, extra)...)
	}
	return out
}
