package jsonx

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"
)

// MaxDepth is how deeply Restringify lets arrays and objects nest (the same
// limit encoding/json's scanner has). Node parses deeper input, but its
// JSON.stringify runs out of stack at a depth of the same order.
const MaxDepth = 10000

// SyntaxError reports input that JavaScript's JSON.parse rejects, or that
// nests deeper than MaxDepth.
type SyntaxError struct {
	// Offset is where the problem was found: a byte offset into the input,
	// or into its ToWellFormed decoding when the input was not UTF-8.
	Offset int
	msg    string
}

// Error describes the problem and its offset.
func (e *SyntaxError) Error() string {
	return "jsonx: " + e.msg + " at offset " + strconv.Itoa(e.Offset)
}

// Restringify returns exactly what Node's JSON.stringify(JSON.parse(text))
// returns, as UTF-8, where text is raw read as Node reads a request body
// (ToWellFormed). That is what the deployed worker's inline signature checks
// re-serialise, so a body that equals its Restringify passes them:
//
//   - insignificant whitespace (space, tab, LF, CR) is dropped;
//   - in every object, keys that are array indices (canonical decimals from
//     "0" to "4294967294") come first in ascending numeric order, then the
//     other keys in the order they first appear; a repeated key keeps its
//     first position and its last value;
//   - numbers are read as float64 (rounded to nearest) and written as
//     AppendNumber writes them: "-0" is "0", 1e400 is null;
//   - strings are written as AppendString writes them; escapes are decoded
//     ("\u00E9" is a raw "é", "\/" is "/"), except lone surrogates, which
//     stay escaped in lowercase ("\ud800").
//
// Input JSON.parse rejects gives a *SyntaxError. When raw is already in this
// form, the result is raw itself (no copy): do not modify one and expect the
// other unchanged.
func Restringify(raw []byte) ([]byte, error) {
	in := ToWellFormed(raw)
	c := getCanon()
	defer putCanon(c)
	return c.run(in)
}

// canon rewrites a JSON text into Restringify's form. While its output still
// equals a prefix of its input it writes nothing (lazy): out is then
// in[:same] implicitly, and is only copied out at the first difference.
type canon struct {
	in      []byte
	pos     int
	out     []byte
	lazy    bool
	same    int
	depth   int
	members []member // the members of the objects being read, innermost last
	order   []int32  // scratch for reordering one object
	scratch []byte   // scratch for reordering one object
}

// member is one member of an object being read: its key spans out[ks:ke]
// (quotes included), its value out[ke+1:ve].
type member struct {
	ks, ke, ve int
	index      uint32 // the key's value when isIndex
	isIndex    bool
	first      int32 // for a repeated key: where it first appeared; else -1
	last       int32 // for a first appearance: where it last appeared
}

var canonPool = sync.Pool{New: func() any { return new(canon) }}

func getCanon() *canon { return canonPool.Get().(*canon) }

func putCanon(c *canon) {
	if cap(c.members) > 1<<12 || cap(c.scratch) > 1<<16 {
		return // let an outsized one go
	}
	*c = canon{members: c.members[:0], order: c.order[:0], scratch: c.scratch[:0]}
	canonPool.Put(c)
}

// run rewrites in, which must be valid UTF-8. The result is in itself (or a
// prefix of it) when nothing changed.
func (c *canon) run(in []byte) ([]byte, error) {
	c.in, c.pos, c.out, c.lazy, c.same, c.depth = in, 0, nil, true, 0, 0
	c.skipSpace()
	if err := c.value(); err != nil {
		return nil, err
	}
	c.skipSpace()
	if c.pos < len(in) {
		return nil, c.errorf("unexpected %s after the JSON value", c.describe())
	}
	if c.lazy {
		return in[:c.same], nil
	}
	return c.out, nil
}

func (c *canon) errorf(format string, args ...any) error {
	return &SyntaxError{Offset: c.pos, msg: fmt.Sprintf(format, args...)}
}

// describe names the input character at pos for an error.
func (c *canon) describe() string {
	if c.pos >= len(c.in) {
		return "end of input"
	}
	r, _ := utf8.DecodeRune(c.in[c.pos:])
	if r >= 0x20 && r < 0x7F {
		return strconv.QuoteRune(r)
	}
	return fmt.Sprintf("character %U", r)
}

// outLen is the length of the output so far.
func (c *canon) outLen() int {
	if c.lazy {
		return c.same
	}
	return len(c.out)
}

// outAt returns output bytes [i:j].
func (c *canon) outAt(i, j int) []byte {
	if c.lazy {
		return c.in[i:j]
	}
	return c.out[i:j]
}

