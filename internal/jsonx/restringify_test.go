package jsonx

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRestringify(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		// Key order.
		{`{"b":1,"10":2,"2":3}`, `{"2":3,"10":2,"b":1}`},
		{`{"1":1,"0":0}`, `{"0":0,"1":1}`},
		{`{"0":0,"1":1,"a":2}`, `{"0":0,"1":1,"a":2}`},
		{`{"00":1,"0":2}`, `{"0":2,"00":1}`},
		{`{"4294967295":1,"4294967294":2,"99999999999":3}`, `{"4294967294":2,"4294967295":1,"99999999999":3}`},
		{`{"\u0032":1,"\u0031\u0030":2,"x":3}`, `{"2":1,"10":2,"x":3}`},
		{`{"a":{"3":1,"2":2},"1":[{"5":5,"4":4}]}`, `{"1":[{"4":4,"5":5}],"a":{"2":2,"3":1}}`},
		// Repeated keys: first position, last value, also for index keys and
		// keys spelt differently.
		{`{"a":1,"\u0061":2}`, `{"a":2}`},
		{`{"b":1,"1":2,"c":3,"1":4,"b":5}`, `{"1":4,"b":5,"c":3}`},
		{`{"a":{"x":1,"x":2},"a":{"y":3,"y":4}}`, `{"a":{"y":4}}`},
		{`{"a":[1,{"k":1,"k":{"z":0,"z":[]}}]}`, `{"a":[1,{"k":{"z":[]}}]}`},
		// Numbers.
		{`[-0,0,-0.0,0e-5,-0E+5,1e-400,-1e-400]`, `[0,0,0,0,0,0,0]`},
		{`[100000000000000000000,1e21,123456789012345678,999999999999999999999]`, `[100000000000000000000,1e+21,123456789012345680,1e+21]`},
		{`[0.000001,0.0000001,0.00000123,1.5e-7,1e-6,123e-20]`, `[0.000001,1e-7,0.00000123,1.5e-7,0.000001,1.23e-18]`},
		{`[1.0,1.50,-1.25e2,2e0,1E2,1e+2,0.1e1]`, `[1,1.5,-125,2,100,100,1]`},
		{`[123456789012345,-123456789012345,1234567890123456,9007199254740993]`, `[123456789012345,-123456789012345,1234567890123456,9007199254740992]`},
		{`[1e308,1.8e308,-1.8e308,4.9e-324,2.4e-324]`, `[1e+308,null,null,5e-324,0]`},
		{`[0.1,0.2,0.30000000000000004,3.14159,2.5e-5]`, `[0.1,0.2,0.30000000000000004,3.14159,0.000025]`},
		{`1` + strings.Repeat("0", 400), `null`},
		{`0.` + strings.Repeat("0", 400) + `1`, `0`},
		// Strings.
		{`"\u2028\u2029\u007f\u0080\u00ff\ufeff"`, "\"\u2028\u2029\x7f\u0080\u00ff\ufeff\""},
		{`"\u0008\u0009\u000a\u000c\u000d\u000B\u001F\u0000"`, `"\b\t\n\f\r\u000b\u001f\u0000"`},
		{`"\u0022\u005c\/\u002f"`, `"\"\\//"`},
		{`"\uD83D\uDE00\ud83d\ude00"`, `"😀😀"`},
		{`"\uDE00\uD83D"`, `"\ude00\ud83d"`},
		{`"\ud800\ud800\udc00"`, "\"\\ud800\U00010000\""},
		{`"\uD800x\uDFFF"`, `"\ud800x\udfff"`},
		{"\"\xe2\x82\"", "\"\ufffd\""},
		{"\"\xff\xfe\"", "\"\ufffd\ufffd\""},
		{"\"a\xf0\x9f\x98b\"", "\"a\ufffdb\""},
		// Whitespace.
		{" \t\r\n[ 1 ,\n2 ] \n", `[1,2]`},
		{`  "x"  `, `"x"`},
		{`true`, `true`},
		{` false`, `false`},
	} {
		got, err := Restringify([]byte(tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("Restringify(%.60q) = %q, %v; want %q", tc.in, got, err, tc.want)
			continue
		}
		if again, err := Restringify(got); err != nil || !bytes.Equal(again, got) {
			t.Errorf("Restringify(%q) = %q, %v: not a fixed point", got, again, err)
		}
	}
}

