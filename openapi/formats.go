package openapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// formats are the string formats this package enforces beyond those
// kin-openapi defines itself (date and date-time: RFC 3339). kin-openapi
// treats a format it has no validator for as an annotation and passes any
// value, so Parse refuses a document that uses a format neither defines
// (see checkFormats). It is read-only.
var formats = map[string]openapi3.StringFormatValidator{
	"uri": openapi3.NewCallbackValidator(validateURI),
}

// schemaOptions makes schema validation enforce formats.
var schemaOptions = []openapi3.SchemaValidationOption{openapi3.WithStringFormatValidators(formats)}

// validateURI enforces format: uri, an RFC 3986 URI: only the characters
// RFC 3986 allows, well-formed percent-escapes, and a scheme (absolute, not
// a relative reference). Its errors never quote the value.
func validateURI(s string) error {
	if i := strings.IndexFunc(s, func(r rune) bool { return !isURIChar(r) }); i >= 0 {
		return fmt.Errorf("not a URI: RFC 3986 does not allow the character at byte %d", i)
	}
	if i := badEscape(s); i >= 0 {
		return fmt.Errorf("not a URI: the percent-escape at byte %d is not %%XX (hexadecimal)", i)
	}
	if strings.Count(s, "#") > 1 {
		return errors.New(`not a URI: a fragment cannot contain "#"`)
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the whole URL
		}
		return fmt.Errorf("not a URI: %v", err)
	}
	if u.Scheme == "" {
		return errors.New("not an absolute URI: it has no scheme")
	}
	return nil
}

// badEscape returns the index of the first "%" in s not followed by two
// hexadecimal digits, or -1.
func badEscape(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && (i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2])) {
			return i
		}
	}
	return -1
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// isURIChar reports whether RFC 3986 allows r anywhere in a URI:
// unreserved, gen-delims, sub-delims and "%".
func isURIChar(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return true
	}
	return strings.ContainsRune("-._~:/?#[]@!$&'()*+,;=%", r)
}

// checkFormats refuses a document that uses a format no validator
// enforces: kin-openapi would let any value through it.
func checkFormats(doc *openapi3.T) error {
	data, err := doc.MarshalJSON()
	if err != nil {
		return fmt.Errorf("openapi: %w", err)
	}
	var tree any
	if err := json.Unmarshal(data, &tree); err != nil {
		return fmt.Errorf("openapi: %w", err)
	}
	for _, f := range usedFormats(tree) {
		if !enforced(f) {
			return fmt.Errorf("openapi: the document uses format %q, which the checker does not enforce", f)
		}
	}
	return nil
}

// usedFormats returns the values of the format keywords in a document's
// JSON tree, sorted, leaving out examples, defaults and x- extensions.
func usedFormats(tree any) []string {
	var out []string
	var walk func(any)
	walk = func(n any) {
		switch n := n.(type) {
		case map[string]any:
			if f, ok := n["format"].(string); ok && !slices.Contains(out, f) {
				out = append(out, f)
			}
			for k, v := range n {
				switch {
				case k == "example", k == "examples", k == "default", k == "const", k == "enum", strings.HasPrefix(k, "x-"):
				default:
					walk(v)
				}
			}
		case []any:
			for _, v := range n {
				walk(v)
			}
		}
	}
	walk(tree)
	slices.Sort(out)
	return out
}

// enforced reports whether a format has a validator: this package's, or
// one kin-openapi defines (date, date-time, int32, int64, ...).
func enforced(format string) bool {
	if _, ok := formats[format]; ok {
		return true
	}
	if _, ok := openapi3.SchemaStringFormats[format]; ok {
		return true
	}
	if _, ok := openapi3.SchemaIntegerFormats[format]; ok {
		return true
	}
	_, ok := openapi3.SchemaNumberFormats[format]
	return ok
}

// valueQueries returns the queries ("?..." up to the end) of the strings
// in a JSON body, in every form a schema error may quote them (raw, Go
// %q, and the single-quoted form of the JSON Schema validator), longest
// first: a value the schema refuses is quoted in the error, and a URL's
// query may carry a signature that must not be. It is nil for a body that
// is not JSON.
func valueQueries(body []byte) []string {
	var tree any
	if json.Unmarshal(body, &tree) != nil {
		return nil
	}
	var out []string
	add := func(q string) {
		if !slices.Contains(out, q) {
			out = append(out, q)
		}
	}
	var walk func(any)
	walk = func(n any) {
		switch n := n.(type) {
		case string:
			i := strings.IndexByte(n, '?')
			if i < 0 || i == len(n)-1 {
				return
			}
			q := n[i:]
			add(q)
			goQuoted := strconv.Quote(q)
			goQuoted = goQuoted[1 : len(goQuoted)-1]
			add(goQuoted)
			add(strings.ReplaceAll(strings.ReplaceAll(goQuoted, `\"`, `"`), `'`, `\'`))
		case map[string]any:
			for _, v := range n {
				walk(v)
			}
		case []any:
			for _, v := range n {
				walk(v)
			}
		}
	}
	walk(tree)
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}
