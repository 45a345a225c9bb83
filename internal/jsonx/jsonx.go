// Package jsonx holds the JSON rules of the worker's wire format, as the
// deployed worker's Node (20, V8) applies them: bodies in the exact form
// JSON.stringify(JSON.parse(body)) writes (Restringify, Marshal), the body
// text its signature checks sign (MiddlewarePayload, InlinePayload), bytes
// read as Node decodes UTF-8 (ToWellFormed), and numbers that may arrive as
// JSON strings (Number).
package jsonx

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Marshal encodes v with encoding/json (struct fields in their order, any
// MarshalJSON methods honoured) and returns the bytes in Restringify's form,
// so they pass the deployed worker's JSON.stringify(JSON.parse(body))
// comparison unchanged: compact, no HTML escaping, no trailing newline,
// U+2028 and U+2029 raw, integer-like map keys ("2" before "10") first in
// numeric order, -0 as 0, and integers beyond 2^53 (uint64, int64,
// json.Number) written as JavaScript writes the float64 they round to
// (12345678901234567890 is 12345678901234567000). Invalid UTF-8 in a Go
// string becomes U+FFFD, one per bad byte as encoding/json decides. When
// encoding/json's bytes need no change (no U+2028 or U+2029, no index keys
// out of order, no -0 or long integers), they are returned as they are, with
// no copy.
func Marshal(v any) ([]byte, error) {
	e := encoders.Get().(*encoder)
	err := e.enc.Encode(v)
	b := e.w.b
	e.w.b = nil
	encoders.Put(e)
	if err != nil {
		return nil, err
	}
	b = b[:len(b)-1] // Encode's newline
	c := getCanon()
	defer putCanon(c)
	return c.run(ToWellFormed(b))
}

// encoder is an encoding/json Encoder without HTML escaping that writes into
// a capture; pooled, as both would otherwise be allocated on every call.
type encoder struct {
	w   capture
	enc *json.Encoder
}

var encoders = sync.Pool{New: func() any {
	e := new(encoder)
	e.enc = json.NewEncoder(&e.w)
	e.enc.SetEscapeHTML(false)
	return e
}}

// capture keeps a copy of what is written to it. An Encoder writes its
// whole output in one call, so that is one allocation of the right size.
type capture struct{ b []byte }

func (w *capture) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// Number is a JSON number that may also arrive as a string ("3000") or null.
// Valid is false when the field was absent, null or an empty string.
type Number struct {
	Float float64
	Valid bool
}

// UnmarshalJSON accepts 12, 12.5, "12", "12.5", null and "".
func (n *Number) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	if s == "null" {
		*n = Number{}
		return nil
	}
	if strings.HasPrefix(s, `"`) {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		s = strings.TrimSpace(str)
		if s == "" {
			*n = Number{}
			return nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("jsonx: %s is not a number", b)
	}
	*n = Number{Float: f, Valid: true}
	return nil
}

// MarshalJSON writes the number, or null when not Valid.
func (n Number) MarshalJSON() ([]byte, error) {
	if !n.Valid {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, n.Float, 'f', -1, 64), nil
}

// Int returns the number truncated to an int64; one beyond int64's range
// gives its bound (math.MaxInt64 or math.MinInt64).
func (n Number) Int() int64 { return clampInt64(n.Float) }

// Seconds returns the number read as seconds; a duration beyond
// time.Duration's range (about 292 years) gives its bound.
func (n Number) Seconds() time.Duration {
	return time.Duration(clampInt64(n.Float * float64(time.Second)))
}

// Minutes returns the number read as minutes; a duration beyond
// time.Duration's range gives its bound.
func (n Number) Minutes() time.Duration {
	return time.Duration(clampInt64(n.Float * float64(time.Minute)))
}

// clampInt64 truncates f to an int64, giving the nearest bound for a value
// beyond the range (Go's conversion gives an unspecified value there) and 0
// for NaN, which JSON cannot spell.
func clampInt64(f float64) int64 {
	switch {
	case math.IsNaN(f):
		return 0
	case f >= math.MaxInt64: // 2^63 as a float64: beyond the range
		return math.MaxInt64
	case f <= math.MinInt64:
		return math.MinInt64
	}
	return int64(f)
}
