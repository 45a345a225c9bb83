package sheen

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"

	"github.com/sheenapps/sheen-go/internal/jsonx"
)

// scanProxyBody checks a browser's JSON body token by token (so a key given
// twice is seen, where encoding/json would keep the last) and writes it again
// in the exact form JSON.stringify(JSON.parse(body)) gives, which is what the
// worker receives, what the signer signs, and what the worker's inline
// signature checks re-serialise and compare (jsonx.Restringify). The body must
// be one JSON object; its top-level "userId", when present, must be the
// string userID, and is added when absent (first after the integer-like keys,
// which JavaScript always puts first); a key that means the user anywhere
// else, or a key repeated in one object, is refused. ids names the top-level
// fields holding resource ids, whose values are returned.
//
// Bytes that are not UTF-8 are read as Node reads them (jsonx.ToWellFormed).
// Every key and value sent on is the one checked: a string holding a lone
// surrogate escape ("\ud800") is checked and sent with U+FFFD in its place.
func scanProxyBody(body []byte, userID string, ids map[string]ResourceKind) ([]byte, []resourceRef, *proxyRefusal) {
	body = jsonx.ToWellFormed(body)
	s := &jsonScan{dec: json.NewDecoder(bytes.NewReader(body)), userID: userID}
	s.dec.UseNumber()
	if tok, err := s.dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, badJSON("The body must be a JSON object")
	}
	var members bytes.Buffer // the top-level members, without braces
	seen := map[string]bool{}
	sawUser := false
	var refs []resourceRef
	for s.dec.More() {
		key, no := s.key(seen)
		if no != nil {
			return nil, nil, no
		}
		if members.Len() > 0 {
			members.WriteByte(',')
		}
		writeJSONString(&members, key)
		members.WriteByte(':')
		if isUserKey(key) {
			tok, err := s.dec.Token()
			if err != nil {
				return nil, nil, badJSON("Invalid JSON")
			}
			if v, ok := tok.(string); key != "userId" || !ok || v != userID {
				return nil, nil, notYourUser()
			}
			sawUser = true
			writeJSONString(&members, userID)
			continue
		}
		kind, isID := ids[key]
		if !isID {
			if no := s.value(&members, 1); no != nil {
				return nil, nil, no
			}
			continue
		}
		tok, err := s.dec.Token()
		if err != nil {
			return nil, nil, badJSON("Invalid JSON")
		}
		switch v := tok.(type) {
		case nil:
			members.WriteString("null")
		case string:
			if _, err := escapeID(key, v); err != nil {
				return nil, nil, badJSON("Invalid " + key)
			}
			refs = append(refs, resourceRef{kind, v})
			writeJSONString(&members, v)
		default:
			return nil, nil, badJSON(key + " must be a string")
		}
	}
	if tok, err := s.dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, nil, badJSON("Invalid JSON")
	}
	if _, err := s.dec.Token(); err != io.EOF {
		return nil, nil, badJSON("Unexpected data after the JSON object")
	}
	var out bytes.Buffer
	out.Grow(members.Len() + len(userID) + 16)
	out.WriteByte('{')
	if !sawUser {
		out.WriteString(`"userId":`)
		writeJSONString(&out, userID)
		if members.Len() > 0 {
			out.WriteByte(',')
		}
	}
	out.Write(members.Bytes())
	out.WriteByte('}')
	// Put integer-like keys first, at every depth, as JSON.stringify does;
	// the rest is already in its form.
	final, err := jsonx.Restringify(out.Bytes())
	if err != nil {
		return nil, nil, badJSON("Invalid JSON")
	}
	return final, refs, nil
}

type jsonScan struct {
	dec    *json.Decoder
	userID string
}

func badJSON(msg string) *proxyRefusal {
	return refuse(http.StatusBadRequest, codeBadRequest, msg)
}

func notYourUser() *proxyRefusal {
	return refuse(http.StatusForbidden, proxyCodeForbidden, "The user id in the body is not yours")
}

// key reads an object key and refuses one already seen in the object.
func (s *jsonScan) key(seen map[string]bool) (string, *proxyRefusal) {
	tok, err := s.dec.Token()
	if err != nil {
		return "", badJSON("Invalid JSON")
	}
	key, ok := tok.(string)
	if !ok {
		return "", badJSON("Invalid JSON")
	}
	if seen[key] {
		if isUserKey(key) {
			return "", notYourUser()
		}
		return "", badJSON("Duplicate key " + strconv.Quote(key))
	}
	seen[key] = true
	return key, nil
}

// value copies one value at the given depth, refusing user keys in it.
func (s *jsonScan) value(out *bytes.Buffer, depth int) *proxyRefusal {
	if depth > maxProxyJSONDepth {
		return badJSON("The JSON body is nested too deeply")
	}
	tok, err := s.dec.Token()
	if err != nil {
		return badJSON("Invalid JSON")
	}
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			out.WriteByte('{')
			seen := map[string]bool{}
			first := true
			for s.dec.More() {
				key, no := s.key(seen)
				if no != nil {
					return no
				}
				if isUserKey(key) {
					return notYourUser() // only the top level may name the user
				}
				if !first {
					out.WriteByte(',')
				}
				first = false
				writeJSONString(out, key)
				out.WriteByte(':')
				if no := s.value(out, depth+1); no != nil {
					return no
				}
			}
			if tok, err := s.dec.Token(); err != nil || tok != json.Delim('}') {
				return badJSON("Invalid JSON")
			}
			out.WriteByte('}')
		case '[':
			out.WriteByte('[')
			first := true
			for s.dec.More() {
				if !first {
					out.WriteByte(',')
				}
				first = false
				if no := s.value(out, depth+1); no != nil {
					return no
				}
			}
			if tok, err := s.dec.Token(); err != nil || tok != json.Delim(']') {
				return badJSON("Invalid JSON")
			}
			out.WriteByte(']')
		default:
			return badJSON("Invalid JSON")
		}
	case string:
		writeJSONString(out, v)
	case json.Number:
		n, err := jsNumber(string(v))
		if err != nil {
			return badJSON("Number out of range")
		}
		out.WriteString(n)
	case bool:
		out.WriteString(strconv.FormatBool(v))
	case nil:
		out.WriteString("null")
	default:
		return badJSON("Invalid JSON")
	}
	return nil
}

// writeJSONString writes s as JSON.stringify writes a string.
func writeJSONString(out *bytes.Buffer, s string) {
	out.Write(jsonx.AppendString(out.AvailableBuffer(), s))
}

// jsNumber writes a JSON number the way JSON.stringify writes it after
// JSON.parse (jsonx.AppendNumber): the shortest decimal that reads back as
// the same float64, in plain notation from 1e-6 up to 1e21 and in exponent
// notation ("1e+21", "1.5e-7") beyond; -0 is "0". A number beyond the
// float64 range, which JavaScript would turn into null, is an error.
func jsNumber(s string) (string, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return "", errors.New("number out of range")
	}
	return string(jsonx.AppendNumber(nil, f)), nil
}
