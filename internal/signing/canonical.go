package signing

import (
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/collate"
	"golang.org/x/text/language"

	"github.com/sheenapps/sheen-go/internal/jsonx"
	"github.com/sheenapps/sheen-go/internal/wire"
)

// This file is the v2 canonical form of a request, exactly as the deployed
// worker computes it (worker-api.md 1.1): the client's signer and
// sheenhttp.Verifier both use it, so the two can never disagree.

// CanonicalV2 is the string the v2 signature covers:
// METHOD\ncanonicalPath\ntimestamp\nnonce\npayload.
func CanonicalV2(method, target, timestamp, nonce string, payload []byte) string {
	return canonicalV2Head(method, target, timestamp, nonce) + string(payload)
}

// canonicalV2Head is the canonical string up to the payload, which the
// signer hashes after it without copying.
func canonicalV2Head(method, target, timestamp, nonce string) string {
	return method + "\n" + CanonicalPath(target) + "\n" + timestamp + "\n" + nonce + "\n"
}

// CanonicalPath is the v2 canonical form of a request target: the path as
// sent; the query (up to a second '?', which the worker's parser treats as
// the end of it) parsed as a form the way URLSearchParams does, its pairs
// stably sorted by key with ICU collation (JavaScript's localeCompare) and
// re-encoded as a form. An empty query drops the '?'.
func CanonicalPath(target string) string {
	path, rest, ok := strings.Cut(target, "?")
	if !ok {
		return path
	}
	query, _, _ := strings.Cut(rest, "?")
	pairs := parseForm(query)
	if len(pairs) == 0 {
		return path
	}
	sortPairs(pairs)
	var sb strings.Builder
	sb.Grow(len(path) + len(query) + 16)
	sb.WriteString(path)
	for i, p := range pairs {
		if i == 0 {
			sb.WriteByte('?')
		} else {
			sb.WriteByte('&')
		}
		formEscape(&sb, p[0])
		sb.WriteByte('=')
		formEscape(&sb, p[1])
	}
	return sb.String()
}

// parseForm splits a query like URLSearchParams does: '&'-separated pairs,
// '+' is a space, percent escapes decoded (invalid ones kept literally), the
// bytes read as UTF-8 with U+FFFD for what is not, empty pairs skipped,
// order kept.
func parseForm(query string) [][2]string {
	var pairs [][2]string
	for part := range strings.SplitSeq(query, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		pairs = append(pairs, [2]string{formUnescape(k), formUnescape(v)})
	}
	return pairs
}

func formUnescape(s string) string {
	s = strings.ReplaceAll(s, "+", " ")
	if !strings.Contains(s, "%") {
		return wellFormed(s)
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && wire.IsHex(s[i+1]) && wire.IsHex(s[i+2]) {
			out = append(out, wire.Unhex(s[i+1])<<4|wire.Unhex(s[i+2]))
			i += 2
			continue
		}
		out = append(out, s[i])
	}
	return wellFormed(string(out))
}

// wellFormed decodes s as the WHATWG UTF-8 decoder does, as the worker's
// URLSearchParams reads a query: each maximal invalid subsequence becomes one
// U+FFFD (so "\xE2\x82" is one, not two).
func wellFormed(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return string(jsonx.ToWellFormed([]byte(s)))
}

// formEscape writes s as application/x-www-form-urlencoded, the way
// URLSearchParams serialises: A-Za-z0-9 and *-._ bare, space as '+', every
// other byte of the UTF-8 encoding as %XX.
func formEscape(sb *strings.Builder, s string) {
	const hexUpper = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '*', c == '-', c == '.', c == '_':
			sb.WriteByte(c)
		case c == ' ':
			sb.WriteByte('+')
		default:
			sb.WriteByte('%')
			sb.WriteByte(hexUpper[c>>4])
			sb.WriteByte(hexUpper[c&15])
		}
	}
}

// sortPairs sorts query pairs by key as the worker does: a stable sort with
// localeCompare. Keys of ASCII letters and digits only (all the SDK's own)
// take a fast path that gives the same order without a collator.
func sortPairs(pairs [][2]string) {
	simple := true
	for _, p := range pairs {
		if !isAlnum(p[0]) {
			simple = false
			break
		}
	}
	if simple {
		slices.SortStableFunc(pairs, func(a, b [2]string) int { return compareAlnum(a[0], b[0]) })
		return
	}
	c := collators.Get().(*collate.Collator)
	defer collators.Put(c)
	slices.SortStableFunc(pairs, func(a, b [2]string) int {
		return c.CompareString(collationKey(a[0]), collationKey(b[0]))
	})
}

// collators holds ICU-style collators for the root locale; a Collator keeps
// buffers, so each goroutine needs its own.
var collators = sync.Pool{New: func() any { return collate.New(language.Und) }}

// collationKey adjusts the one place where golang.org/x/text's tables and
// ICU's differ for keys: CLDR places U+FFFD after every letter (only U+FFFF
// is higher), x/text before digits. Mapping it to U+FFFF gives ICU's order;
// a key holding U+FFFF itself then ties with U+FFFD.
func collationKey(s string) string {
	if !strings.ContainsRune(s, utf8.RuneError) {
		return s
	}
	return strings.ReplaceAll(s, "\uFFFD", "\uFFFF")
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// compareAlnum is ICU's root collation restricted to ASCII letters and
// digits: digits before letters, letters compared ignoring case, and only
// when the keys are equal ignoring case, lowercase before uppercase at the
// first difference.
func compareAlnum(a, b string) int {
	if c := compareFold(a, b); c != 0 {
		return c
	}
	for i := 0; i < len(a); i++ { // same length: equal ignoring case
		if a[i] != b[i] {
			if a[i] > b[i] { // 'a' > 'A' in ASCII, and lowercase sorts first
				return -1
			}
			return 1
		}
	}
	return 0
}

func compareFold(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := lower(a[i]), lower(b[i])
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return len(a) - len(b)
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
