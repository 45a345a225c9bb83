package sheentest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	sheen "github.com/sheenapps/sheen-go"
)

// This file is the one place where the fake checks request bodies. The
// schemas below are the request bodies of openapi/worker-api.yaml (which was
// written from worker-api.md), checked the way the deployed worker's web
// framework checks a route's schema (Fastify with Ajv, stopping at the first
// error): a refusal is 400 FST_ERR_VALIDATION with Ajv's message, such as
// "body must have required property 'userId'" or
// "body/operations/0/estimate_seconds must be >= 0". The handlers behind
// them see only bodies that passed.
//
// Where worker-api.md says what the deployed worker does, the fake does the
// same: it ignores templateFiles and metadata on create-preview, so in
// deployed mode (a timestamped signing scheme) any value of theirs passes.
// Where it is silent (unknown fields, types, a negative estimate), the fake
// follows the OpenAPI document, without the type coercion Ajv can be
// configured for. POST /generate is not here: worker-api.md 9 gives its own
// refusals, which its handler answers.
//
// package openapi is not used at run time: its request checks add rules the
// worker does not enforce (what a client always sends, compact JSON, the
// signing headers) and its messages are not the worker's. The package's
// tests hold these schemas to the document instead.

// schema is the part of JSON Schema the request bodies use.
type schema struct {
	typ       string   // "object", "array", "string", "number", "boolean"; "" any
	enum      []string // allowed values of a string
	minLength int      // of a string, in characters
	minimum   *float64 // of a number
	minItems  int      // of an array
	maxItems  int      // of an array; 0 means no limit
	items     *schema  // of an array

	required []string // of an object, in the order they are checked
	props    []prop   // of an object, in the order they are checked
	closed   bool     // additionalProperties: false
	values   *schema  // the schema of any other property's value
}

// prop is one declared property of an object.
type prop struct {
	name string
	s    *schema
	// ignoredByDeployed says the deployed worker ignores the property, so
	// any value passes in deployed mode (worker-api.md 5).
	ignoredByDeployed bool
}

var (
	zero        = 0.0
	idSchema    = &schema{typ: "string", minLength: 1}
	frameworkOf = &schema{typ: "string", enum: []string{"react", "nextjs", "vue", "svelte"}}

	// bodySchemas holds the request body of each route that takes one,
	// by route pattern.
	bodySchemas = map[string]*schema{
		sheen.RouteCheckSufficient: {
			typ: "object", closed: true,
			required: []string{"userId", "operationType", "projectSize", "isUpdate"},
			props: []prop{
				{name: "userId", s: idSchema},
				{name: "operationType", s: &schema{typ: "string", enum: []string{"main_build", "metadata_generation", "update"}}},
				{name: "projectSize", s: &schema{typ: "string", enum: []string{"small", "medium", "large"}}},
				{name: "isUpdate", s: &schema{typ: "boolean"}},
			},
		},
		sheen.RouteCheckBatch: {
			typ: "object", closed: true,
			required: []string{"userId", "operations"},
			props: []prop{
				{name: "userId", s: idSchema},
				{name: "operations", s: &schema{typ: "array", minItems: 1, maxItems: 10, items: &schema{
					typ: "object", closed: true,
					required: []string{"operation", "estimate_seconds"},
					props: []prop{
						{name: "operation", s: &schema{typ: "string", enum: []string{"build", "plan", "export", "metadata_generation"}}},
						{name: "estimate_seconds", s: &schema{typ: "number", minimum: &zero}},
					},
				}}},
			},
		},
		sheen.RouteCreatePreview: {
			typ: "object", closed: true,
			required: []string{"userId", "prompt"},
			props: []prop{
				{name: "userId", s: idSchema},
				{name: "projectId", s: idSchema},
				{name: "prompt", s: &schema{typ: "string", minLength: 1}},
				{name: "framework", s: frameworkOf},
				{name: "templateFiles", s: &schema{typ: "object", values: &schema{typ: "string"}}, ignoredByDeployed: true},
				{name: "metadata", s: &schema{typ: "object"}, ignoredByDeployed: true},
			},
		},
		sheen.RouteUpdateProject: {
			typ: "object", closed: true,
			required: []string{"userId", "projectId", "prompt"},
			props: []prop{
				{name: "userId", s: idSchema},
				{name: "projectId", s: idSchema},
				{name: "prompt", s: &schema{typ: "string", minLength: 1}},
				{name: "framework", s: frameworkOf},
			},
		},
		sheen.RouteRollback: {
			typ: "object", closed: true,
			required: []string{"projectId", "targetVersionId", "userId"},
			props: []prop{
				{name: "projectId", s: idSchema},
				{name: "targetVersionId", s: idSchema},
				{name: "userId", s: idSchema},
			},
		},
	}
)

// checkBody validates a request body of route against its schema, if the
// route has one, and answers the refusal itself; it reports whether the
// request may go on.
func (s *Server) checkBody(w http.ResponseWriter, route string, body []byte) bool {
	sc := bodySchemas[route]
	if sc == nil {
		return true
	}
	if msg := validateBody(sc, body, s.deployedMode()); msg != "" {
		validationError(w, msg)
		return false
	}
	return true
}

