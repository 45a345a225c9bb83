package jsonx

import (
	"strings"
	"unicode/utf8"
)

// The deployed worker (Fastify) parses application/json bodies with its own
// parser, which keeps the body text and JSON.parses it, and text/plain bodies
// as a string; any other content type is refused (415) before a route runs.

// MiddlewarePayload returns the body text the deployed worker's
// requireHmacSignature middleware signs (v1: timestamp + payload; v2: the
// last line) for a request with this method, Content-Type and raw body:
//
//   - GET, HEAD and DELETE, or no body: empty;
//   - a JSON content type (application/json, with or without parameters):
//     empty when the body parses to a falsy value (null, false, 0, -0, "");
//     the parsed string, unquoted and unescaped, when it is a JSON string;
//     otherwise the body text as received;
//   - any other content type: the body text as received.
//
// "The body text" is raw read as Node reads it (ToWellFormed); for a UTF-8
// body that is raw itself, so the result may share raw's memory. A JSON body
// that does not parse is returned as received, though the worker refuses it
// (400) before checking a signature.
func MiddlewarePayload(method, contentType string, raw []byte) []byte {
	switch strings.ToUpper(method) {
	case "GET", "HEAD", "DELETE":
		return nil
	}
	if len(raw) == 0 {
		return nil
	}
	text := ToWellFormed(raw)
	if mediaType(contentType) != "application/json" {
		return text
	}
	c := getCanon()
	defer putCanon(c)
	v, err := c.run(text)
	if err != nil {
		return text
	}
	switch string(v) {
	case "null", "false", "0", `""`:
		return nil
	}
	if v[0] == '"' {
		return unquote(v)
	}
	return text
}

// InlinePayload returns what the inline v1 signature check of the deployed
// worker's create-preview and rollback routes signs after the timestamp:
// JSON.stringify of the parsed body. An application/json body gives its
// Restringify; a text/plain body is parsed as a string, so it gives that
// string quoted (AppendString). ok is false where JavaScript's value is
// undefined (the worker then signs the text "undefined"): GET and HEAD,
// whose bodies are never parsed, a request without a body, and bodies the
// worker refuses before the check (another content type: 415; an empty or
// malformed JSON body: 400). Unlike the middleware, DELETE bodies count.
func InlinePayload(method, contentType string, raw []byte) (payload []byte, ok bool) {
	switch strings.ToUpper(method) {
	case "GET", "HEAD":
		return nil, false
	}
	switch mediaType(contentType) {
	case "application/json":
		if len(raw) == 0 {
			return nil, false
		}
		out, err := Restringify(raw)
		if err != nil {
			return nil, false
		}
		return out, true
	case "text/plain":
		return AppendString(make([]byte, 0, len(raw)+2), string(raw)), true
	}
	return nil, false
}

// mediaType returns the lowercased type/subtype of a Content-Type value.
func mediaType(contentType string) string {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// unquote decodes a JSON string in Restringify's form to the UTF-8 Node
// encodes it as (a lone surrogate becomes U+FFFD).
func unquote(q []byte) []byte {
	q = q[1 : len(q)-1]
	out := make([]byte, 0, len(q))
	for i := 0; i < len(q); i++ {
		b := q[i]
		if b != '\\' {
			out = append(out, b)
			continue
		}
		i++
		switch q[i] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			u, _ := hex4(q, i+1)
			i += 4
			if u >= 0xD800 && u < 0xE000 {
				out = append(out, replacement...)
			} else {
				out = utf8.AppendRune(out, rune(u))
			}
		default: // '"' or '\\'
			out = append(out, q[i])
		}
	}
	return out
}
