package wire

import (
	"errors"
	"math"
	"net/url"
	"strings"
	"testing"
)

func TestEscapeID(t *testing.T) {
	for _, tc := range []struct {
		id, want, reason string
	}{
		{"b-123", "b-123", ""},
		{"a b", "a%20b", ""},
		{"é", "%C3%A9", ""},
		{"", "", "empty"},
		{"  ", "", "empty"},
		{"..", "", "change the request path"},
		{"a/b", "", "change the request path"},
		{`a\b`, "", "change the request path"},
		{"a\nb", "", "control characters"},
		{strings.Repeat("x", 10), "", "past 9"},
	} {
		got, reason := EscapeID(tc.id, 9)
		if got != tc.want || (tc.reason == "") != (reason == "") || !strings.Contains(reason, tc.reason) {
			t.Errorf("EscapeID(%q) = %q, %q; want %q and a reason with %q", tc.id, got, reason, tc.want, tc.reason)
		}
	}
}

func TestClampProgress(t *testing.T) {
	for in, want := range map[float64]float64{0.5: 0.5, 60: 0.6, 250: 1, -3: 0, math.NaN(): 0} {
		if got := ClampProgress(in); got != want {
			t.Errorf("ClampProgress(%v) = %v, want %v", in, got, want)
		}
	}
}

// A transport error loses its URL, and with it a signed link's query.
func TestRedactedError(t *testing.T) {
	err := &url.Error{Op: "Get", URL: "https://store.test/a.zip?X-Amz-Signature=secret", Err: errors.New("connection reset")}
	if got := RedactedError(err); got != "connection reset" {
		t.Errorf("RedactedError = %q", got)
	}
	if got := RedactedError(errors.New("plain")); got != "plain" {
		t.Errorf("RedactedError of a plain error = %q", got)
	}
}

func TestHex(t *testing.T) {
	for _, c := range []byte("0123456789abcdefABCDEF") {
		if !IsHex(c) {
			t.Errorf("IsHex(%q) = false", c)
		}
	}
	for _, c := range []byte("gG/ %") {
		if IsHex(c) {
			t.Errorf("IsHex(%q) = true", c)
		}
	}
	if Unhex('0') != 0 || Unhex('9') != 9 || Unhex('a') != 10 || Unhex('F') != 15 {
		t.Error("Unhex gives the wrong values")
	}
}