// Input JSON.parse rejects is an error, and the same input encoding/json
// rejects.
func TestRestringifyRejects(t *testing.T) {
	for _, in := range []string{
		``, ` `, `{`, `}`, `[`, `[1,]`, `[,1]`, `{"a":1,}`, `{,}`, `{"a"}`, `{"a" 1}`, `{a:1}`, `{'a':1}`, `{"a":1 "b":2}`,
		`01`, `-01`, `+1`, `.5`, `1.`, `1.e5`, `1e`, `1e+`, `-`, `--1`, `0x10`, `NaN`, `Infinity`, `-Infinity`, `1_000`,
		`tru`, `true1`, `nul`, `nulL`, `True`, `undefined`, `"abc`, `"\"`, `"\x"`, `"\u12"`, `"\u12g4"`, `"\U0041"`, `"\'"`,
		"\"a\x00b\"", "\"a\nb\"", "\"\x1f\"", "\"\t\"", "[1]\x00", "\ufeff{}", "\u00a0[]", "[1]\v", "\f[1]", `[1] [2]`, `{}{}`,
		`[1]]`, `"a"b`, `1 2`, `/*c*/1`, `// c` + "\n1", "[\u2028]", `'x'`,
	} {
		got, err := Restringify([]byte(in))
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Restringify(%q) = %q, %v; want a *SyntaxError", in, got, err)
			continue
		}
		if json.Valid([]byte(in)) {
			t.Errorf("%q: encoding/json takes it", in)
		}
		if se.Offset < 0 || se.Offset > len(in) || !strings.HasPrefix(se.Error(), "jsonx: ") {
			t.Errorf("%q: error %q at %d", in, se, se.Offset)
		}
	}
	var se *SyntaxError
	if _, err := Restringify([]byte(`{"a":[1,2,x]}`)); !errors.As(err, &se) || se.Offset != 10 || !strings.Contains(err.Error(), `'x'`) {
		t.Errorf("error %v does not point at the x", err)
	}
}

func TestRestringifyDepth(t *testing.T) {
	ok := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	if got, err := Restringify([]byte(ok)); err != nil || string(got) != ok {
		t.Fatalf("depth %d: %v", MaxDepth, err)
	}
	deep := strings.Repeat(`{"a":`, MaxDepth+1) + "1" + strings.Repeat("}", MaxDepth+1)
	if _, err := Restringify([]byte(deep)); err == nil || !strings.Contains(err.Error(), "deeper") {
		t.Fatalf("depth %d: %v", MaxDepth+1, err)
	}
}

// A body already in Node's form comes back as it is, without a copy or an
// allocation: this is every request's path.
func TestRestringifyKeepsCanonicalInput(t *testing.T) {
	in := []byte(`{"1":2,"userId":"u1","prompt":"<b>é😀\u2028 \"q\" \\ \n","n":[0,-1.5,1e+21,12345678901234567000],"o":{},"t":[true,false,null]}`)
	in = bytes.ReplaceAll(in, []byte(`\u2028`), []byte("\u2028"))
	got, err := Restringify(in)
	if err != nil || &got[0] != &in[0] || len(got) != len(in) {
		t.Fatalf("Restringify copied or changed a canonical body: %q, %v", got, err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = Restringify(in) }); n != 0 && !raceEnabled {
		t.Errorf("Restringify of a canonical body allocates %v times", n)
	}
}

