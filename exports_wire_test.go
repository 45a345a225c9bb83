package sheen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// urlSeeds are URLs with the shapes redaction must get right.
var urlSeeds = []string{
	"https://store.test/exports/p1.zip?" + exportsSecretQuery,
	"https://user:pw@store.test/a.zip?sig=1#frag",
	"https://store.test/a.zip?",
	"https://store.test/a.zip#frag?sig=1",
	"http://[::1]:9000/bucket/a%20b.zip?X-Amz-Signature=abc",
	"https://store.test/a%2Fb%3Fc.zip?sig=%zz",
	"https://store.test/a b.zip?sig=1",
	"https://store.test/a.zip?sig=\x00",
	"https:opaque?sig=1",
	"//store.test/a.zip?sig=1",
	"https://a@b@store.test/?sig=1",
	"",
	"?",
}

// swapQuery replaces u's query, if it has one, with another and drops its
// fragment, cutting where url.Parse does (fragment first, then query).
func swapQuery(u string) string {
	before, _, _ := strings.Cut(u, "#")
	base, _, hasQuery := strings.Cut(before, "?")
	if hasQuery {
		return base + "?OTHER-QUERY"
	}
	return base
}

// renderAll is every way a link (alone, in a result, in an error) is
// printed, logged or marshalled, in one string.
func renderAll(t *testing.T, l DownloadLink) string {
	t.Helper()
	var sb strings.Builder
	res := DownloadResult{Written: 1, Total: 2, Format: FormatZip, Link: l}
	for _, v := range []any{l, &l, res, &res} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			fmt.Fprintf(&sb, verb+"\n", v)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal: %v", err)
		}
		sb.Write(b)
		noTime := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, noTime)).Info("m", "v", v)
		slog.New(slog.NewTextHandler(&buf, noTime)).Info("m", "v", v)
		sb.Write(buf.Bytes())
	}
	sb.WriteString((&DownloadError{URL: redactURL(l.SignedURL()), Err: ErrTruncated}).Error())
	return sb.String()
}

// checkQueryNeverShows asserts that nothing renderAll prints depends on the
// link's query: the renderings equal those of the same link with another
// query.
func checkQueryNeverShows(t *testing.T, l DownloadLink) {
	t.Helper()
	raw := l.SignedURL()
	other := swapQuery(raw)
	_, err1 := url.Parse(raw)
	_, err2 := url.Parse(other)
	if (err1 == nil) != (err2 == nil) {
		// The query made the URL unparseable: it shows as a constant.
		if s := l.String(); !strings.Contains(s, "<unparseable url>") {
			t.Fatalf("unparseable %q shown as %s", raw, s)
		}
		return
	}
	l2 := l
	l2.signed = &other
	if a, b := renderAll(t, l), renderAll(t, l2); a != b {
		t.Fatalf("a rendering depends on the query of %q:\n%s\nwith another query:\n%s", raw, a, b)
	}
}

func FuzzRedactURL(f *testing.F) {
	for _, s := range urlSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, u string) {
		r := redactURL(u)
		if r == "<no url>" || r == "<unparseable url>" {
			if (r == "<no url>") != (u == "") {
				t.Fatalf("redactURL(%q) = %s", u, r)
			}
			return
		}
		p, err := url.Parse(u)
		if err != nil {
			t.Fatalf("redactURL(%q) = %s for a URL that does not parse", u, r)
		}
		base, redactedQuery := strings.CutSuffix(r, "?REDACTED")
		if redactedQuery != (p.RawQuery != "" || p.ForceQuery) {
			t.Fatalf("redactURL(%q) = %s; the query is %q", u, r, p.RawQuery)
		}
		if strings.ContainsAny(base, "?#") {
			t.Fatalf("redactURL(%q) = %s keeps a query or fragment", u, r)
		}
		scheme, rest, ok := strings.Cut(base, "://")
		authority, _, _ := strings.Cut(rest, "/")
		if !ok || scheme != p.Scheme || strings.Contains(authority, "@") {
			t.Fatalf("redactURL(%q) = %s; want scheme://host/path without user info", u, r)
		}
	})
}

func FuzzDownloadLinkFormatting(f *testing.F) {
	for _, s := range urlSeeds {
		f.Add(s, "p1-latest.zip", int64(123), "ver-9")
	}
	f.Fuzz(func(t *testing.T, u, filename string, size int64, version string) {
		l := DownloadLink{signed: &u, Filename: filename, Size: size, ExpiresAt: exportsStart}
		if version != "" {
			l.Version = ExportVersion{ID: version, Prompt: version}
		}
		checkQueryNeverShows(t, l)
	})
}

func FuzzDownloadLinkDecode(f *testing.F) {
	f.Add([]byte(exportsLinkBody(1, "2025-06-08T08:00:00.000Z")))
	f.Add([]byte(`{"success":true,"downloadUrl":"https://s.test/a.zip?sig=1","expiresAt":12,"size":"9","version":{"createdAt":null}}`))
	f.Add([]byte(`{"success":false,"downloadUrl":"https://s.test/a.zip?sig=1"}`))
	f.Add([]byte(`{"downloadUrl":"ftp://s.test/a.zip?sig=1"}`))
	f.Add([]byte(`{"downloadUrl":"https://u:p@s.test/a.zip?sig=1#f","size":-1,"version":{"id":"v","projectId":"p"}}`))
	f.Add([]byte(`{"downloadUrl":""}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var w downloadLinkWire
		if err := json.Unmarshal(body, &w); err != nil {
			return
		}
		var a linkAnswer
		if err := json.Unmarshal(body, &a); err != nil {
			// One of the fixed reasons: nothing of the answer is quoted.
			if !errors.Is(err, errLinkNotSuccess) && !errors.Is(err, errLinkNoURL) && !errors.Is(err, errLinkBadURL) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		l := &a.link
		if l.SignedURL() != w.DownloadURL || !isAbsoluteHTTPURL(l.SignedURL()) {
			t.Fatalf("link to %q from downloadUrl %q", l.SignedURL(), w.DownloadURL)
		}
		if !l.ExpiresAt.IsZero() && l.ExpiresAt.Year() < 0 {
			t.Fatalf("ExpiresAt %v", l.ExpiresAt)
		}
		if (w.Version == nil || w.Version.ID == "") != (l.Version.ID == "") {
			t.Fatalf("version %+v from %+v", l.Version, w.Version)
		}
		// What a shared cache holds reads back as the same link (one that
		// cannot be encoded is handed out, never shared).
		l.from = linkRequest{linkVersion, "v1", "u1"}
		if raw, err := encodeLink(l); err == nil {
			back, err := decodeLink(raw)
			if err != nil {
				t.Fatalf("decodeLink: %v", err)
			}
			if d := cmp.Diff(*l, *back, cmp.Exporter(func(reflect.Type) bool { return true })); d != "" {
				t.Fatalf("link through the shared cache's codec (-sent +read):\n%s", d)
			}
		}
		checkQueryNeverShows(t, *l)
	})
}
