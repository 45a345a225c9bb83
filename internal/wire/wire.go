// Package wire holds pure rules of the worker's wire format that both the
// client (package sheen) and its HTTP handlers (package sheenhttp) apply,
// so the two cannot drift apart.
package wire

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// EscapeID path-escapes one id for a route after checking that it cannot
// be mistaken for a path of its own, and that it is at most maxLen
// characters once escaped (the worker's router answers 404 past that).
// reason, when not empty, says why the id is refused.
func EscapeID(id string, maxLen int) (escaped, reason string) {
	switch {
	case strings.TrimSpace(id) == "":
		return "", "is empty or only white space"
	case id == "." || id == ".." || strings.Contains(id, "/") || strings.Contains(id, `\`):
		return "", fmt.Sprintf("%q would change the request path", id)
	case strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return "", "contains control characters"
	}
	esc := url.PathEscape(id)
	if len(esc) > maxLen {
		return "", fmt.Sprintf("is %d characters once escaped; the worker's router answers 404 past %d", len(esc), maxLen)
	}
	return esc, ""
}

// ClampProgress reads a build event's progress value into [0, 1]: values
// above 1 are percentages (60 is 0.6), and the result is clamped.
func ClampProgress(p float64) float64 {
	switch {
	case p != p: // NaN
		return 0
	case p > 1:
		p /= 100
	}
	return min(max(p, 0), 1)
}

// RedactedError describes a transport error without the URL it carries: a
// signed download link's query, or a target with a user's id, stays out of
// logs and errors.
func RedactedError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// IsHex reports whether c is a hexadecimal digit, as in a %XX escape.
func IsHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// Unhex is the value of the hexadecimal digit c (IsHex(c) must hold).
func Unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
