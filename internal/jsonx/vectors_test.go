package jsonx

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

// wireVectors is the part of testdata/wire-vectors.json this package
// reproduces: outputs of the deployed worker's Node and its middleware.
type wireVectors struct {
	NodeVersion string `json:"node_version"`
	Stringify   struct {
		Cases []struct {
			Name   string `json:"name"`
			Input  string `json:"input"`
			Output string `json:"output"`
		} `json:"cases"`
	} `json:"stringify"`
	Payload struct {
		Cases []struct {
			Name          string  `json:"name"`
			Method        string  `json:"method"`
			ContentType   *string `json:"content_type"`
			RawBody       *string `json:"raw_body"`
			SignedPayload string  `json:"signed_payload"`
			InlinePayload string  `json:"inline_v1_payload"`
		} `json:"cases"`
	} `json:"payload"`
}

func loadVectors(t *testing.T) *wireVectors {
	t.Helper()
	b, err := os.ReadFile("../../testdata/wire-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v wireVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Stringify.Cases) == 0 || len(v.Payload.Cases) == 0 {
		t.Fatal("no stringify or payload cases in the vectors")
	}
	return &v
}

// Every stringify case: Node's JSON.stringify(JSON.parse(input)).
func TestVectorsStringify(t *testing.T) {
	v := loadVectors(t)
	for _, tc := range v.Stringify.Cases {
		got, err := Restringify([]byte(tc.Input))
		if err != nil || string(got) != tc.Output {
			t.Errorf("%s:\n got %q, %v\nwant %q", tc.Name, got, err, tc.Output)
			continue
		}
		// Node's output is its own fixed point.
		if again, err := Restringify(got); err != nil || string(again) != tc.Output {
			t.Errorf("%s: not idempotent: %q, %v", tc.Name, again, err)
		}
	}
}