// Objects with many keys (looked up in a map) agree with the model.
func TestRestringifyManyKeys(t *testing.T) {
	var sb strings.Builder
	sb.WriteByte('{')
	for i := range 300 {
		if i > 0 {
			sb.WriteByte(',')
		}
		switch i % 5 {
		case 0:
			fmt.Fprintf(&sb, `"%d":%d`, (i*7919)%101, i) // index keys, repeated
		case 1:
			fmt.Fprintf(&sb, `"k%d":%d`, i%37, i) // names, repeated
		default:
			fmt.Fprintf(&sb, `"n%d":{"%d":1,"b":2,"%d":3}`, i, i%3+5, i%3)
		}
	}
	sb.WriteByte('}')
	in := []byte(sb.String())
	got, err := Restringify(in)
	if err != nil {
		t.Fatal(err)
	}
	want, err := modelRestringify(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestToWellFormed(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"abc", "abc"},
		{"é😀", "é😀"},
		{"\xe2\x82", "\ufffd"},              // cut-off 3-byte sequence: one
		{"\xe2\x82x", "\ufffdx"},            // ... even before more text
		{"\xe2\x82\xe2\x82\xac", "\ufffd€"}, // ... and a good one after
		{"\xf0\x9f\x98", "\ufffd"},          // cut-off 4-byte sequence: one
		{"\xff\xfe", "\ufffd\ufffd"},        // bytes that never start one: one each
		{"\x80\xbf", "\ufffd\ufffd"},        // lone continuation bytes
		{"\xc0\x80", "\ufffd\ufffd"},        // overlong lead
		{"\xe0\x80\x80", "\ufffd\ufffd\ufffd"},
		{"\xed\xa0\x80", "\ufffd\ufffd\ufffd"}, // an encoded surrogate
		{"\xf4\x90\x80\x80", "\ufffd\ufffd\ufffd\ufffd"},
		{"\xf5\x80", "\ufffd\ufffd"},
		{"a\xc3", "a\ufffd"},
		{"\xef\xbf\xbd", "\ufffd"},
	} {
		if got := ToWellFormed([]byte(tc.in)); string(got) != tc.want {
			t.Errorf("ToWellFormed(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	valid := []byte(`{"a":"é😀"}`)
	if got := ToWellFormed(valid); &got[0] != &valid[0] {
		t.Error("ToWellFormed copied valid UTF-8")
	}
	if n := testing.AllocsPerRun(100, func() { _ = ToWellFormed(valid) }); n != 0 {
		t.Errorf("ToWellFormed of valid UTF-8 allocates %v times", n)
	}
}

func TestAppendString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `""`},
		{"<a href=\"x\">&</a>", `"<a href=\"x\">&</a>"`},
		{"\u2028\u2029\x7f\u0080", "\"\u2028\u2029\x7f\u0080\""},
		{"\x00\x01\b\t\n\v\f\r\x1b\x1f\\/", `"\u0000\u0001\b\t\n\u000b\f\r\u001b\u001f\\/"`},
		{"a\xe2\x82\"", "\"a\ufffd\\\"\""},
		{"\xed\xa0\x80\n", "\"\ufffd\ufffd\ufffd\\n\""},
	} {
		if got := string(AppendString(nil, tc.in)); got != tc.want {
			t.Errorf("AppendString(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestAppendNumber(t *testing.T) {
	for _, tc := range []struct {
		f    float64
		want string
	}{
		{0, "0"}, {math.Copysign(0, -1), "0"}, {1, "1"}, {-1, "-1"}, {1.5, "1.5"}, {-0.5, "-0.5"},
		{1e20, "100000000000000000000"}, {1e21, "1e+21"}, {-1e21, "-1e+21"}, {1.5e21, "1.5e+21"},
		{123456789012345678, "123456789012345680"}, {12345678901234567890, "12345678901234567000"},
		{1e-6, "0.000001"}, {1.5e-6, "0.0000015"}, {1e-7, "1e-7"}, {-1.25e-7, "-1.25e-7"},
		{5e-324, "5e-324"}, {math.MaxFloat64, "1.7976931348623157e+308"}, {1 << 53, "9007199254740992"},
		{0.1, "0.1"}, {100, "100"}, {123.456, "123.456"}, {1e100, "1e+100"},
		{math.Inf(1), "null"}, {math.Inf(-1), "null"}, {math.NaN(), "null"},
	} {
		if got := string(AppendNumber(nil, tc.f)); got != tc.want {
			t.Errorf("AppendNumber(%v) = %s, want %s", tc.f, got, tc.want)
		}
	}
}

func TestMarshal(t *testing.T) {
	invalid := "a\xe2\x82b\xff"
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"map keys in JavaScript's order", map[string]any{"b": 1, "10": 2, "2": 3}, `{"2":3,"10":2,"b":1}`},
		{"-0", map[string]float64{"x": math.Copysign(0, -1)}, `{"x":0}`},
		{"json.Number beyond 2^53", []json.Number{"12345678901234567890", "1.50", "-0"}, `[12345678901234567000,1.5,0]`},
		{"uint64 and int64 beyond 2^53", []any{uint64(1<<53 + 1), uint64(math.MaxUint64), int64(math.MinInt64), int64(-(1<<53 + 1))},
			`[9007199254740992,18446744073709552000,-9223372036854776000,-9007199254740992]`},
		{"U+2028 and U+2029 raw", "line\u2028para\u2029", "\"line\u2028para\u2029\""},
		{"invalid UTF-8", invalid, "\"a\ufffd\ufffdb\ufffd\""},
		{"struct order and no HTML escaping", struct {
			B string `json:"b"`
			A []int  `json:"a"`
		}{`<a href="x">&</a>`, []int{1, 2}}, `{"b":"<a href=\"x\">&</a>","a":[1,2]}`},
		{"nested, in a struct", struct {
			M map[string]int `json:"m"`
			N float64        `json:"n"`
		}{map[string]int{"b": 1, "10": 2, "2": 3}, 1e21}, `{"m":{"2":3,"10":2,"b":1},"n":1e+21}`},
		{"RawMessage", json.RawMessage(`{"b" : 1, "2": -0.0, "s":"\u2028"}`), "{\"2\":0,\"b\":1,\"s\":\"\u2028\"}"},
		{"float32", []float32{0.1, 16777216, 1e-7}, `[0.1,16777216,1e-7]`},
	} {
		got, err := Marshal(tc.v)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: Marshal = %s, %v; want %s", tc.name, got, err, tc.want)
			continue
		}
		if again, err := Restringify(got); err != nil || !bytes.Equal(again, got) {
			t.Errorf("%s: %s is not a fixed point: %s, %v", tc.name, got, again, err)
		}
	}
	for _, bad := range []any{make(chan int), math.NaN(), map[string]any{"f": math.Inf(1)}, json.Number("1x")} {
		if got, err := Marshal(bad); err == nil {
			t.Errorf("Marshal(%#v) = %s, want an error", bad, got)
		}
	}
	// As cheap as encoding/json when nothing needs rewriting.
	body := struct {
		UserID string            `json:"userId"`
		Prompt string            `json:"prompt"`
		N      []float64         `json:"n"`
		M      map[string]string `json:"m"`
	}{"u1", "a <b> & c — é", []float64{1.5, 1e21, 1e-7}, map[string]string{"x": "1", "y": "2"}}
	base := testing.AllocsPerRun(100, func() { _, _ = json.Marshal(body) })
	if n := testing.AllocsPerRun(100, func() { _, _ = Marshal(body) }); n > base && !raceEnabled {
		t.Errorf("Marshal allocates %v times, encoding/json %v", n, base)
	}
	// The bytes are the caller's: a later Marshal does not write over them.
	a, _ := Marshal(map[string]string{"a": "1"})
	_, _ = Marshal(map[string]string{"b": "2"})
	if string(a) != `{"a":"1"}` {
		t.Fatalf("an earlier result changed: %s", a)
	}
}

