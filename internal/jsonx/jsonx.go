// Package jsonx holds the JSON rules of the worker's wire format: bodies
// encoded the way JavaScript's JSON.stringify writes them, and numbers that
// may arrive as JSON strings.
package jsonx

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Marshal encodes v compactly, without HTML escaping and without a trailing
// newline, so the bytes equal JSON.stringify's for the same object and key
// order. (Go still escapes U+2028 and U+2029, which JSON.stringify does not.)
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
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

// Int returns the number truncated to an int64.
func (n Number) Int() int64 { return int64(n.Float) }

// Seconds returns the number read as seconds.
func (n Number) Seconds() time.Duration {
	return time.Duration(n.Float * float64(time.Second))
}

// Minutes returns the number read as minutes.
func (n Number) Minutes() time.Duration {
	return time.Duration(n.Float * float64(time.Minute))
}
