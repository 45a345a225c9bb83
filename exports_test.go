package sheen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jarcoal/httpmock"
)

// exportsStart is the fake clock's start in the exports tests.
var exportsStart = time.Date(2025, 6, 7, 8, 0, 0, 0, time.UTC)

// exportsSecretQuery is the credential part of the links the tests hand
// out: it must never show in a string, a log line or an error.
const exportsSecretQuery = "X-Amz-Signature=deadbeefcafe0123456789&X-Amz-Credential=AKIA-TEST-CREDENTIAL"

const (
	exportsProjectURL = "https://worker.test/base/v1/projects/p1/export"
	exportsVersionURL = "https://worker.test/base/v1/versions/v1/download"
)

// exportsLinkBody is a 200 export answer whose URL carries n and expires at
// expires (any string, to test bad values).
func exportsLinkBody(n int, expires string) string {
	return fmt.Sprintf(`{"success":true,"downloadUrl":"https://store.test/exports/p1-%d.zip?%s","expiresAt":%q,"filename":"p1-latest.zip","size":"123456","version":{"id":"ver-9","prompt":"make a shop","createdAt":"2025-06-01T10:00:00.000Z"}}`,
		n, exportsSecretQuery, expires)
}

// newExportsClient makes a client over httpmock driven by a fake clock.
func newExportsClient(t *testing.T, opts ...Option) (*WorkerClient, *httpmock.MockTransport, *fakeClock) {
	t.Helper()
	clock := newFakeClock(exportsStart)
	c, mock := newMockClient(t, append([]Option{WithClock(clock)}, opts...)...)
	return c, mock, clock
}

// exportsCounting answers each request with body(n) for the n-th request.
func exportsCounting(calls *atomic.Int32, body func(n int) string) httpmock.Responder {
	return func(r *http.Request) (*http.Response, error) {
		n := int(calls.Add(1))
		return httpmock.NewStringResponse(200, body(n)), nil
	}
}

func iso(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

var linkCmp = cmpopts.IgnoreUnexported(DownloadLink{})

func TestExportsProjectLink(t *testing.T) {
	c, mock, _ := newExportsClient(t)
	expires := exportsStart.Add(24 * time.Hour)
	var got *http.Request
	mock.RegisterResponder("GET", exportsProjectURL, func(r *http.Request) (*http.Response, error) {
		got = r
		return httpmock.NewStringResponse(200, exportsLinkBody(1, iso(expires))), nil
	})
	link, err := c.Exports.ProjectLink(context.Background(), "p1", "user 1")
	if err != nil {
		t.Fatal(err)
	}
	want := DownloadLink{
		ExpiresAt: expires,
		Filename:  "p1-latest.zip",
		Size:      123456,
		Version:   ExportVersion{ID: "ver-9", Prompt: "make a shop", CreatedAt: time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)},
	}
	if d := cmp.Diff(want, link, linkCmp); d != "" {
		t.Errorf("link (-want +got):\n%s", d)
	}
	if link.SignedURL() != "https://store.test/exports/p1-1.zip?"+exportsSecretQuery {
		t.Errorf("SignedURL() is not the worker's downloadUrl: %s", link)
	}
	if got.URL.RequestURI() != "/base/v1/projects/p1/export?userId=user+1" {
		t.Errorf("request target %q", got.URL.RequestURI())
	}
	if got.Header.Get("x-sheen-signature") == "" {
		t.Error("the worker request is not signed")
	}
}

func TestExportsVersionLink(t *testing.T) {
	c, mock, _ := newExportsClient(t)
	var target string
	mock.RegisterResponder("GET", exportsVersionURL, func(r *http.Request) (*http.Response, error) {
		target = r.URL.RequestURI()
		return httpmock.NewStringResponse(200, `{"success":true,"downloadUrl":"https://store.test/v/v1.zip?sig=abc","expiresAt":"2025-06-08T08:00:00+02:00","filename":"v1.zip","size":42,"version":{"id":"v1","prompt":"p","createdAt":"bad date","projectId":"p1"}}`), nil
	})
	link, err := c.Exports.VersionLink(context.Background(), "v1", "u1")
	if err != nil {
		t.Fatal(err)
	}
	want := DownloadLink{
		ExpiresAt: time.Date(2025, 6, 8, 6, 0, 0, 0, time.UTC),
		Filename:  "v1.zip",
		Size:      42,
		Version:   ExportVersion{ID: "v1", Prompt: "p", ProjectID: "p1"},
	}
	if d := cmp.Diff(want, link, linkCmp, cmpopts.EquateApproxTime(0)); d != "" {
		t.Errorf("link (-want +got):\n%s", d)
	}
	if link.SignedURL() != "https://store.test/v/v1.zip?sig=abc" {
		t.Errorf("SignedURL() is not the worker's downloadUrl: %s", link)
	}
	if target != "/base/v1/versions/v1/download?userId=u1" {
		t.Errorf("request target %q", target)
	}
}

