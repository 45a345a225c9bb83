package jsonx

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Loose decoding: the worker's answers put numbers in strings, ids as
// numbers or strings, booleans as "true" or 1, and times in half a dozen
// forms. These read what they can and leave the rest absent, so one odd
// field never loses a whole answer.

// LooseID is an id that arrives as a JSON number or a string ("123").
type LooseID struct {
	Text  string
	Valid bool
}

// UnmarshalJSON accepts 123, "123", "abc" and null.
func (id *LooseID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*id = LooseID{}
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*id = LooseID{Text: strings.TrimSpace(s), Valid: strings.TrimSpace(s) != ""}
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return err
		}
		*id = LooseID{Text: n.String(), Valid: true}
	}
	return nil
}

// Int64 returns the id as an integer.
func (id LooseID) Int64() (int64, bool) {
	if !id.Valid {
		return 0, false
	}
	if n, err := strconv.ParseInt(id.Text, 10, 64); err == nil {
		return n, true
	}
	if f, err := strconv.ParseFloat(id.Text, 64); err == nil && f == float64(int64(f)) {
		return int64(f), true
	}
	return 0, false
}

// DecodeLoosely decodes raw into v, leaving out the fields whose JSON type
// does not fit (encoding/json decodes the others all the same); false only
// when raw is not JSON at all or a field's own decoder refused it.
func DecodeLoosely(raw json.RawMessage, v any) bool {
	err := json.Unmarshal(raw, v)
	var typeErr *json.UnmarshalTypeError
	return err == nil || errors.As(err, &typeErr)
}

// LooseNumber is a Number that reads anything it cannot parse ("n/a",
// an object) as absent instead of failing the whole body.
type LooseNumber struct{ Number }

// UnmarshalJSON never fails.
func (n *LooseNumber) UnmarshalJSON(b []byte) error {
	if n.Number.UnmarshalJSON(b) != nil {
		n.Number = Number{}
	}
	return nil
}

// LooseBool is a boolean that may arrive as true, "true", 1 or "1".
type LooseBool struct {
	Bool  bool
	Valid bool
}

// UnmarshalJSON accepts booleans, "true"/"false", 1/0 and null; anything
// else is read as absent rather than failing the whole body.
func (v *LooseBool) UnmarshalJSON(b []byte) error {
	s := strings.Trim(strings.ToLower(string(bytes.TrimSpace(b))), `"`)
	switch s {
	case "true", "1", "t", "yes":
		*v = LooseBool{Bool: true, Valid: true}
	case "false", "0", "f", "no":
		*v = LooseBool{Bool: false, Valid: true}
	default:
		*v = LooseBool{}
	}
	return nil
}

// LooseTime is a timestamp as the worker writes it: RFC 3339, Postgres's
// text form with or without a zone, a bare date, or Unix seconds or
// milliseconds (as a number or a string).
type LooseTime struct{ Time time.Time }

var looseTimeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999",
	time.DateOnly,
}

// UnmarshalJSON never fails: an unreadable time is zero.
func (t *LooseTime) UnmarshalJSON(b []byte) error {
	*t = LooseTime{}
	b = bytes.TrimSpace(b)
	var s string
	if json.Unmarshal(b, &s) == nil {
		s = strings.TrimSpace(s)
		for _, layout := range looseTimeLayouts {
			if v, err := time.Parse(layout, s); err == nil {
				t.Time = v.UTC()
				return nil
			}
		}
		b = []byte(s) // perhaps Unix time in a string
	}
	var n float64
	if json.Unmarshal(b, &n) == nil && n > 0 {
		if n > 1e12 {
			t.Time = time.UnixMilli(int64(n)).UTC()
		} else {
			t.Time = time.Unix(int64(n), 0).UTC()
		}
	}
	return nil
}
