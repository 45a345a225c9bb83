package openapi

import (
	"errors"
	"regexp"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
)

// convert turns kin-openapi's errors into Violations that name the
// offending field: a JSON pointer into the body, or a parameter or header.
func (c *Contract) convert(route string, status int, err error, secrets, queries []string) []error {
	var out []error
	add := func(in, field, reason string) {
		out = append(out, &Violation{Route: route, Status: status, In: in, Field: field, Reason: redact(reason, secrets, queries)})
	}
	var walk func(error)
	walk = func(err error) {
		if multi, ok := err.(openapi3.MultiError); ok {
			for _, e := range multi {
				walk(e)
			}
			return
		}
		var reqErr *openapi3filter.RequestError
		var respErr *openapi3filter.ResponseError
		var secErr *openapi3filter.SecurityRequirementsError
		switch {
		case errors.As(err, &secErr):
			var msgs []string
			for _, e := range secErr.Errors {
				msgs = append(msgs, e.Error())
			}
			add("signing", "", "no security requirement is met: "+strings.Join(msgs, "; "))
		case errors.As(err, &reqErr) && reqErr.Parameter != nil:
			// Header values (signatures, nonces) stay out of the message.
			add(reqErr.Parameter.In, reqErr.Parameter.Name, reason(reqErr.Reason, reqErr.Err, reqErr.Parameter.In == openapi3.ParameterInHeader))
		case errors.As(err, &reqErr) && reqErr.RequestBody != nil:
			for _, leaf := range bodyErrors(reqErr.Err) {
				add("body", leaf.field, reason(reqErr.Reason, leaf.err, false))
			}
		case errors.As(err, &reqErr) && reqErr.Err != nil && strings.Contains(reqErr.Err.Error(), "request body"):
			add("body", "", reqErr.Err.Error())
		case errors.As(err, &reqErr):
			add("request", "", reason(reqErr.Reason, reqErr.Err, false))
		case errors.As(err, &respErr):
			switch h := headerName.FindStringSubmatch(respErr.Reason); {
			case respErr.Reason == "status is not supported":
				add("status", "", "the route does not declare this status")
			case h != nil:
				add("header", h[1], reason(respErr.Reason, respErr.Err, false))
			case strings.Contains(respErr.Reason, "Content-Type"):
				add("header", "Content-Type", reason(respErr.Reason, respErr.Err, false))
			default:
				for _, leaf := range bodyErrors(respErr.Err) {
					add("body", leaf.field, reason(respErr.Reason, leaf.err, false))
				}
			}
		default:
			add("request", "", err.Error())
		}
	}
	walk(err)
	return out
}

var (
	headerName  = regexp.MustCompile(`header "([^"]+)"`)
	unsupported = regexp.MustCompile(`^property "([^"]+)" is unsupported`)
	missing     = regexp.MustCompile(`missing propert(?:y|ies) '([^']+)'`)
)

type leafError struct {
	field string
	err   error
}

// bodyErrors splits a body's schema errors into one per failing value,
// each named by the deepest JSON pointer under it: for a oneOf that no
// branch matches, the field where the closest branch failed.
func bodyErrors(err error) []leafError {
	if multi, ok := err.(openapi3.MultiError); ok {
		var out []leafError
		for _, e := range multi {
			out = append(out, bodyErrors(e)...)
		}
		return out
	}
	se, ok := err.(*openapi3.SchemaError)
	if !ok {
		return []leafError{{err: err}}
	}
	leaf := deepest(se)
	return []leafError{{field: "/" + strings.Join(pointer(leaf), "/"), err: schemaReason{top: se, leaf: leaf}}}
}

// schemaReason is a schema error told in one line: the failing keyword's
// reason, never the value or the schema (kin-openapi's Error dumps both).
type schemaReason struct{ top, leaf *openapi3.SchemaError }

func (r schemaReason) Error() string {
	msg := func(se *openapi3.SchemaError) string {
		if se.Reason != "" {
			return se.Reason
		}
		return "fails the schema's " + strconv.Quote(se.SchemaField)
	}
	top, leaf := tidy(msg(r.top)), tidy(msg(r.leaf))
	if top == leaf || strings.Contains(top, leaf) {
		return top
	}
	return top + " (closest: " + leaf + ")"
}

// deepest returns the schema error in se's tree with the longest JSON
// pointer (se itself when it has none nested).
func deepest(se *openapi3.SchemaError) *openapi3.SchemaError {
	best := se
	var visit func(error)
	visit = func(err error) {
		switch e := err.(type) {
		case nil:
		case openapi3.MultiError:
			for _, x := range e {
				visit(x)
			}
		case *openapi3.SchemaError:
			if len(pointer(e)) > len(pointer(best)) || best == se && len(pointer(e)) == len(pointer(se)) {
				best = e
			}
			visit(e.Origin)
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				visit(x)
			}
		case interface{ Unwrap() error }:
			visit(e.Unwrap())
		}
	}
	visit(se.Origin)
	return best
}

// pointer is the JSON pointer of the value a schema error is about: for an
// unexpected or a missing property, the property's own.
func pointer(se *openapi3.SchemaError) []string {
	ptr := se.JSONPointer()
	if m := unsupported.FindStringSubmatch(se.Reason); m != nil {
		return append(ptr, m[1])
	}
	// The JSON Schema 2020-12 validator names missing properties but points
	// at their object (the built-in one points at the property).
	if m := missing.FindStringSubmatch(se.Reason); m != nil && se.SchemaField == "required" {
		return append(ptr, m[1])
	}
	return ptr
}

// reason is the message of a kin-openapi error; for header parameters it
// is only the schema's complaint, never the value.
func reason(what string, err error, withholdValue bool) string {
	if err == nil {
		return what
	}
	if what == "" {
		what = "refused"
	}
	if se, ok := err.(*openapi3.SchemaError); ok {
		err = schemaReason{top: se, leaf: deepest(se)}
	}
	if withholdValue {
		var se schemaReason
		if errors.As(err, &se) {
			return what + ": the value does not match its schema (" + se.leaf.SchemaField + "; value withheld)"
		}
		if strings.Contains(err.Error(), "required") {
			return what + ": " + err.Error()
		}
		return what + ": the value is refused (withheld)"
	}
	return what + ": " + tidy(err.Error())
}

// tidy shortens the JSON Schema 2020-12 validator's messages: its first
// line names a placeholder URL, the rest is an indented tree.
func tidy(msg string) string {
	if !strings.Contains(msg, "\n") {
		return msg
	}
	var parts []string
	for _, line := range strings.Split(msg, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.Contains(line, "jsonschema validation failed with") {
			continue
		}
		parts = append(parts, strings.TrimPrefix(line, "- "))
	}
	return strings.Join(parts, "; ")
}