func TestExportsRefusesBadIDs(t *testing.T) {
	c, mock, _ := newExportsClient(t)
	for _, tc := range []struct{ id, user string }{
		{"", "u1"}, {"p1", ""}, {"../p", "u1"}, {"a/b", "u1"}, {"p1", "u\n1"}, {"..", "u1"},
	} {
		_, err := c.Exports.ProjectLink(context.Background(), tc.id, tc.user)
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("ProjectLink(%q, %q): %v, want *ValidationError", tc.id, tc.user, err)
		}
		_, err = c.Exports.VersionLink(context.Background(), tc.id, tc.user)
		if !errors.As(err, &ve) {
			t.Errorf("VersionLink(%q, %q): %v, want *ValidationError", tc.id, tc.user, err)
		}
	}
	if n := mock.GetTotalCallCount(); n != 0 {
		t.Errorf("%d requests reached the worker", n)
	}
}

func TestExportsLinkRedaction(t *testing.T) {
	link := DownloadLink{
		signed:    new("https://user:pw@store.test/exports/p1.zip?" + exportsSecretQuery + "#frag"),
		ExpiresAt: exportsStart,
		Filename:  "p1.zip",
		Size:      7,
		Version:   ExportVersion{ID: "ver-9"},
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("got link", "link", link, "ptr", &link)
	marshalled, err := json.Marshal(link)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"String":                link.String(),
		"%v":                    fmt.Sprintf("%v", link),
		"%v pointer":            fmt.Sprintf("%v", &link),
		"%+v":                   fmt.Sprintf("%+v", link),
		"%+v pointer":           fmt.Sprintf("%+v", &link),
		"%#v":                   fmt.Sprintf("%#v", link),
		"%#v pointer":           fmt.Sprintf("%#v", &link),
		"%s in a slice":         fmt.Sprintf("%s", []DownloadLink{link}),
		"%s in a pointer slice": fmt.Sprintf("%s", []*DownloadLink{&link}),
		"slog":                  logged.String(),
		"JSON":                  string(marshalled),
	}
	for name, out := range outputs {
		for _, secret := range []string{"X-Amz-Signature", "deadbeef", "AKIA", "pw@", "frag"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s shows %q: %s", name, secret, out)
			}
		}
		if !strings.Contains(out, "https://store.test/exports/p1.zip?REDACTED") {
			t.Errorf("%s does not show the redacted URL: %s", name, out)
		}
	}
	if s := linkTo("https://store.test/a b%zz?x=1").String(); strings.Contains(s, "x=1") {
		t.Errorf("unparseable URL shown: %s", s)
	}
}

func ExampleDownloadLink_String() {
	link, err := NewDownloadLink("https://store.example.com/exports/p1.zip?X-Amz-Signature=0123abcd")
	if err != nil {
		panic(err)
	}
	link.ExpiresAt = time.Date(2025, 6, 8, 8, 0, 0, 0, time.UTC)
	link.Filename = "p1-latest.zip"
	fmt.Println(link)
	// Output: sheen.DownloadLink{https://store.example.com/exports/p1.zip?REDACTED filename="p1-latest.zip" expires=2025-06-08T08:00:00Z}
}

func TestExportsLinkCacheReuseAndMargin(t *testing.T) {
	c, mock, clock := newExportsClient(t)
	expires := exportsStart.Add(24 * time.Hour)
	var calls atomic.Int32
	mock.RegisterResponder("GET", exportsProjectURL, exportsCounting(&calls, func(n int) string {
		return exportsLinkBody(n, iso(expires))
	}))
	ctx := context.Background()
	get := func() string {
		t.Helper()
		l, err := c.Exports.ProjectLink(ctx, "p1", "u1")
		if err != nil {
			t.Fatal(err)
		}
		return l.SignedURL()
	}
	first := get()
	clock.Advance(22*time.Hour + 59*time.Minute) // 1h01m left: still reused
	if again := get(); again != first || calls.Load() != 1 {
		t.Fatalf("within the margin: %d requests, same link %v", calls.Load(), again == first)
	}
	clock.Advance(time.Minute) // exactly 1 h left: fetched anew
	if fresh := get(); fresh == first || calls.Load() != 2 {
		t.Fatalf("at the margin: %d requests, new link %v", calls.Load(), fresh != first)
	}
	// The new link (same expiry) is within the margin too, so not cached.
	get()
	if calls.Load() != 3 {
		t.Fatalf("a link within the margin was served from cache (%d requests)", calls.Load())
	}
}

