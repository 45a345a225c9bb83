package signing

import "testing"

func TestWellFormedIsWHATWG(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"abc", "abc"},
		{"\xff", "\uFFFD"},
		{"\xc3", "\uFFFD"},
		{"\xe2\x82", "\uFFFD"},                 // one maximal subpart
		{"\xe2\x82x", "\uFFFDx"},               // cut short by an ASCII byte
		{"\xe0\x80\x80", "\uFFFD\uFFFD\uFFFD"}, // overlong: E0 needs A0..BF next
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"}, // a surrogate
		{"\xf0\x9f\x98", "\uFFFD"},
		{"\xf4\x90\x80\x80", "\uFFFD\uFFFD\uFFFD\uFFFD"}, // above U+10FFFF
		{"é\xffé", "é\uFFFDé"},
	} {
		if got := wellFormed(tc.in); got != tc.want {
			t.Errorf("wellFormed(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