// materialize stops being lazy: the output becomes a real buffer.
func (c *canon) materialize() {
	if c.lazy {
		c.out = append(make([]byte, 0, len(c.in)+16), c.in[:c.same]...)
		c.lazy = false
	}
}

// keep outputs input bytes [i:j] unchanged.
func (c *canon) keep(i, j int) {
	if c.lazy {
		if i == c.same {
			c.same = j
			return
		}
		c.materialize()
	}
	c.out = append(c.out, c.in[i:j]...)
}

// write outputs p, which differs from what the input holds here.
func (c *canon) write(p []byte) {
	c.materialize()
	c.out = append(c.out, p...)
}

func (c *canon) skipSpace() {
	for c.pos < len(c.in) {
		switch c.in[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

func (c *canon) value() error {
	if c.pos >= len(c.in) {
		return c.errorf("unexpected end of JSON input")
	}
	switch b := c.in[c.pos]; {
	case b == '{':
		return c.object()
	case b == '[':
		return c.array()
	case b == '"':
		return c.str()
	case b == '-' || '0' <= b && b <= '9':
		return c.number()
	case b == 't':
		return c.literal("true")
	case b == 'f':
		return c.literal("false")
	case b == 'n':
		return c.literal("null")
	}
	return c.errorf("unexpected %s, looking for a JSON value", c.describe())
}

func (c *canon) literal(word string) error {
	if !bytes.HasPrefix(c.in[c.pos:], []byte(word)) {
		for i := 0; i < len(word) && c.pos < len(c.in) && c.in[c.pos] == word[i]; i++ {
			c.pos++
		}
		return c.errorf("unexpected %s in literal %s", c.describe(), word)
	}
	c.keep(c.pos, c.pos+len(word))
	c.pos += len(word)
	return nil
}

func (c *canon) enter() error {
	if c.depth++; c.depth > MaxDepth {
		return c.errorf("JSON nested deeper than %d", MaxDepth)
	}
	return nil
}

func (c *canon) array() error {
	if err := c.enter(); err != nil {
		return err
	}
	c.keep(c.pos, c.pos+1)
	c.pos++
	c.skipSpace()
	if c.pos < len(c.in) && c.in[c.pos] == ']' {
		c.keep(c.pos, c.pos+1)
		c.pos++
		c.depth--
		return nil
	}
	for {
		c.skipSpace()
		if err := c.value(); err != nil {
			return err
		}
		c.skipSpace()
		if c.pos >= len(c.in) {
			return c.errorf("unexpected end of JSON input")
		}
		switch c.in[c.pos] {
		case ',':
			c.keep(c.pos, c.pos+1)
			c.pos++
		case ']':
			c.keep(c.pos, c.pos+1)
			c.pos++
			c.depth--
			return nil
		default:
			return c.errorf("unexpected %s after an array element", c.describe())
		}
	}
}

// dupMapAfter is the member count above which an object's keys are looked
// up in a map rather than compared one by one.
const dupMapAfter = 16

// object reads an object and rewrites it, when JavaScript would, in
// JavaScript's property order with one member per key (reorder).
func (c *canon) object() error {
	if err := c.enter(); err != nil {
		return err
	}
	start := c.outLen()
	c.keep(c.pos, c.pos+1)
	c.pos++
	c.skipSpace()
	if c.pos < len(c.in) && c.in[c.pos] == '}' {
		c.keep(c.pos, c.pos+1)
		c.pos++
		c.depth--
		return nil
	}
	base := len(c.members)
	reorder := false
	sawName := false // a key that is not an array index
	var lastIndex int64 = -1
	var seen map[string]int32
	for {
		m, err := c.member()
		if err != nil {
			return err
		}
		i := int32(len(c.members) - base)
		m.last = i
		switch dup := c.earlierKey(base, i, c.outAt(m.ks+1, m.ke-1), &seen); {
		case dup >= 0:
			m.first = dup
			c.members[base+int(dup)].last = i
			reorder = true
		case m.isIndex:
			if sawName || int64(m.index) <= lastIndex {
				reorder = true
			}
			lastIndex = int64(m.index)
		default:
			sawName = true
		}
		c.members = append(c.members, m)
		more, err := c.memberEnd()
		if err != nil {
			return err
		}
		if !more {
			break
		}
	}
	if reorder {
		c.reorder(start, base)
	}
	c.members = c.members[:base]
	c.depth--
	return nil
}

// member reads one member of an object, "key": value, and returns where
// its key and value lie in the output.
func (c *canon) member() (member, error) {
	c.skipSpace()
	if c.pos >= len(c.in) || c.in[c.pos] != '"' {
		return member{}, c.errorf("unexpected %s, looking for an object key", c.describe())
	}
	ks := c.outLen()
	if err := c.str(); err != nil {
		return member{}, err
	}
	ke := c.outLen()
	c.skipSpace()
	if c.pos >= len(c.in) || c.in[c.pos] != ':' {
		return member{}, c.errorf("unexpected %s after an object key", c.describe())
	}
	c.keep(c.pos, c.pos+1)
	c.pos++
	c.skipSpace()
	if err := c.value(); err != nil {
		return member{}, err
	}
	m := member{ks: ks, ke: ke, ve: c.outLen(), first: -1}
	m.index, m.isIndex = arrayIndex(c.outAt(ks+1, ke-1))
	return m, nil
}

// earlierKey returns the position (from base) of the first member of this
// object with key, the member at position i, or -1 when key is new. Keys are
// compared one by one up to dupMapAfter members, then looked up in *seen,
// which it builds then.
func (c *canon) earlierKey(base int, i int32, key []byte, seen *map[string]int32) int32 {
	if *seen != nil {
		if j, ok := (*seen)[string(key)]; ok {
			return j
		}
		(*seen)[string(key)] = i
		return -1
	}
	for j := base; j < len(c.members); j++ {
		o := c.members[j]
		if o.first < 0 && bytes.Equal(c.outAt(o.ks+1, o.ke-1), key) {
			return int32(j - base)
		}
	}
	if i+1 > dupMapAfter {
		*seen = make(map[string]int32, 2*i)
		for j := base; j < len(c.members); j++ {
			if o := c.members[j]; o.first < 0 {
				(*seen)[string(c.outAt(o.ks+1, o.ke-1))] = int32(j - base)
			}
		}
		(*seen)[string(key)] = i
	}
	return -1
}

// memberEnd reads what follows a member: a comma (more is true) or the
// object's closing brace.
func (c *canon) memberEnd() (more bool, err error) {
	c.skipSpace()
	if c.pos >= len(c.in) {
		return false, c.errorf("unexpected end of JSON input")
	}
	switch c.in[c.pos] {
	case ',':
		c.keep(c.pos, c.pos+1)
		c.pos++
		return true, nil
	case '}':
		c.keep(c.pos, c.pos+1)
		c.pos++
		return false, nil
	}
	return false, c.errorf("unexpected %s after an object member", c.describe())
}

// reorder rewrites the object at out[start:] (its members are
// c.members[base:]) in JavaScript's property order, one member per key
// holding the key's last value.
func (c *canon) reorder(start, base int) {
	c.materialize()
	ms := c.members[base:]
	c.order = c.order[:0]
	for i, m := range ms {
		if m.first < 0 && m.isIndex {
			c.order = append(c.order, int32(i))
		}
	}
	slices.SortFunc(c.order, func(a, b int32) int { return cmp.Compare(ms[a].index, ms[b].index) })
	for i, m := range ms {
		if m.first < 0 && !m.isIndex {
			c.order = append(c.order, int32(i))
		}
	}
	c.scratch = append(c.scratch[:0], c.out[start:]...)
	c.out = append(c.out[:start], '{')
	for n, i := range c.order {
		if n > 0 {
			c.out = append(c.out, ',')
		}
		m := ms[ms[i].last]
		c.out = append(c.out, c.scratch[m.ks-start:m.ve-start]...)
	}
	c.out = append(c.out, '}')
}

// arrayIndex reports whether the key is an array index, a canonical decimal
// from 0 to 2^32-2, and which.
func arrayIndex(k []byte) (uint32, bool) {
	if len(k) == 0 || len(k) > 10 || k[0] == '0' && len(k) > 1 {
		return 0, false
	}
	var n uint64
	for _, b := range k {
		if b < '0' || b > '9' {
			return 0, false
		}
		n = n*10 + uint64(b-'0')
	}
	if n > 1<<32-2 {
		return 0, false
	}
	return uint32(n), true
}

// str reads a string; the input is valid UTF-8. It is one loop over the
// string's bytes with a case per escape, kept whole so that the grammar of
// a JSON string reads in one place (hence its length).
func (c *canon) str() error {
	in := c.in
	run := c.pos // input not yet output; it is output unchanged
	c.pos++
	for {
		i := skipSafe(in, c.pos)
		c.pos = i
		if i >= len(in) {
			return c.errorf("unterminated string")
		}
		switch b := in[i]; {
		case b == '"':
			c.pos++
			c.keep(run, c.pos)
			return nil
		case b < 0x20:
			return c.errorf("unexpected %s in a string (control characters must be escaped)", c.describe())
		}
		// A backslash.
		if i+1 >= len(in) {
			c.pos = len(in)
			return c.errorf("unterminated string")
		}
		switch in[i+1] {
		case '"', '\\', 'b', 'f', 'n', 'r', 't':
			c.pos += 2 // written the same
			continue
		case '/':
			c.keep(run, i)
			c.keep(i+1, i+2)
			c.pos += 2
			run = c.pos
			continue
		case 'u':
		default:
			c.pos++
			return c.errorf("invalid escape %s in a string", c.describe())
		}
		u, ok := hex4(in, i+2)
		if !ok {
			c.pos = i
			return c.errorf("invalid \\u escape in a string")
		}
		end := i + 6
		var buf [12]byte
		var canonical []byte
		switch {
		case 0xD800 <= u && u < 0xDC00:
			if lo, ok := hex4(in, i+8); ok && end+1 < len(in) && in[end] == '\\' && in[end+1] == 'u' && 0xDC00 <= lo && lo < 0xE000 {
				end += 6
				canonical = utf8.AppendRune(buf[:0], 0x10000+(rune(u)-0xD800)<<10+(rune(lo)-0xDC00))
			} else {
				canonical = appendU(buf[:0], u)
			}
		case 0xDC00 <= u && u < 0xE000:
			canonical = appendU(buf[:0], u)
		case u < 0x20 || u == '"' || u == '\\':
			canonical = appendEscape(buf[:0], byte(u))
		default:
			canonical = utf8.AppendRune(buf[:0], rune(u))
		}
		if !bytes.Equal(canonical, in[i:end]) {
			c.keep(run, i)
			c.write(canonical)
			run = end
		}
		c.pos = end
	}
}

// skipSafe returns the index of the first byte at or after i that is '"',
// '\\' or a control character, or len(in). It looks at eight bytes at a time.
func skipSafe(in []byte, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(in); i += 8 {
		w := binary.LittleEndian.Uint64(in[i:])
		q := w ^ ('"' * ones)
		b := w ^ ('\\' * ones)
		// A byte below 0x20, or a zero byte in q or b, sets its high bit.
		if ((w-0x20*ones)&^w|(q-ones)&^q|(b-ones)&^b)&highs != 0 {
			break
		}
	}
	for i < len(in) && safe[in[i]] {
		i++
	}
	return i
}

// appendU appends \u and u in four lowercase hex digits.
func appendU(dst []byte, u uint16) []byte {
	return append(dst, '\\', 'u', hexDigits[u>>12], hexDigits[u>>8&0xF], hexDigits[u>>4&0xF], hexDigits[u&0xF])
}

// hex4 reads four hex digits at in[i:].
func hex4(in []byte, i int) (uint16, bool) {
	if i+4 > len(in) {
		return 0, false
	}
	var u uint16
	for _, b := range in[i : i+4] {
		switch {
		case '0' <= b && b <= '9':
			b -= '0'
		case 'a' <= b && b <= 'f':
			b -= 'a' - 10
		case 'A' <= b && b <= 'F':
			b -= 'A' - 10
		default:
			return 0, false
		}
		u = u<<4 | uint16(b)
	}
	return u, true
}

// number reads a number and writes it as JSON.stringify would. It follows
// the JSON number grammar (sign, integer, fraction, exponent) step by step
// in one function, which is why it is longer than most.
func (c *canon) number() error {
	in := c.in
	start := c.pos
	i := start
	if in[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(in) && '0' <= in[i] && in[i] <= '9' {
			i++
			n++
		}
		return n
	}
	switch {
	case i < len(in) && in[i] == '0':
		i++
	case i < len(in) && '1' <= in[i] && in[i] <= '9':
		digits()
	default:
		c.pos = i
		return c.errorf("unexpected %s in a number", c.describe())
	}
	intEnd := i
	if i < len(in) && in[i] == '.' {
		i++
		if digits() == 0 {
			c.pos = i
			return c.errorf("unexpected %s after a decimal point", c.describe())
		}
	}
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		i++
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			i++
		}
		if digits() == 0 {
			c.pos = i
			return c.errorf("unexpected %s in an exponent", c.describe())
		}
	}
	c.pos = i
	lit := in[start:i]
	// An integer of up to 15 digits is a float64 exactly and is written as it
	// stands, except -0.
	if i == intEnd && len(lit) <= 15 && !(lit[0] == '-' && lit[1] == '0') {
		c.keep(start, i)
		return nil
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return c.errorf("bad number") // unreachable: the grammar was checked
	}
	var buf [32]byte
	if canonical := AppendNumber(buf[:0], f); !bytes.Equal(canonical, lit) {
		c.write(canonical)
	} else {
		c.keep(start, i)
	}
	return nil
}