func TestExportsLinkCacheKeys(t *testing.T) {
	c, mock, _ := newExportsClient(t)
	expires := iso(exportsStart.Add(24 * time.Hour))
	var projectCalls, versionCalls atomic.Int32
	mock.RegisterResponder("GET", exportsProjectURL, exportsCounting(&projectCalls, func(n int) string { return exportsLinkBody(n, expires) }))
	mock.RegisterResponder("GET", "https://worker.test/base/v1/versions/p1/download", exportsCounting(&versionCalls, func(n int) string { return exportsLinkBody(100+n, expires) }))
	ctx := context.Background()
	for range 3 {
		for _, user := range []string{"u1", "u2"} {
			if _, err := c.Exports.ProjectLink(ctx, "p1", user); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exports.VersionLink(ctx, "p1", user); err != nil {
				t.Fatal(err)
			}
		}
	}
	if projectCalls.Load() != 2 || versionCalls.Load() != 2 {
		t.Errorf("want one request per (kind, id, user): project %d, version %d", projectCalls.Load(), versionCalls.Load())
	}
}

func TestExportsLinkMarginOption(t *testing.T) {
	c, mock, clock := newExportsClient(t, WithCache(CacheConfig{LinkMargin: 10 * time.Minute}))
	var calls atomic.Int32
	mock.RegisterResponder("GET", exportsProjectURL, exportsCounting(&calls, func(n int) string {
		return exportsLinkBody(n, iso(exportsStart.Add(24*time.Hour)))
	}))
	ctx := context.Background()
	c.Exports.ProjectLink(ctx, "p1", "u1")
	clock.Advance(23*time.Hour + 49*time.Minute)
	c.Exports.ProjectLink(ctx, "p1", "u1")
	if calls.Load() != 1 {
		t.Fatalf("11 minutes before expiry with a 10-minute margin: %d requests", calls.Load())
	}
	clock.Advance(time.Minute)
	c.Exports.ProjectLink(ctx, "p1", "u1")
	if calls.Load() != 2 {
		t.Fatalf("at a 10-minute margin: %d requests", calls.Load())
	}
}

// A negative margin reuses a link until it expires.
func TestExportsNoLinkMargin(t *testing.T) {
	c, mock, clock := newExportsClient(t, WithCache(CacheConfig{LinkMargin: -1}))
	var calls atomic.Int32
	mock.RegisterResponder("GET", exportsProjectURL, exportsCounting(&calls, func(n int) string {
		return exportsLinkBody(n, iso(exportsStart.Add(24*time.Hour)))
	}))
	ctx := context.Background()
	c.Exports.ProjectLink(ctx, "p1", "u1")
	clock.Advance(24*time.Hour - time.Second)
	c.Exports.ProjectLink(ctx, "p1", "u1")
	if calls.Load() != 1 {
		t.Fatalf("a second before expiry with no margin: %d requests, want 1", calls.Load())
	}
	clock.Advance(time.Second)
	c.Exports.ProjectLink(ctx, "p1", "u1")
	if calls.Load() != 2 {
		t.Fatalf("at expiry: %d requests, want 2", calls.Load())
	}
}

func TestExportsBadExpiresAtIsNeverCached(t *testing.T) {
	for _, tc := range []struct {
		name, expires string
		wantZero      bool
	}{
		{"unparseable", "tomorrow-ish", true},
		{"empty", "", true},
		{"numeric", "1767225600", true},
		{"past", iso(exportsStart.Add(-time.Hour)), false},
		{"within the margin", iso(exportsStart.Add(30 * time.Minute)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, mock, _ := newExportsClient(t)
			var calls atomic.Int32
			mock.RegisterResponder("GET", exportsProjectURL, exportsCounting(&calls, func(n int) string { return exportsLinkBody(n, tc.expires) }))
			for i := 1; i <= 2; i++ {
				l, err := c.Exports.ProjectLink(context.Background(), "p1", "u1")
				if err != nil {
					t.Fatal(err)
				}
				// Still handed to the caller: the object store decides.
				if want := fmt.Sprintf("/exports/p1-%d.zip", i); !strings.Contains(l.SignedURL(), want) {
					t.Errorf("call %d got %s, want a fresh link %s", i, l, want)
				}
				if l.ExpiresAt.IsZero() != tc.wantZero {
					t.Errorf("ExpiresAt = %v", l.ExpiresAt)
				}
			}
			if calls.Load() != 2 {
				t.Errorf("%d requests for two calls: the link was cached", calls.Load())
			}
		})
	}
}

// Tests that make more requests than the limiter's burst use the real clock:
// with the fake one, the limiter would wait for it to move.