func TestMiddlewarePayloadEdges(t *testing.T) {
	for _, tc := range []struct {
		method, ct, body, want string
	}{
		{"HEAD", "application/json", `{"a":1}`, ""},
		{"post", "application/json", `{"a":1}`, `{"a":1}`},
		{"POST", "application/json", "-0", ""},
		{"POST", "application/json", " 0.0e9 ", ""},
		{"POST", "application/json", "1e-400", ""}, // parses to 0
		{"POST", "application/json", ` "" `, ""},
		{"POST", "application/json", `0.5`, `0.5`},
		{"POST", "application/json", `"\ud800x\u0000\/"`, "\ufffdx\x00/"},
		{"POST", "application/json", `"😀 \"q\""`, `😀 "q"`},
		{"POST", "Application/JSON ; charset=UTF-8", `"s"`, "s"},
		{"POST", "application/json", "{\"a\":\"\xe2\x82\"}", "{\"a\":\"\ufffd\"}"},
		{"POST", "application/json", `{"a":`, `{"a":`}, // refused by the worker anyway
		{"POST", "text/plain", "null", "null"},
		{"POST", "text/plain", "h\xffi", "h\ufffdi"},
		{"POST", "application/x-www-form-urlencoded", "a=1", "a=1"},
		{"PUT", "application/json", "", ""},
		{"POST", "", "", ""},
	} {
		if got := MiddlewarePayload(tc.method, tc.ct, []byte(tc.body)); string(got) != tc.want {
			t.Errorf("MiddlewarePayload(%s, %q, %q) = %q, want %q", tc.method, tc.ct, tc.body, got, tc.want)
		}
	}
}