// The same outputs from Go values, for each case Go can express (lone
// surrogates cannot be held in a Go string; duplicate keys and whitespace
// are not Go values).
func TestVectorsStringifyFromGoValues(t *testing.T) {
	v := loadVectors(t)
	negZero := math.Copysign(0, -1)
	values := map[string]any{
		"integer-like keys first, ascending; others in insertion order": struct {
			B   int `json:"b"`
			N2  int `json:"2"`
			A   int `json:"a"`
			N10 int `json:"10"`
			N1  int `json:"1"`
		}{1, 2, 3, 4, 5},
		"array-index limit: 4294967294 is an index, 4294967295 is not": map[string]int{
			"a": 0, "4294967295": 1, "4294967294": 2, "0": 3,
		}, // encoding/json sorts: "0" "4294967294" "4294967295" "a"; see below
		"nested objects with integer keys": struct {
			Z   map[string]int      `json:"z"`
			Arr []map[string]string `json:"arr"`
			N1  struct{}            `json:"1"`
		}{map[string]int{"b": 1, "2": 2, "1": 3}, []map[string]string{{"10": "x", "9": "y", "k": "z"}}, struct{}{}},
		"__proto__ is an ordinary key for JSON.parse": struct {
			P map[string]int `json:"__proto__"`
			A int            `json:"a"`
		}{map[string]int{"x": 1}, 2},
		"empty key": map[string]int{"": 1, "a": 2},
		"-0": struct {
			N float64   `json:"n"`
			M []float64 `json:"m"`
		}{negZero, []float64{negZero, negZero, 0}},
		"1e21, 1e20, 1E2, 1.0, 100.00, 0.5e1":             []float64{1e21, 1e20, 100, 1, 100, 5, 100},
		"1e-7, 1e-6, 0.1, 0.000001, -1e-7":                []float64{1e-7, 1e-6, 0.1, 0.000001, -1e-7, 0.30000000000000004},
		"5e-324 and 1.7976931348623157e308":               []float64{5e-324, math.MaxFloat64, 2.2250738585072014e-308},
		"2^53+1 and 12345678901234567890":                 []any{uint64(1<<53 + 1), uint64(12345678901234567890), json.Number("123456789012345678901234567890")},
		"out of range numbers become null":                []json.Number{"1e400", "-1e400"},
		"U+2028 and U+2029, escaped and raw in the input": []string{"a\u2028b\u2029c", "d\u2028e\u2029f"},
		"<>& and \\/":                                                  []string{"<script>a && b</script>", "a/b"},
		"\\u00e9, \\u00E9 and raw é":                                   []string{"é", "é", "é", "A"},
		"control characters":                                           []string{"\x00\x01\b\f\n\r\t\x0b\x1f\x7f\u0080\u009f", `"\`},
		"emoji and other non-ASCII, raw":                               []string{"😀", "日本語", "\u00ad\ufeff\ufffd"},
		"top-level scalars: string":                                    "str",
		"top-level scalars: number 1.50":                               1.5,
		"top-level scalars: null":                                      nil,
		"keys beyond 2^32 and 2^53 keep insertion order":               nil, // set below
		"whitespace and pretty printing removed":                       json.RawMessage("{\n  \"b\" : [ 1 , 2 ] ,\r\n\t\"a\" : { \"c\" : \"d\" }\n}\n"),
		"deep nesting":                                                 nil, // set below
		"empty object and array":                                       nil, // set below
		"\"01\", \"-1\", \"1.0\", \"+1\", \" 1\" are not integer keys": nil,
	}
	values["keys beyond 2^32 and 2^53 keep insertion order"] = struct {
		X  int `json:"x"`
		B  int `json:"9007199254740993"`
		C  int `json:"4294967296"`
		N7 int `json:"7"`
	}{0, 1, 2, 3}
	var deep any = map[string]any{"a": []any{map[string]any{"b": map[string]any{"c": []any{[]any{map[string]any{}}}}}}}
	for range 10 {
		deep = []any{deep}
	}
	values["deep nesting"] = deep
	values["empty object and array"] = struct {
		O struct{} `json:"o"`
		A []int    `json:"a"`
		S string   `json:"s"`
		N *int     `json:"n"`
		T bool     `json:"t"`
		F bool     `json:"f"`
	}{A: []int{}, T: true}
	values["\"01\", \"-1\", \"1.0\", \"+1\", \" 1\" are not integer keys"] = struct {
		B  int `json:"b"`
		Z1 int `json:"01"`
		M1 int `json:"-1"`
		D  int `json:"1.0"`
		P1 int `json:"+1"`
		S1 int `json:" 1"`
		N1 int `json:"1"`
	}{0, 1, 2, 3, 4, 5, 6}
	// Maps come out of encoding/json in byte order, so their non-index keys
	// are compared in that order.
	mapOutput := map[string]string{
		"array-index limit: 4294967294 is an index, 4294967295 is not": `{"0":3,"4294967294":2,"4294967295":1,"a":0}`,
	}
	done := 0
	for _, tc := range v.Stringify.Cases {
		val, ok := values[tc.Name]
		if !ok {
			continue
		}
		done++
		want := tc.Output
		if w, ok := mapOutput[tc.Name]; ok {
			want = w
		}
		got, err := Marshal(val)
		if err != nil || string(got) != want {
			t.Errorf("%s:\n got %s, %v\nwant %s", tc.Name, got, err, want)
		}
		if again, err := Restringify(got); err != nil || string(again) != string(got) {
			t.Errorf("%s: Marshal's output %s is not a fixed point: %s, %v", tc.Name, got, again, err)
		}
	}
	if done < 20 {
		t.Fatalf("only %d stringify cases matched Go values; names changed?", done)
	}
}

// Every payload case: what the middleware and the inline check sign.
func TestVectorsPayload(t *testing.T) {
	v := loadVectors(t)
	for _, tc := range v.Payload.Cases {
		ct := ""
		if tc.ContentType != nil {
			ct = *tc.ContentType
		}
		var raw []byte
		if tc.RawBody != nil {
			raw = []byte(*tc.RawBody)
		}
		if got := MiddlewarePayload(tc.Method, ct, raw); string(got) != tc.SignedPayload {
			t.Errorf("%s: MiddlewarePayload = %q, want %q", tc.Name, got, tc.SignedPayload)
		}
		got, ok := InlinePayload(tc.Method, ct, raw)
		if !ok {
			got = []byte("undefined") // what "timestamp + undefined" makes of it
		}
		if string(got) != tc.InlinePayload {
			t.Errorf("%s: InlinePayload = %q (%v), want %q", tc.Name, got, ok, tc.InlinePayload)
		}
	}
}