func TestExportsInvalidate(t *testing.T) {
	c, mock := newMockClient(t)
	expires := iso(time.Now().Add(24 * time.Hour))
	var calls atomic.Int32
	mock.RegisterResponder("GET", exportsProjectURL, exportsCounting(&calls, func(n int) string { return exportsLinkBody(n, expires) }))
	var vcalls atomic.Int32
	mock.RegisterResponder("GET", exportsVersionURL, exportsCounting(&vcalls, func(n int) string { return exportsLinkBody(n, expires) }))
	ctx := context.Background()
	l, _ := c.Exports.ProjectLink(ctx, "p1", "u1")
	c.Exports.Invalidate(l)
	l2, _ := c.Exports.ProjectLink(ctx, "p1", "u1")
	c.Exports.forgetProject("p1", "u1") // what Builds does once a build starts
	c.Exports.ProjectLink(ctx, "p1", "u1")
	if calls.Load() != 3 || l.SignedURL() == l2.SignedURL() {
		t.Errorf("after invalidation: %d requests", calls.Load())
	}
	c.Exports.forgetProject("p1", "u2") // another user's: ours stays
	c.Exports.ProjectLink(ctx, "p1", "u1")
	if calls.Load() != 3 {
		t.Errorf("forgetting another user's link dropped ours: %d requests", calls.Load())
	}
	vl, _ := c.Exports.VersionLink(ctx, "v1", "u1")
	c.Exports.forgetProject("v1", "u1") // a project's link, not the version's
	c.Exports.VersionLink(ctx, "v1", "u1")
	c.Exports.Invalidate(vl)
	c.Exports.VersionLink(ctx, "v1", "u1")
	if vcalls.Load() != 2 {
		t.Errorf("after invalidating the version link: %d requests, want 2", vcalls.Load())
	}
	// A link the caller built, the zero link and a link whose fields the
	// caller changed name no cached link: nothing is dropped.
	c.Exports.Invalidate(linkTo("https://x.test/"))
	c.Exports.Invalidate(DownloadLink{})
	c.Exports.Invalidate(DownloadLink{Filename: vl.Filename, Version: vl.Version})
	c.Exports.VersionLink(ctx, "v1", "u1")
	if vcalls.Load() != 2 {
		t.Errorf("a link not from the cache dropped a cached one: %d requests, want 2", vcalls.Load())
	}
	// A copy the caller changed still names the link it came from.
	changed := vl
	changed.Filename, changed.Version.ID = "other.zip", "other"
	c.Exports.Invalidate(changed)
	c.Exports.VersionLink(ctx, "v1", "u1")
	if vcalls.Load() != 3 {
		t.Errorf("invalidating a changed copy of the link: %d requests, want 3", vcalls.Load())
	}
}

// Each caller owns the link it gets: changing every field of one, the
// version's too, changes nothing a later call returns, whether the link
// came from the worker (a miss) or from the cache (a hit).
func TestExportsReturnsCopies(t *testing.T) {
	c, mock, _ := newExportsClient(t)
	mock.RegisterResponder("GET", exportsProjectURL, httpmock.NewStringResponder(200, exportsLinkBody(1, iso(exportsStart.Add(24*time.Hour)))))
	ctx := context.Background()
	all := cmp.Exporter(func(reflect.Type) bool { return true }) // the signed URL and the request too
	miss, err := c.Exports.ProjectLink(ctx, "p1", "u1")
	if err != nil {
		t.Fatal(err)
	}
	want := miss
	if want.Version.ID == "" || want.Filename == "" || want.Size == 0 || want.ExpiresAt.IsZero() {
		t.Fatalf("the worker's link lacks a field this test changes: %s", want)
	}
	scribble(t, reflect.ValueOf(&miss).Elem())
	hit, err := c.Exports.ProjectLink(ctx, "p1", "u1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, hit, all); d != "" {
		t.Errorf("changing the link a miss returned changed a later hit (-want +got):\n%s", d)
	}
	scribble(t, reflect.ValueOf(&hit).Elem())
	again, _ := c.Exports.ProjectLink(ctx, "p1", "u1")
	if d := cmp.Diff(want, again, all); d != "" {
		t.Errorf("changing the link a hit returned changed a later hit (-want +got):\n%s", d)
	}
	if again.SignedURL() != "https://store.test/exports/p1-1.zip?"+exportsSecretQuery {
		t.Errorf("the signed URL changed: %s", again)
	}
	if n := mock.GetTotalCallCount(); n != 1 {
		t.Errorf("%d requests, want 1: the later calls were not hits", n)
	}
}

func TestExportsCacheIsBounded(t *testing.T) {
	c, mock := newMockClient(t, WithCache(CacheConfig{MaxLinks: 2}))
	var calls atomic.Int32
	now := time.Now()
	mock.RegisterResponder("GET", `=~^https://worker\.test/base/v1/projects/\w+/export`, exportsCounting(&calls, func(n int) string {
		return exportsLinkBody(n, iso(now.Add(time.Duration(10+n)*time.Hour)))
	}))
	ctx := context.Background()
	for _, p := range []string{"a", "b", "c", "c", "b", "a"} {
		if _, err := c.Exports.ProjectLink(ctx, p, "u1"); err != nil {
			t.Fatal(err)
		}
	}
	// a (closest to expiry) made room for c; a is fetched again at the end.
	if calls.Load() != 4 {
		t.Errorf("%d requests, want 4", calls.Load())
	}
	if n := c.exports.links.Len(); n > 2 {
		t.Errorf("cache holds %d links, limit 2", n)
	}

	off, mock2, _ := newExportsClient(t, WithCache(CacheConfig{MaxLinks: -1}))
	var calls2 atomic.Int32
	mock2.RegisterResponder("GET", exportsProjectURL, exportsCounting(&calls2, func(n int) string { return exportsLinkBody(n, iso(exportsStart.Add(24*time.Hour))) }))
	off.Exports.ProjectLink(ctx, "p1", "u1")
	off.Exports.ProjectLink(ctx, "p1", "u1")
	if calls2.Load() != 2 {
		t.Errorf("with caching off: %d requests, want 2", calls2.Load())
	}
}