// validateBody returns the worker's message for the first way body breaks
// sc, or "" when it keeps it. deployed applies the deployed worker's
// leniency (ignoredByDeployed).
func validateBody(sc *schema, body []byte, deployed bool) string {
	if len(bytes.TrimSpace(body)) == 0 {
		return sc.check(nil, "body", deployed) // no body: undefined, not an object
	}
	v, err := parseOrdered(body)
	if err != nil {
		return "body is not valid JSON"
	}
	return sc.check(v, "body", deployed)
}

// check returns Ajv's message for the first error of v against sc, at
// path ("body" followed by a JSON pointer), or "".
func (sc *schema) check(v any, path string, deployed bool) string {
	if sc.typ != "" && !sc.hasType(v) {
		return path + " must be " + sc.typ
	}
	switch x := v.(type) {
	case string:
		if sc.enum != nil && !slices.Contains(sc.enum, x) {
			return path + " must be equal to one of the allowed values"
		}
		if utf8.RuneCountInString(x) < sc.minLength { // Ajv counts code points
			return path + " must NOT have fewer than " + strconv.Itoa(sc.minLength) + " characters"
		}
	case json.Number:
		if f, _ := strconv.ParseFloat(string(x), 64); sc.minimum != nil && f < *sc.minimum {
			return path + " must be >= " + strconv.FormatFloat(*sc.minimum, 'f', -1, 64)
		}
	case []any:
		if sc.maxItems > 0 && len(x) > sc.maxItems {
			return path + " must NOT have more than " + strconv.Itoa(sc.maxItems) + " items"
		}
		if len(x) < sc.minItems {
			return path + " must NOT have fewer than " + strconv.Itoa(sc.minItems) + " items"
		}
		if sc.items != nil {
			for i, item := range x {
				if msg := sc.items.check(item, path+"/"+strconv.Itoa(i), deployed); msg != "" {
					return msg
				}
			}
		}
	case object:
		return sc.checkObject(x, path, deployed)
	}
	return ""
}

// checkObject applies an object's keywords in Ajv's order: required,
// additionalProperties, then each declared property.
func (sc *schema) checkObject(o object, path string, deployed bool) string {
	for _, name := range sc.required {
		if _, ok := o.get(name); !ok {
			return path + " must have required property '" + name + "'"
		}
	}
	declared := func(k string) bool {
		return slices.ContainsFunc(sc.props, func(p prop) bool { return p.name == k })
	}
	if sc.closed {
		for _, m := range o {
			if !declared(m.key) {
				return path + " must NOT have additional properties"
			}
		}
	}
	for _, p := range sc.props {
		v, ok := o.get(p.name)
		if !ok || deployed && p.ignoredByDeployed {
			continue
		}
		if msg := p.s.check(v, path+"/"+pointerToken(p.name), deployed); msg != "" {
			return msg
		}
	}
	if sc.values != nil {
		for _, m := range o {
			if declared(m.key) {
				continue
			}
			if msg := sc.values.check(m.val, path+"/"+pointerToken(m.key), deployed); msg != "" {
				return msg
			}
		}
	}
	return ""
}

func (sc *schema) hasType(v any) bool {
	switch v.(type) {
	case object:
		return sc.typ == "object"
	case []any:
		return sc.typ == "array"
	case string:
		return sc.typ == "string"
	case json.Number:
		return sc.typ == "number"
	case bool:
		return sc.typ == "boolean"
	}
	return false // null, or no body at all
}

// pointerToken escapes a key as a JSON pointer token, as Ajv's instancePath
// does.
func pointerToken(k string) string { return pointerEscaper.Replace(k) }

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// object is a parsed JSON object with its members in JavaScript's order
// (what Ajv iterates): integer-like keys first, ascending, then the others
// in the order they came; a repeated key keeps its first place and its last
// value, as JSON.parse does.
type object []member

type member struct {
	key string
	val any
}

func (o object) get(k string) (any, bool) {
	for _, m := range o {
		if m.key == k {
			return m.val, true
		}
	}
	return nil, false
}

var errTrailing = errors.New("data after the JSON value")

// parseOrdered parses one JSON document: objects as object, arrays as
// []any, numbers as json.Number.
func parseOrdered(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := parseValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errTrailing
	}
	return v, nil
}

func parseValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, json.Number, bool or nil
	}
	switch d {
	case '[':
		arr := []any{}
		for dec.More() {
			v, err := parseValue(dec)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		_, err := dec.Token() // ]
		return arr, err
	case '{':
		var obj object
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k, _ := tok.(string)
			v, err := parseValue(dec)
			if err != nil {
				return nil, err
			}
			if i := slices.IndexFunc(obj, func(m member) bool { return m.key == k }); i >= 0 {
				obj[i].val = v
			} else {
				obj = append(obj, member{key: k, val: v})
			}
		}
		if _, err := dec.Token(); err != nil { // }
			return nil, err
		}
		slices.SortStableFunc(obj, func(a, b member) int {
			ai, aok := arrayIndex(a.key)
			bi, bok := arrayIndex(b.key)
			switch {
			case aok && bok:
				return cmp.Compare(ai, bi)
			case aok:
				return -1
			case bok:
				return 1
			}
			return 0
		})
		return obj, nil
	}
	return nil, errors.New("unexpected delimiter")
}

// arrayIndex reports whether k is an integer-like key JavaScript orders
// first (a canonical decimal below 2^32-1).
func arrayIndex(k string) (uint64, bool) {
	if k == "" || len(k) > 10 || k[0] == '0' && k != "0" {
		return 0, false
	}
	n, err := strconv.ParseUint(k, 10, 64)
	return n, err == nil && n < 1<<32-1
}
