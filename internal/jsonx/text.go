package jsonx

import "unicode/utf8"

// replacement is U+FFFD in UTF-8.
const replacement = "\uFFFD"

// ToWellFormed decodes b the way Node (and every WHATWG decoder) reads UTF-8
// bytes into a string, and returns that string's UTF-8: each maximal invalid
// subpart (an unexpected byte, or the longest start of a sequence that cannot
// be completed) becomes one U+FFFD. So "\xE2\x82" (a cut-off "€") gives one
// U+FFFD where Go's own decoding gives one per byte, while "\xFF\xFF" gives
// two. When b is already valid UTF-8, b itself is returned: no copy, no
// allocation.
func ToWellFormed(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	out := make([]byte, 0, len(b)+len(b)/2)
	return appendWellFormed(out, b)
}

// appendWellFormed appends ToWellFormed(b) to dst.
func appendWellFormed(dst, b []byte) []byte {
	for i := 0; i < len(b); {
		if c := b[i]; c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		if r, size := utf8.DecodeRune(b[i:]); r != utf8.RuneError || size > 1 {
			dst = append(dst, b[i:i+size]...)
			i += size
			continue
		}
		dst = append(dst, replacement...)
		i += maximalSubpart(b[i:])
	}
	return dst
}

// maximalSubpart returns the length of the invalid sequence starting p (p is
// not valid UTF-8 at its start): the lead byte and those continuation bytes
// that could still have completed it (Unicode 3.9, "U+FFFD substitution of
// maximal subparts", which the WHATWG decoder follows).
func maximalSubpart(p []byte) int {
	need := 0
	lo, hi := byte(0x80), byte(0xBF)
	switch c := p[0]; {
	case 0xC2 <= c && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c == 0xED:
		need, hi = 2, 0x9F
	case 0xE1 <= c && c <= 0xEF:
		need = 2
	case c == 0xF0:
		need, lo = 3, 0x90
	case c == 0xF4:
		need, hi = 3, 0x8F
	case 0xF1 <= c && c <= 0xF3:
		need = 3
	default:
		return 1
	}
	n := 1
	for ; need > 0 && n < len(p); need-- {
		if p[n] < lo || p[n] > hi {
			break
		}
		lo, hi = 0x80, 0xBF
		n++
	}
	return n
}

// safe marks the bytes JSON.stringify writes as they are inside a string.
var safe = func() (t [256]bool) {
	for i := 0x20; i < 256; i++ {
		t[i] = true
	}
	t['"'], t['\\'] = false, false
	return t
}()

const hexDigits = "0123456789abcdef"

// AppendString appends s as JSON.stringify writes the string Node reads from
// s's bytes: between double quotes, with only '"', '\\' and the control
// characters below U+0020 escaped (\b \f \n \r \t, the others as \u00xx);
// everything else, U+2028, U+2029, DEL, "<>&" and all non-ASCII, is written
// raw. Invalid UTF-8 in s becomes U+FFFD as ToWellFormed decides.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	valid := utf8.ValidString(s)
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if safe[c] && (valid || c < utf8.RuneSelf) {
			i++
			continue
		}
		dst = append(dst, s[start:i]...)
		if c >= utf8.RuneSelf { // invalid UTF-8 somewhere in s
			if r, size := utf8.DecodeRuneInString(s[i:]); r != utf8.RuneError || size > 1 {
				dst = append(dst, s[i:i+size]...)
				i += size
			} else {
				dst = append(dst, replacement...)
				i += maximalSubpart([]byte(s[i:min(len(s), i+4)]))
			}
			start = i
			continue
		}
		dst = appendEscape(dst, c)
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendEscape appends JSON.stringify's escape for the ASCII byte c ('"',
// '\\' or a control character).
func appendEscape(dst []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(dst, '\\', c)
	case '\b':
		return append(dst, '\\', 'b')
	case '\f':
		return append(dst, '\\', 'f')
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	return append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
}