func TestExportsConcurrentMissesMakeOneRequest(t *testing.T) {
	c, mock := newMockClient(t)
	var calls atomic.Int32
	release := make(chan struct{})
	mock.RegisterResponder("GET", exportsProjectURL, func(r *http.Request) (*http.Response, error) {
		calls.Add(1)
		<-release
		return httpmock.NewStringResponse(200, exportsLinkBody(1, iso(time.Now().Add(24*time.Hour)))), nil
	})
	const n = 1000
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	urls := make([]string, n)
	errs := make([]error, n)
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			l, err := c.Exports.ProjectLink(context.Background(), "p1", "u1")
			errs[i] = err
			urls[i] = l.SignedURL()
		}()
	}
	ready.Wait()
	close(start)
	// Let the first request through only once it is under way; everyone
	// else has missed by then or finds the link cached.
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	done.Wait()
	if got := calls.Load(); got != 1 {
		t.Fatalf("the worker saw %d requests, want 1", got)
	}
	for i := range n {
		if errs[i] != nil || urls[i] != urls[0] {
			t.Fatalf("caller %d: %v, %q", i, errs[i], urls[i])
		}
	}
}

func TestExportsArtifactMissing(t *testing.T) {
	c, mock := newMockClient(t)
	var calls atomic.Int32
	mock.RegisterResponder("GET", exportsVersionURL, func(r *http.Request) (*http.Response, error) {
		calls.Add(1)
		return httpmock.NewStringResponse(404, `{"error":"ARTIFACT_NOT_FOUND","message":"The build output for this version is gone","canRebuild":true,"rebuildUrl":"/v1/versions/v1/rebuild"}`), nil
	})
	_, err := c.Exports.VersionLink(context.Background(), "v1", "u1")
	var am *ArtifactMissingError
	if !errors.As(err, &am) {
		t.Fatalf("got %T %v, want *ArtifactMissingError", err, err)
	}
	want := ArtifactMissingError{CanRebuild: true, RebuildURL: "/v1/versions/v1/rebuild", VersionID: "v1", UserID: "u1"}
	if d := cmp.Diff(want, *am, cmpopts.IgnoreFields(ArtifactMissingError{}, "APIError"), cmpopts.IgnoreUnexported(ArtifactMissingError{})); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if am.Code != "ARTIFACT_NOT_FOUND" || am.Message != "The build output for this version is gone" {
		t.Errorf("code %q, message %q", am.Code, am.Message)
	}
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 404 {
		t.Errorf("errors.As *APIError: %v", ae)
	}
	if !errors.Is(err, ErrNotFound) {
		t.Error("not errors.Is(err, ErrNotFound)")
	}
	c.Exports.VersionLink(context.Background(), "v1", "u1")
	if calls.Load() != 2 {
		t.Errorf("a failure was cached: %d requests", calls.Load())
	}

	// A 404 that says nothing of rebuilding stays a plain *APIError.
	mock.RegisterResponder("GET", exportsProjectURL, httpmock.NewStringResponder(404, `{"error":"Project not found"}`))
	_, err = c.Exports.ProjectLink(context.Background(), "p1", "u1")
	if errors.As(err, &am) || !errors.As(err, &ae) || !errors.Is(err, ErrNotFound) {
		t.Errorf("plain 404: got %T %v", err, err)
	}
}

func TestExportsPayloadTooLarge(t *testing.T) {
	c, mock, _ := newExportsClient(t)
	body := `{"error":"Export too large","message":"Project exceeds the export size limit","size":3221225472,"limit":2147483648,"suggestion":"Remove large assets"}`
	mock.RegisterResponder("GET", exportsProjectURL, httpmock.NewStringResponder(413, body))
	mock.RegisterResponder("GET", exportsVersionURL, httpmock.NewStringResponder(413, body))
	for name, call := range map[string]func() (DownloadLink, error){
		"ProjectLink": func() (DownloadLink, error) { return c.Exports.ProjectLink(context.Background(), "p1", "u1") },
		"VersionLink": func() (DownloadLink, error) { return c.Exports.VersionLink(context.Background(), "v1", "u1") },
	} {
		l, err := call()
		if l != (DownloadLink{}) {
			t.Errorf("%s: a failed call returned the link %s, want the zero link", name, l)
		}
		var pt *PayloadTooLargeError
		if !errors.As(err, &pt) || !errors.Is(err, ErrPayloadTooLarge) {
			t.Fatalf("%s: got %T %v", name, err, err)
		}
		if pt.Size != 3221225472 || pt.Limit != 2147483648 || pt.Suggestion != "Remove large assets" {
			t.Errorf("%s: size %d limit %d suggestion %q", name, pt.Size, pt.Limit, pt.Suggestion)
		}
	}
}

