package sheenhttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/jsonx"
)

// maxProxyJSONDepth caps how deeply a proxied JSON body may nest.
const maxProxyJSONDepth = 64

// readBody reads, caps and checks the request body of fw's route.
func (p *proxy) readBody(w http.ResponseWriter, r *http.Request, fw *forward) *proxyRefusal {
	if r.Method == http.MethodGet || r.Method == http.MethodDelete {
		return nil // sent without a body: the worker signs these with an empty one
	}
	tooLarge := refuse(http.StatusRequestEntityTooLarge, sheen.CodeBodyTooLarge, "Request body is too large")
	if r.ContentLength > sheen.MaxRequestBody {
		return tooLarge
	}
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, sheen.MaxRequestBody))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return tooLarge
			}
			return refuse(http.StatusBadRequest, codeBadRequest, "Could not read the request body")
		}
		body = b
	}
	if !fw.route.Body {
		if len(body) > 0 {
			return refuse(http.StatusBadRequest, codeBadRequest, "This route takes no body")
		}
		return nil
	}
	if len(bytes.TrimSpace(body)) > 0 {
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			return refuse(http.StatusUnsupportedMediaType, proxyCodeBadMedia, "Unsupported Media Type: send application/json")
		}
	} else {
		body = []byte("{}")
	}
	out, ids, no := scanProxyBody(body, fw.userID, fw.route.BodyIDs)
	if no != nil {
		return no
	}
	if len(out) > sheen.MaxRequestBody {
		return tooLarge
	}
	fw.body = out
	fw.resources = append(fw.resources, ids...)
	return nil
}

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
	s := &jsonScan{dec: json.NewDecoder(bytes.NewReader(body)), userID: userID, ids: ids}
	s.dec.UseNumber()
	if tok, err := s.dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, badJSON("The body must be a JSON object")
	}
	seen := map[string]bool{}
	for s.dec.More() {
		if no := s.topMember(seen); no != nil {
			return nil, nil, no
		}
	}
	if tok, err := s.dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, nil, badJSON("Invalid JSON")
	}
	if _, err := s.dec.Token(); err != io.EOF {
		return nil, nil, badJSON("Unexpected data after the JSON object")
	}
	// Put integer-like keys first, at every depth, as JSON.stringify does;
	// the rest is already in its form.
	final, err := jsonx.Restringify(s.object())
	if err != nil {
		return nil, nil, badJSON("Invalid JSON")
	}
	return final, s.refs, nil
}

// jsonScan is the state of scanProxyBody.
type jsonScan struct {
	dec     *json.Decoder
	userID  string
	ids     map[string]ResourceKind
	members bytes.Buffer // the top-level members written so far, without braces
	sawUser bool
	refs    []resourceRef
}

// topMember reads and writes one member of the top-level object.
func (s *jsonScan) topMember(seen map[string]bool) *proxyRefusal {
	key, no := s.key(seen)
	if no != nil {
		return no
	}
	if s.members.Len() > 0 {
		s.members.WriteByte(',')
	}
	writeJSONString(&s.members, key)
	s.members.WriteByte(':')
	if isUserKey(key) {
		return s.userValue(key)
	}
	if kind, ok := s.ids[key]; ok {
		return s.idValue(key, kind)
	}
	return s.value(&s.members, 1)
}

// userValue reads the value of a top-level key that means the user: it must
// be "userId" and hold the user's id.
func (s *jsonScan) userValue(key string) *proxyRefusal {
	tok, err := s.dec.Token()
	if err != nil {
		return badJSON("Invalid JSON")
	}
	if v, ok := tok.(string); key != "userId" || !ok || v != s.userID {
		return notYourUser()
	}
	s.sawUser = true
	writeJSONString(&s.members, s.userID)
	return nil
}

// idValue reads the value of a top-level key that holds a resource id: a
// valid id or null.
func (s *jsonScan) idValue(key string, kind ResourceKind) *proxyRefusal {
	tok, err := s.dec.Token()
	if err != nil {
		return badJSON("Invalid JSON")
	}
	switch v := tok.(type) {
	case nil:
		s.members.WriteString("null")
	case string:
		if _, err := escapeID(key, v); err != nil {
			return badJSON("Invalid " + key)
		}
		s.refs = append(s.refs, resourceRef{kind, v})
		writeJSONString(&s.members, v)
	default:
		return badJSON(key + " must be a string")
	}
	return nil
}

// object is the top-level object, with the user's id first when the body
// had none.
func (s *jsonScan) object() []byte {
	var out bytes.Buffer
	out.Grow(s.members.Len() + len(s.userID) + 16)
	out.WriteByte('{')
	if !s.sawUser {
		out.WriteString(`"userId":`)
		writeJSONString(&out, s.userID)
		if s.members.Len() > 0 {
			out.WriteByte(',')
		}
	}
	out.Write(s.members.Bytes())
	out.WriteByte('}')
	return out.Bytes()
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
			return s.nestedObject(out, depth)
		case '[':
			return s.array(out, depth)
		}
		return badJSON("Invalid JSON")
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

// nestedObject copies an object below the top level, whose '{' has been
// read; no key in it may mean the user.
func (s *jsonScan) nestedObject(out *bytes.Buffer, depth int) *proxyRefusal {
	out.WriteByte('{')
	seen := map[string]bool{}
	for first := true; s.dec.More(); first = false {
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
	return nil
}

// array copies an array whose '[' has been read.
func (s *jsonScan) array(out *bytes.Buffer, depth int) *proxyRefusal {
	out.WriteByte('[')
	for first := true; s.dec.More(); first = false {
		if !first {
			out.WriteByte(',')
		}
		if no := s.value(out, depth+1); no != nil {
			return no
		}
	}
	if tok, err := s.dec.Token(); err != nil || tok != json.Delim(']') {
		return badJSON("Invalid JSON")
	}
	out.WriteByte(']')
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