func TestInlinePayloadEdges(t *testing.T) {
	const undefined = "undefined"
	for _, tc := range []struct {
		method, ct, body, want string
	}{
		{"HEAD", "application/json", `{"a":1}`, undefined},
		{"POST", "application/json", "", undefined},       // 400: empty JSON body
		{"POST", "application/json", `{"a":1`, undefined}, // 400: bad JSON
		{"POST", "application/xml", `<a/>`, undefined},    // 415
		{"POST", "", `{"a":1}`, undefined},                // 415
		{"PATCH", "", "", undefined},                      // no body
		{"POST", "text/plain", "", `""`},                  // parsed as ""
		{"POST", "text/plain; charset=utf-8", "a\"\n\u2028", "\"a\\\"\\n\u2028\""},
		{"POST", "application/json", "-0", "0"},
		{"POST", "application/json", `{"b":1,"2":[-0]}`, `{"2":[0],"b":1}`},
		{"DELETE", "application/json; charset=utf-8", ` "x" `, `"x"`},
	} {
		got, ok := InlinePayload(tc.method, tc.ct, []byte(tc.body))
		if !ok {
			got = []byte(undefined)
		}
		if string(got) != tc.want {
			t.Errorf("InlinePayload(%s, %q, %q) = %q, want %q", tc.method, tc.ct, tc.body, got, tc.want)
		}
	}
}

// modelRestringify is a second, plain implementation: encoding/json's
// tokenizer, an ordered list of members per object, JavaScript's order
// applied at the end. It cannot tell lone surrogates apart (encoding/json
// makes them U+FFFD), so it is only asked about input without them.
func modelRestringify(in []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(ToWellFormed(in)))
	dec.UseNumber()
	var value func() (any, error)
	value = func() (any, error) {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		switch tok {
		case json.Delim('['):
			arr := []any{}
			for dec.More() {
				v, err := value()
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			_, err := dec.Token()
			return arr, err
		case json.Delim('{'):
			var keys []string
			vals := map[string]any{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := value()
				if err != nil {
					return nil, err
				}
				if _, ok := vals[k.(string)]; !ok {
					keys = append(keys, k.(string))
				}
				vals[k.(string)] = v
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			var idx, names []string
			for _, k := range keys {
				if _, ok := arrayIndex([]byte(k)); ok {
					idx = append(idx, k)
				} else {
					names = append(names, k)
				}
			}
			slices.SortFunc(idx, func(a, b string) int {
				x, _ := strconv.ParseUint(a, 10, 64)
				y, _ := strconv.ParseUint(b, 10, 64)
				return cmp.Compare(x, y)
			})
			return orderedObject{append(idx, names...), vals}, nil
		}
		return tok, nil
	}
	v, err := value()
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data: %v", err)
	}
	var write func(dst []byte, v any) []byte
	write = func(dst []byte, v any) []byte {
		switch v := v.(type) {
		case nil:
			return append(dst, "null"...)
		case bool:
			return strconv.AppendBool(dst, v)
		case json.Number:
			f, _ := strconv.ParseFloat(string(v), 64)
			return AppendNumber(dst, f)
		case string:
			return AppendString(dst, v)
		case []any:
			dst = append(dst, '[')
			for i, e := range v {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = write(dst, e)
			}
			return append(dst, ']')
		case orderedObject:
			dst = append(dst, '{')
			for i, k := range v.keys {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = AppendString(dst, k)
				dst = append(dst, ':')
				dst = write(dst, v.vals[k])
			}
			return append(dst, '}')
		}
		panic(fmt.Sprintf("model: %T", v))
	}
	return write(nil, v), nil
}

type orderedObject struct {
	keys []string
	vals map[string]any
}

// hasSurrogateEscape reports whether in may hold a \uD800-\uDFFF escape.
func hasSurrogateEscape(in []byte) bool {
	return bytes.Contains(bytes.ToLower(in), []byte(`\ud`))
}