func TestExportsUnusableAnswers(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"no url", `{"success":true,"expiresAt":"2025-06-08T08:00:00Z"}`},
		{"success false", `{"success":false,"downloadUrl":"https://store.test/a.zip?sig=s3cr3t"}`},
		{"relative url", `{"success":true,"downloadUrl":"/a.zip?sig=s3cr3t"}`},
		{"ftp url", `{"success":true,"downloadUrl":"ftp://store.test/a.zip?sig=s3cr3t"}`},
		{"garbage url", `{"success":true,"downloadUrl":"https://store.test/%zz?sig=s3cr3t"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, mock, _ := newExportsClient(t)
			mock.RegisterResponder("GET", exportsProjectURL, httpmock.NewStringResponder(200, tc.body))
			_, err := c.Exports.ProjectLink(context.Background(), "p1", "u1")
			if !errors.Is(err, ErrInvalidResponse) {
				t.Fatalf("got %v, want ErrInvalidResponse", err)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error shows the link's query: %v", err)
			}
		})
	}
}

// An expiresAt or createdAt that is not a string (epoch seconds, an
// object) is unreadable like a bad string: the link is still handed out,
// never cached, rather than the whole answer refused.
func TestExportsNonStringTimesAreUnreadable(t *testing.T) {
	for name, fields := range map[string]string{
		"epoch expiresAt":      `"expiresAt":1767225600`,
		"object expiresAt":     `"expiresAt":{"seconds":1767225600}`,
		"epoch createdAt":      `"expiresAt":"2099-01-01T00:00:00Z","version":{"id":"ver-9","createdAt":1748772000}`,
		"null expiresAt":       `"expiresAt":null`,
		"bool version created": `"expiresAt":null,"version":{"id":"ver-9","createdAt":false}`,
	} {
		t.Run(name, func(t *testing.T) {
			c, mock, _ := newExportsClient(t)
			var calls atomic.Int32
			mock.RegisterResponder("GET", exportsProjectURL, exportsCounting(&calls, func(n int) string {
				return fmt.Sprintf(`{"success":true,"downloadUrl":"https://store.test/exports/p1-%d.zip?%s",%s}`, n, exportsSecretQuery, fields)
			}))
			l, err := c.Exports.ProjectLink(context.Background(), "p1", "u1")
			if err != nil {
				t.Fatalf("the link was refused: %v", err)
			}
			if !l.Version.CreatedAt.IsZero() {
				t.Errorf("CreatedAt = %v", l.Version.CreatedAt)
			}
			if strings.Contains(fields, `"expiresAt":"2099`) {
				return
			}
			if !l.ExpiresAt.IsZero() {
				t.Errorf("ExpiresAt = %v", l.ExpiresAt)
			}
			if _, err := c.Exports.ProjectLink(context.Background(), "p1", "u1"); err != nil || calls.Load() != 2 {
				t.Errorf("second call: %v, %d requests: a link of unknown expiry was cached", err, calls.Load())
			}
		})
	}
}

// Issue #13: a link served from the cache allocates nothing: key, lookup
// and options stay on the stack, and the caller's copy is a value.
func TestExportsCacheHitAllocatesNothing(t *testing.T) {
	c, mock, _ := newExportsClient(t)
	mock.RegisterResponder("GET", exportsProjectURL, httpmock.NewStringResponder(200, exportsLinkBody(1, iso(exportsStart.Add(24*time.Hour)))))
	mock.RegisterResponder("GET", exportsVersionURL, httpmock.NewStringResponder(200, `{"success":true,"downloadUrl":"https://store.test/v1.zip?sig=1","expiresAt":"2025-06-08T08:00:00Z"}`))
	ctx := context.Background()
	// A UUID-long id, so that the key is longer than the runtime's small
	// buffer for string concatenation.
	const id = "0b6f3c9e-3f2d-4a7e-9d6c-2a1b8f7e5d41"
	mock.RegisterResponder("GET", "https://worker.test/base/v1/projects/"+id+"/export", httpmock.NewStringResponder(200, exportsLinkBody(2, iso(exportsStart.Add(24*time.Hour)))))
	var resp Response
	withResponse := WithResponse(&resp) // made once: the caller's allocation
	for name, get := range map[string]func() (DownloadLink, error){
		"project with a version": func() (DownloadLink, error) { return c.Exports.ProjectLink(ctx, "p1", "u1") },
		"version without one":    func() (DownloadLink, error) { return c.Exports.VersionLink(ctx, "v1", "u1") },
		"long ids":               func() (DownloadLink, error) { return c.Exports.ProjectLink(ctx, id, id) },
	} {
		if _, err := get(); err != nil {
			t.Fatal(err)
		}
		calls := mock.GetTotalCallCount()
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := get(); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: a cache hit makes %.1f allocations, want none", name, allocs)
		}
		if n := mock.GetTotalCallCount(); n != calls {
			t.Errorf("%s: %d requests while measuring hits", name, n-calls)
		}
	}
	// With options, their settings cost one: applying a CallOption (a
	// function) moves them to the heap.
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := c.Exports.ProjectLink(ctx, "p1", "u1", withResponse); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 || !resp.Cached {
		t.Errorf("a cache hit with WithResponse makes %.1f allocations, want at most 1 (Response %+v)", allocs, resp)
	}
}

