package sheen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
)

// linkTo is a caller's link to u, made without NewDownloadLink's check so
// that tests can hand the SDK any URL.
func linkTo(u string) DownloadLink { return DownloadLink{signed: &u} }

// linkSecrets are the parts of the test links that must never show.
var linkSecrets = []string{"X-Amz-Signature", "deadbeef", "AKIA", "X-Amz-Credential"}

// renderings prints v every way a caller might: fmt verbs on the value and
// on a pointer, slog's JSON and text handlers, json.Marshal, and nested in
// a struct and a map.
func renderings[T any](t *testing.T, v T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		out[verb] = fmt.Sprintf(verb, v)
		out[verb+" pointer"] = fmt.Sprintf(verb, &v)
		out[verb+" in a slice"] = fmt.Sprintf(verb, []*T{&v})
	}
	for name, h := range map[string]func(*bytes.Buffer) slog.Handler{
		"slog JSON": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		"slog text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	} {
		var buf bytes.Buffer
		slog.New(h(&buf)).Info("msg", "value", v, "pointer", &v, "group", slog.GroupValue(slog.Any("nested", v)))
		out[name] = buf.String()
	}
	for name, x := range map[string]any{"value": v, "pointer": &v, "in a struct": struct{ X T }{v}, "in a map": map[string]*T{"x": &v}} {
		b, err := json.Marshal(x)
		if err != nil {
			t.Fatalf("json.Marshal %s: %v", name, err)
		}
		out["json "+name] = string(b)
	}
	return out
}

func checkRedacted(t *testing.T, what string, out map[string]string, wantURL string) {
	t.Helper()
	for name, s := range out {
		for _, secret := range linkSecrets {
			if strings.Contains(s, secret) {
				t.Errorf("%s %s shows %q: %s", what, name, secret, s)
			}
		}
		if !strings.Contains(s, wantURL) {
			t.Errorf("%s %s does not show the redacted URL %s: %s", what, name, wantURL, s)
		}
	}
}

// Links and results from the worker and the store redact the signed URL
// in every rendering, while the download itself still works.
func TestExportsRedactionEverywhere(t *testing.T) {
	c, mock, _ := newExportsClient(t)
	mock.RegisterResponder("GET", exportsProjectURL, httpmock.NewStringResponder(200, exportsLinkBody(1, iso(exportsStart.Add(24*time.Hour)))))
	mock.RegisterResponder("GET", "https://store.test/exports/p1-1.zip", httpmock.NewStringResponder(200, "PK\x03\x04zip"))
	link, err := c.Exports.ProjectLink(context.Background(), "p1", "u1")
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Exports.Download(context.Background(), link, &bytes.Buffer{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const redacted = "https://store.test/exports/p1-1.zip?REDACTED"
	checkRedacted(t, "DownloadLink", renderings(t, link), redacted)
	checkRedacted(t, "DownloadResult", renderings(t, *res), redacted)

	// fmt cannot call String on a value in an unexported field: it walks
	// the struct, and finds only a pointer where the URL is kept.
	hidden := struct {
		link DownloadLink
		res  DownloadResult
	}{link, *res}
	for _, verb := range []string{"%v", "%+v", "%#v", "%d", "%x"} {
		out := fmt.Sprintf(verb, hidden)
		for _, secret := range linkSecrets {
			if strings.Contains(out, secret) || strings.Contains(out, fmt.Sprintf("%x", secret)) {
				t.Errorf("%s of a struct holding a link in an unexported field shows %q: %s", verb, secret, out)
			}
		}
	}
}

// MarshalJSON writes the fields a log or an API answer wants.
func TestExportsLinkJSON(t *testing.T) {
	link := DownloadLink{
		signed:    new("https://store.test/exports/p1.zip?" + exportsSecretQuery),
		ExpiresAt: exportsStart,
		Filename:  "p1-latest.zip",
		Size:      123,
		Version:   ExportVersion{ID: "ver-9", Prompt: "make a shop", CreatedAt: exportsStart.Add(-time.Hour)},
	}
	const want = `{"url":"https://store.test/exports/p1.zip?REDACTED","expiresAt":"2025-06-07T08:00:00Z","filename":"p1-latest.zip","size":123,"version":{"id":"ver-9","prompt":"make a shop","createdAt":"2025-06-07T07:00:00Z"}}`
	for name, v := range map[string]any{"value": link, "pointer": &link} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("json.Marshal(link %s) =\n%s\nwant\n%s", name, b, want)
		}
	}
	// A link without a version (the zero ExportVersion) has none in JSON.
	noVersion := link
	noVersion.Version = ExportVersion{}
	b, err := json.Marshal(noVersion)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "version") {
		t.Errorf("json.Marshal(link without a version) = %s", b)
	}
	res := &DownloadResult{Written: 10, Total: 10, Format: FormatZip, Attempts: 2, Resumes: 1, Link: link}
	b, err = json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	const wantRes = `{"written":10,"total":10,"format":"zip","attempts":2,"resumes":1,"restarts":0,"linkRefreshed":false,"link":` + want + `}`
	if string(b) != wantRes {
		t.Errorf("json.Marshal(result) =\n%s\nwant\n%s", b, wantRes)
	}
}

// The SDK's own log lines (JSON handler, debug level) redact the link too.
func TestExportsSDKLogsRedact(t *testing.T) {
	content := downloadContent(200_000)
	store := newDownloadStore(t, content)
	store.cut[0] = 50_000
	c, _ := downloadWorker(t, store)
	var logged bytes.Buffer
	c.core.logger = slog.New(slog.NewJSONHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if _, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	out := logged.String()
	if !strings.Contains(out, "download interrupted") || !strings.Contains(out, "/exports/p1.zip?REDACTED") {
		t.Fatalf("log lacks the resume or the redacted link: %s", out)
	}
	for _, secret := range append(linkSecrets, "token=", "tok1") {
		if strings.Contains(out, secret) {
			t.Errorf("log shows %q: %s", secret, out)
		}
	}
}

// SignedURL hands out the whole URL; NewDownloadLink checks it without
// quoting it.
func TestExportsSignedURLAndNewDownloadLink(t *testing.T) {
	raw := "https://store.test/exports/p1.zip?" + exportsSecretQuery
	l, err := NewDownloadLink(raw)
	if err != nil || l.SignedURL() != raw {
		t.Fatalf("NewDownloadLink: %v, %v", l, err)
	}
	if (DownloadLink{}).SignedURL() != "" || (DownloadLink{}).String() != "sheen.DownloadLink{<no url>}" {
		t.Errorf("zero link: %q, %s", (DownloadLink{}).SignedURL(), DownloadLink{})
	}
	for _, bad := range []string{"", "ftp://store.test/a?sig=s3cr3t", "/relative?sig=s3cr3t", "https://?sig=s3cr3t", "https://a b/?sig=s3cr3t"} {
		l, err := NewDownloadLink(bad)
		var ve *ValidationError
		if l != (DownloadLink{}) || !errors.As(err, &ve) || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("NewDownloadLink(%q) = %v, %v", bad, l, err)
		}
	}
	// A zero link inside a result is printed, logged and marshalled without
	// a panic.
	res := DownloadResult{Total: -1, Format: FormatUnknown}
	for name, out := range renderings(t, res) {
		if strings.Contains(out, "PANIC") || strings.Contains(out, "panicked") {
			t.Errorf("%s: %s", name, out)
		}
	}
}
