package sheenhttp

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/sheenapps/sheen-go/internal/jsonx"
)

// JavaScript's Number#toString for the numbers JSON.parse makes.
func TestProxyJSNumber(t *testing.T) {
	tests := map[string]string{
		"0": "0", "-0": "0", "0.0": "0", "1": "1", "-1": "-1", "1.50": "1.5", "1e3": "1000", "1E+3": "1000",
		"123456789012345678901": "123456789012345680000", "1e21": "1e+21", "1.5e21": "1.5e+21", "-2e30": "-2e+30",
		"0.000001": "0.000001", "0.0000001": "1e-7", "1.25e-7": "1.25e-7", "5e-324": "5e-324",
		"0.1": "0.1", "100": "100", "1e-400": "0", "9007199254740993": "9007199254740992",
	}
	for in, want := range tests {
		got, err := jsNumber(in)
		if err != nil || got != want {
			t.Errorf("jsNumber(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"1e400", "-1e400"} {
		if got, err := jsNumber(in); err == nil {
			t.Errorf("jsNumber(%s) = %q, want an error (JavaScript makes Infinity, which JSON.stringify writes as null)", in, got)
		}
	}
}

// What the proxy sends on is what the worker's inline checks re-serialise
// (JSON.stringify(JSON.parse(body))), or they refuse the signature:
// integer-like keys first in numeric order at every depth, also before the
// userId the proxy adds; -0 as 0; U+2028 raw; input not UTF-8 read as Node
// reads it.
func TestProxyScanBodyIsWhatJSONStringifyWrites(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"b":1,"10":{"z":-0,"2":"a\u2028b"},"2":[-0.0]}`, "{\"2\":[0],\"10\":{\"2\":\"a\u2028b\",\"z\":0},\"userId\":\"u1\",\"b\":1}"},
		{`{"x":1,"userId":"u1","10":2,"9":3}`, `{"9":3,"10":2,"x":1,"userId":"u1"}`},
		{"{\"s\":\"line\u2028para\u2029<&>\"}", "{\"userId\":\"u1\",\"s\":\"line\u2028para\u2029<&>\"}"},
		{"{\"s\":\"\xe2\x82!\"}", "{\"userId\":\"u1\",\"s\":\"\ufffd!\"}"},
		{`{"n":[12345678901234567890,1e21,1E-7,0.10]}`, `{"userId":"u1","n":[12345678901234567000,1e+21,1e-7,0.1]}`},
	} {
		out, _, no := scanProxyBody([]byte(tc.in), "u1", nil)
		if no != nil || string(out) != tc.want {
			t.Errorf("%q:\n got %q, %v\nwant %q", tc.in, out, no, tc.want)
			continue
		}
		if again, err := jsonx.Restringify(out); err != nil || !bytes.Equal(again, out) {
			t.Errorf("%q: JSON.stringify(JSON.parse(%q)) is %q, %v", tc.in, out, again, err)
		}
	}
}

func TestProxyUserKeys(t *testing.T) {
	for _, k := range []string{"userId", "userid", "USERID", "UserId", "user_id", "user-id", "User.Id", "userId[]", "userId[0]", "userIds", " userId"} {
		if !isUserKey(k) {
			t.Errorf("%q is not taken for the user", k)
		}
	}
	for _, k := range []string{"user", "projectId", "usr_id", "id", "targetVersionId", ""} {
		if isUserKey(k) {
			t.Errorf("%q is taken for the user", k)
		}
	}
}

// isUserKey finds "userid" in the key lower-cased with only its letters
// and digits kept, whatever the key holds ("İ" lower-cases to "i").
func FuzzProxyUserKey(f *testing.F) {
	for _, k := range []string{"userId", "uuser_id", "useruserid", "user1id", "userİd", "a[USER-ID]", "\xffuserid", "usr"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, k string) {
		var sb strings.Builder
		for _, r := range strings.ToLower(k) {
			if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
				sb.WriteRune(r)
			}
		}
		if want := strings.Contains(sb.String(), "userid"); isUserKey(k) != want {
			t.Fatalf("isUserKey(%q) = %v, want %v", k, !want, want)
		}
	})
}

// Whatever a browser sends, a body the scan accepts is one JSON object with
// exactly one top-level userId, the user's, and no other key that means the
// user at any depth; scanning it again changes nothing.
func FuzzProxyScanBody(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"userId":"u1"}`, `{"userId":"u2"}`, `{"a":{"userId":"u1"}}`, `{"a":[1,2,{"b":null}]}`,
		`{"userId":"u1","userId":"u1"}`, `{"user\u0049d":"u1"}`, `{"a":1e400}`, `{"projectId":"p1","prompt":"<&>"}`,
		`{"a":"\ud800"}`, `[1]`, `{"a":1}{}`, ` {"x" : -0.0 } `, `{"projectId":5}`, `{"projectId":null}`,
		`{"b":1,"10":{"z":-0,"2":"a\u2028b"},"2":[-0.0]}`, "{\"\xe2\x82\":1}", `{"4294967294":1,"4294967295":2,"0":3}`,
	} {
		f.Add([]byte(s))
	}
	ids := map[string]ResourceKind{"projectId": ResourceProject}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, refs, no := scanProxyBody(body, "u1", ids)
		if no != nil {
			if no.status != 400 && no.status != 403 {
				t.Fatalf("refused with %d", no.status)
			}
			return
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(out, &top); err != nil {
			t.Fatalf("output %q is not a JSON object: %v", out, err)
		}
		if string(top["userId"]) != `"u1"` || bytes.Count(out, []byte(`"userId":`)) != 1 {
			t.Fatalf("output %q: userId not exactly once and the user's", out)
		}
		for _, r := range refs {
			if r.kind != ResourceProject || strconv.Quote(r.id) == "" {
				t.Fatalf("bad ref %+v", r)
			}
		}
		again, _, no := scanProxyBody(out, "u1", ids)
		if no != nil || !bytes.Equal(again, out) {
			t.Fatalf("rescanning %q: %q, %v", out, again, no)
		}
		// The worker's inline checks would re-serialise it to the same bytes.
		if js, err := jsonx.Restringify(out); err != nil || !bytes.Equal(js, out) {
			t.Fatalf("output %q: JSON.stringify(JSON.parse(output)) = %q, %v", out, js, err)
		}
	})
}

func TestProxyJSNumberKeepsFloats(t *testing.T) {
	for _, f := range []float64{math.Pi, 1e-7, 123.456, 1 << 53, 1e300, math.SmallestNonzeroFloat64} {
		s, err := jsNumber(strconv.FormatFloat(f, 'g', -1, 64))
		if err != nil {
			t.Fatal(err)
		}
		if back, _ := strconv.ParseFloat(s, 64); back != f {
			t.Errorf("%v -> %s -> %v", f, s, back)
		}
	}
}