// Restringify's output says the same as its input (to encoding/json), is its
// own fixed point, is valid UTF-8, and agrees with the model byte for byte;
// it fails exactly where encoding/json's grammar does.
func FuzzRestringify(f *testing.F) {
	for _, s := range []string{
		`{"b":1,"2":2,"a":3,"10":4,"1":5}`, `{"a":1,"b":2,"a":3}`, `[-0,1e21,1e-7,12345678901234567890,1e400]`,
		`"\u2028\ud800\uDC00\u00E9\/"`, "\"\xe2\x82\"", ` {"x" : [ true , false , null ] } `, `{"4294967294":0,"4294967295":1}`,
		`[1,]`, `{"a"}`, `01`, `"\u12"`, `{"":{"":{"1":[{}]}}}`, `{"k":1,"k":{"2":0,"1":0},"k":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Restringify(in)
		wf := ToWellFormed(in)
		if err != nil {
			if json.Valid(wf) {
				t.Fatalf("Restringify(%q) failed: %v; encoding/json takes it", in, err)
			}
			return
		}
		if !json.Valid(wf) {
			t.Fatalf("Restringify(%q) = %q; encoding/json refuses it", in, out)
		}
		if !utf8.Valid(out) {
			t.Fatalf("Restringify(%q) = %q: not UTF-8", in, out)
		}
		again, err := Restringify(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("Restringify(%q) = %q, then %q, %v: not idempotent", in, out, again, err)
		}
		var a, b any
		if json.Unmarshal(wf, &a) == nil { // 1e400 is an error to encoding/json
			if err := json.Unmarshal(out, &b); err != nil || !reflect.DeepEqual(a, b) {
				t.Fatalf("Restringify(%q) = %q: reads as %#v, the input as %#v (%v)", in, out, b, a, err)
			}
		}
		if !hasSurrogateEscape(in) {
			want, err := modelRestringify(in)
			if err != nil || !bytes.Equal(out, want) {
				t.Fatalf("Restringify(%q) = %q; the model says %q, %v", in, out, want, err)
			}
		}
	})
}

// ToWellFormed agrees with the WHATWG decoder's algorithm, written here as
// the standard states it.
func FuzzToWellFormed(f *testing.F) {
	for _, s := range []string{"", "abc", "\xe2\x82", "\xff", "\xed\xa0\x80", "\xf0\x9f\x98\x80", "\xf4\x90", "é\xc3"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got := ToWellFormed(in)
		if want := whatwgDecode(in); !bytes.Equal(got, want) {
			t.Fatalf("ToWellFormed(%q) = %q, want %q", in, got, want)
		}
		if s := string(AppendString(nil, string(in))); s != string(AppendString(nil, string(got))) {
			t.Fatalf("AppendString(%q) = %s, not as for its decoding", in, s)
		}
	})
}

// whatwgDecode is the UTF-8 decoder of the WHATWG Encoding Standard, §9.1.1.
func whatwgDecode(in []byte) []byte {
	var out []byte
	var cp rune
	seen, need := 0, 0
	lower, upper := byte(0x80), byte(0xBF)
	for i := 0; i <= len(in); i++ {
		if i == len(in) {
			if need != 0 {
				out = append(out, "\uFFFD"...)
			}
			break
		}
		b := in[i]
		if need == 0 {
			switch {
			case b <= 0x7F:
				out = append(out, b)
			case 0xC2 <= b && b <= 0xDF:
				need, cp = 1, rune(b&0x1F)
			case 0xE0 <= b && b <= 0xEF:
				if b == 0xE0 {
					lower = 0xA0
				}
				if b == 0xED {
					upper = 0x9F
				}
				need, cp = 2, rune(b&0xF)
			case 0xF0 <= b && b <= 0xF4:
				if b == 0xF0 {
					lower = 0x90
				}
				if b == 0xF4 {
					upper = 0x8F
				}
				need, cp = 3, rune(b&0x7)
			default:
				out = append(out, "\uFFFD"...)
			}
			continue
		}
		if b < lower || b > upper {
			cp, need, seen, lower, upper = 0, 0, 0, 0x80, 0xBF
			out = append(out, "\uFFFD"...)
			i-- // prepend the byte to the stream
			continue
		}
		lower, upper = 0x80, 0xBF
		cp = cp<<6 | rune(b&0x3F)
		if seen++; seen == need {
			out = utf8.AppendRune(out, cp)
			cp, need, seen = 0, 0, 0
		}
	}
	return out
}

// Marshal's output is a fixed point of Restringify for whatever Go values.
func FuzzMarshal(f *testing.F) {
	f.Add("k", "v\u2028", 1.5, uint64(1<<60), []byte(`{"2":1,"10":[-0]}`))
	f.Add("10", "\xe2\x82", math.Copysign(0, -1), uint64(0), []byte(`"x"`))
	f.Fuzz(func(t *testing.T, k, s string, x float64, u uint64, raw []byte) {
		if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) > math.MaxFloat32 {
			x = 0
		}
		var anyRaw any
		if json.Unmarshal(raw, &anyRaw) != nil {
			anyRaw = string(raw)
		}
		v := map[string]any{
			k: s, s: []any{x, u, k}, "2": anyRaw, "10": map[string]float64{k: x, "1": -x},
			"n": json.Number(strconv.FormatUint(u, 10)), "f": float32(x),
		}
		out, err := Marshal(v)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		if again, err := Restringify(out); err != nil || !bytes.Equal(again, out) {
			t.Fatalf("Marshal = %q; Restringify makes %q, %v", out, again, err)
		}
	})
}
