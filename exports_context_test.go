package sheen

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
)

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
		"Download":    func() error { _, err := c.Exports.Download(nilCtx, link, io.Discard); return err },
		"DownloadToFile": func() error {
			_, err := c.Exports.DownloadToFile(nilCtx, link, filepath.Join(t.TempDir(), "a.zip"))
			return err
		},
		"RebuildMissing": func() error {
			_, err := c.Exports.RebuildMissing(nilCtx, &ArtifactMissingError{APIError: &APIError{}, CanRebuild: true, VersionID: "v1", UserID: "u1"})
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