// WithResponse describes the request a link call made, and says Cached
// when the link came from the cache.
func TestExportsLinkResponse(t *testing.T) {
	c, mock, _ := newExportsClient(t)
	mock.RegisterResponder("GET", exportsProjectURL, func(r *http.Request) (*http.Response, error) {
		resp := httpmock.NewStringResponse(200, exportsLinkBody(1, iso(exportsStart.Add(24*time.Hour))))
		resp.Header.Set("X-Correlation-Id", r.Header.Get("X-Correlation-Id"))
		return resp, nil
	})
	ctx := context.Background()
	var miss, hit Response
	if _, err := c.Exports.ProjectLink(ctx, "p1", "u1", WithResponse(&miss), WithCorrelationID("corr-1")); err != nil {
		t.Fatal(err)
	}
	if miss.Cached || miss.StatusCode != 200 || miss.Attempts != 1 || miss.CorrelationID != "corr-1" {
		t.Errorf("the request's Response: %+v", miss)
	}
	hit = Response{StatusCode: 999}
	if _, err := c.Exports.ProjectLink(ctx, "p1", "u1", WithResponse(&hit)); err != nil {
		t.Fatal(err)
	}
	if !hit.Cached || hit.StatusCode != 0 {
		t.Errorf("a cached link's Response: %+v", hit)
	}
	if _, err := c.Exports.ProjectLink(ctx, "p1", "u1", nil); err == nil {
		t.Error("a nil option was accepted on a cache hit")
	}
}

// A caller that waited for another caller's request for the same link made
// no request of its own: its Response says Cached, and only the first
// caller's options went to the worker.
func TestExportsSharedLoadResponse(t *testing.T) {
	c, mock := newMockClient(t)
	started, release := make(chan struct{}), make(chan struct{})
	var headers []string
	mock.RegisterResponder("GET", exportsProjectURL, func(r *http.Request) (*http.Response, error) {
		headers = append(headers, r.Header.Get("X-Test"))
		close(started)
		<-release
		return httpmock.NewStringResponse(200, exportsLinkBody(1, iso(time.Now().Add(24*time.Hour)))), nil
	})
	ctx := context.Background()
	var first, second Response
	done := make(chan error)
	go func() {
		_, err := c.Exports.ProjectLink(ctx, "p1", "u1", WithResponse(&first), WithHeader("X-Test", "first"))
		done <- err
	}()
	<-started
	go func() {
		_, err := c.Exports.ProjectLink(ctx, "p1", "u1", WithResponse(&second), WithHeader("X-Test", "second"))
		done <- err
	}()
	// The second caller joins the flight or, if it comes late, hits the
	// cache: either way it makes no request.
	for c.exports.links.Len() == 0 && !flightWaiters(c, 2) {
		runtime.Gosched()
	}
	close(release)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if len(headers) != 1 || headers[0] != "first" {
		t.Errorf("the worker saw %q, want one request with the first caller's header", headers)
	}
	if first.Cached || first.StatusCode != 200 || !second.Cached || second.StatusCode != 0 {
		t.Errorf("first %+v, second %+v", first, second)
	}
}

// flightWaiters reports whether the link load under way has n waiters.
func flightWaiters(c *WorkerClient, n int) bool {
	l := c.exports.links
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.flights {
		if f.waiters == n {
			return true
		}
	}
	return false
}

// Every Exports method of a WorkerClient that NewWorkerClient did not make
// answers ErrNotConfigured (Invalidate, which answers nothing, does
// nothing), as TestZeroClientServices checks for the other services.
func TestZeroClientExports(t *testing.T) {
	var c WorkerClient
	ctx := context.Background()
	link := linkTo("https://store.test/a.zip?sig=1")
	calls := map[string]error{}
	_, calls["ProjectLink"] = c.Exports.ProjectLink(ctx, "p1", "u1")
	_, calls["VersionLink"] = c.Exports.VersionLink(ctx, "v1", "u1")
	_, calls["Download"] = c.Exports.Download(ctx, link, io.Discard, nil)
	_, calls["DownloadToFile"] = c.Exports.DownloadToFile(ctx, link, filepath.Join(t.TempDir(), "a.zip"), nil)
	_, calls["RebuildMissing"] = c.Exports.RebuildMissing(ctx, &ArtifactMissingError{APIError: &APIError{}, CanRebuild: true, VersionID: "v1", UserID: "u1"}, nil)
	c.Exports.Invalidate(link)
	c.Exports.forgetProject("p1", "u1")
	for name, err := range calls {
		if !errors.Is(err, ErrNotConfigured) {
			t.Errorf("%s: %v, want ErrNotConfigured", name, err)
		}
	}
	// A zero ExportsService (not a nil one) is no better configured.
	var s ExportsService
	if _, err := s.ProjectLink(ctx, "p1", "u1"); !errors.Is(err, ErrNotConfigured) {
		t.Errorf("zero ExportsService: %v", err)
	}
}

