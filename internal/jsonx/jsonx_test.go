package jsonx

import (
	"encoding/json"
	"math"
	"strconv"
	"testing"
	"time"
)

func TestMarshalLikeJSONStringify(t *testing.T) {
	in := struct {
		B string `json:"b"`
		A []int  `json:"a"`
	}{`<a href="x">&</a>`, []int{1, 2}}
	got, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	// Field order kept, no HTML escaping, no trailing newline.
	if want := `{"b":"<a href=\"x\">&</a>","a":[1,2]}`; string(got) != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestNumber(t *testing.T) {
	for _, tc := range []struct {
		in    string
		want  float64
		valid bool
		err   bool
	}{
		{`3000`, 3000, true, false},
		{`"3000"`, 3000, true, false},
		{`" 12.5 "`, 12.5, true, false},
		{`null`, 0, false, false},
		{`""`, 0, false, false},
		{`"abc"`, 0, false, true},
		{`"NaN"`, 0, false, true},
		{`"Infinity"`, 0, false, true},
		{`true`, 0, false, true},
		{`{}`, 0, false, true},
	} {
		var n Number
		err := json.Unmarshal([]byte(tc.in), &n)
		if (err != nil) != tc.err || n.Valid != tc.valid || n.Float != tc.want {
			t.Errorf("%s: got %+v, %v", tc.in, n, err)
		}
	}
	var s struct{ N Number }
	if err := json.Unmarshal([]byte(`{}`), &s); err != nil || s.N.Valid {
		t.Fatalf("an absent field is not Valid: %+v %v", s, err)
	}
	if d := (Number{Float: 1.5, Valid: true}).Seconds(); d != 1500*time.Millisecond {
		t.Fatalf("Seconds = %s", d)
	}
	if d := (Number{Float: 2, Valid: true}).Minutes(); d != 2*time.Minute {
		t.Fatalf("Minutes = %s", d)
	}
	b, _ := json.Marshal(struct{ A, B Number }{Number{Float: 2.5, Valid: true}, Number{}})
	if string(b) != `{"A":2.5,"B":null}` {
		t.Fatalf("marshal: %s", b)
	}
}

// TestNumberConversionsClamp: a number beyond int64's or time.Duration's
// range gives the nearest bound, never a wrapped value of the other sign
// (total_seconds 9999999999 once read as -292 years).
func TestNumberConversionsClamp(t *testing.T) {
	const (
		maxD = time.Duration(math.MaxInt64)
		minD = time.Duration(math.MinInt64)
	)
	below := math.Nextafter(1<<63, 0) // the largest float64 under 2^63
	for _, tc := range []struct {
		in            string
		ints          int64
		secs, minutes time.Duration
	}{
		{`1.9`, 1, 1900 * time.Millisecond, 114 * time.Second},
		{`-1.9`, -1, -1900 * time.Millisecond, -114 * time.Second},
		{`9999999999`, 9999999999, maxD, maxD},
		{`-9999999999`, -9999999999, minD, minD},
		{`9223372036`, 9223372036, 9223372036 * time.Second, maxD},
		{`1e300`, math.MaxInt64, maxD, maxD},
		{`-1e300`, math.MinInt64, minD, minD},
		{`"1e19"`, math.MaxInt64, maxD, maxD},
		{`9223372036854775808`, math.MaxInt64, maxD, maxD}, // 2^63
		{`-9223372036854775808`, math.MinInt64, minD, minD},
		{strconv.FormatFloat(below, 'f', -1, 64), int64(below), maxD, maxD},
	} {
		var n Number
		if err := json.Unmarshal([]byte(tc.in), &n); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if got := n.Int(); got != tc.ints {
			t.Errorf("%s: Int() = %d, want %d", tc.in, got, tc.ints)
		}
		if got := n.Seconds(); got != tc.secs {
			t.Errorf("%s: Seconds() = %s, want %s", tc.in, got, tc.secs)
		}
		if got := n.Minutes(); got != tc.minutes {
			t.Errorf("%s: Minutes() = %s, want %s", tc.in, got, tc.minutes)
		}
	}
	if n := (Number{Float: math.Inf(-1), Valid: true}); n.Int() != math.MinInt64 || n.Seconds() != minD {
		t.Errorf("-Inf: Int() = %d, Seconds() = %s", n.Int(), n.Seconds())
	}
	if n := (Number{Float: math.NaN(), Valid: true}); n.Int() != 0 || n.Seconds() != 0 {
		t.Errorf("NaN: Int() = %d, Seconds() = %s, want 0", n.Int(), n.Seconds())
	}
}

func FuzzNumber(f *testing.F) {
	for _, s := range []string{`1`, `"2"`, `null`, `""`, `"1e400"`, `-0`, `"0x10"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var n Number
		if json.Unmarshal([]byte(in), &n) == nil && n.Valid {
			// Whatever decodes re-encodes to a number that decodes the same.
			b, err := json.Marshal(n)
			if err != nil {
				return // NaN or Inf cannot be written as JSON
			}
			var back Number
			if err := json.Unmarshal(b, &back); err != nil || back != n {
				t.Fatalf("%s -> %s -> %+v (%v)", in, b, back, err)
			}
		}
	})
}