// A nil context is a *ValidationError from every call that takes one, not a
// panic, whether the link is cached or not.
func TestExportsNilContext(t *testing.T) {
	c, mock, _ := newExportsClient(t)
	mock.RegisterResponder("GET", exportsProjectURL, httpmock.NewStringResponder(200, exportsLinkBody(1, iso(exportsStart.Add(24*time.Hour)))))
	mock.RegisterResponder("GET", exportsVersionURL, httpmock.NewStringResponder(200, exportsLinkBody(2, iso(exportsStart.Add(24*time.Hour)))))
	link := linkTo("https://store.test/exports/p1.zip?" + exportsSecretQuery)
	var nilCtx context.Context
	calls := map[string]func() error{
		"ProjectLink": func() error { _, err := c.Exports.ProjectLink(nilCtx, "p1", "u1"); return err },
		"VersionLink": func() error { _, err := c.Exports.VersionLink(nilCtx, "v1", "u1"); return err },
		"Download":    func() error { _, err := c.Exports.Download(nilCtx, link, io.Discard, nil); return err },
		"DownloadToFile": func() error {
			_, err := c.Exports.DownloadToFile(nilCtx, link, filepath.Join(t.TempDir(), "a.zip"), nil)
			return err
		},
		"RebuildMissing": func() error {
			_, err := c.Exports.RebuildMissing(nilCtx, &ArtifactMissingError{APIError: &APIError{}, CanRebuild: true, VersionID: "v1", UserID: "u1"}, nil)
			return err
		},
	}
	check := func(when string) {
		for name, call := range calls {
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Errorf("%s %s: panicked: %v", name, when, p)
					}
				}()
				err = call()
			}()
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != "context" {
				t.Errorf("%s %s: got %v, want a ValidationError about the context", name, when, err)
			}
		}
	}
	check("with nothing cached")
	if _, err := c.Exports.ProjectLink(context.Background(), "p1", "u1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exports.VersionLink(context.Background(), "v1", "u1"); err != nil {
		t.Fatal(err)
	}
	check("with the links cached")
	if n := mock.GetTotalCallCount(); n != 2 {
		t.Errorf("%d requests reached the worker, want the 2 made with a context", n)
	}
}

// TestExportsLinkCallTimeoutBoundsOnlyItsCaller is issue #11's rule for
// links: a joiner's WithCallTimeout ends its own wait, and the first
// caller's ends neither the shared request nor a patient joiner's wait.
func TestExportsLinkCallTimeoutBoundsOnlyItsCaller(t *testing.T) {
	body := func() string { return exportsLinkBody(1, iso(time.Now().Add(24*time.Hour))) }
	t.Run("joiner", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c, mock := newMockClient(t)
			started := make(chan struct{}, 4)
			mock.RegisterResponder("GET", exportsProjectURL, slowWorker(time.Second, body, started))
			first := make(chan error, 1)
			go func() { _, err := c.Exports.ProjectLink(context.Background(), "p1", "u1"); first <- err }()
			<-started
			t0 := time.Now()
			_, err := c.Exports.ProjectLink(context.Background(), "p1", "u1", WithCallTimeout(50*time.Millisecond))
			if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) != 50*time.Millisecond {
				t.Errorf("the joiner with WithCallTimeout(50ms): %v after %s", err, time.Since(t0))
			}
			if err := <-first; err != nil {
				t.Errorf("the first caller: %v", err)
			}
		})
	})
	t.Run("first", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c, mock := newMockClient(t)
			started := make(chan struct{}, 4)
			mock.RegisterResponder("GET", exportsProjectURL, slowWorker(200*time.Millisecond, body, started))
			first := make(chan error, 1)
			go func() {
				_, err := c.Exports.ProjectLink(context.Background(), "p1", "u1", WithCallTimeout(50*time.Millisecond))
				first <- err
			}()
			<-started
			l, err := c.Exports.ProjectLink(context.Background(), "p1", "u1")
			if err != nil || l.SignedURL() == "" {
				t.Fatalf("the patient joiner: %v", err)
			}
			if err := <-first; !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("the first caller, WithCallTimeout(50ms): %v", err)
			}
			if n := len(started); n != 0 {
				t.Errorf("%d more requests, want the one shared", n)
			}
		})
	})
}
