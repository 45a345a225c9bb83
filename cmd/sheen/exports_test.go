package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

// The link's query is its credential: shown only with --show-url.
func TestExportLink(t *testing.T) {
	srv, c := worker(t)
	b, v := deployed(t, srv, "u1")

	r := c.run(t, "export", b.ProjectID, "--user", "u1")
	wantCode(t, r, exitOK)
	wantIn(t, "export", r.stdout, "Archive of "+b.ProjectID+": "+b.ProjectID+"-latest.zip", "version "+v, "/_store/", "?REDACTED", "--show-url prints it")
	for _, leak := range []string{"X-Signature", "X-Expires"} {
		if strings.Contains(r.stdout+r.stderr, leak) {
			t.Errorf("export printed the link's query (%s):\n%s", leak, r)
		}
	}
	doc := decode[struct {
		ID        string `json:"id"`
		Link      map[string]any
		SignedURL string `json:"signedUrl"`
	}](t, c.run(t, "export", b.ProjectID, "--user", "u1", "--json"))
	if doc.ID != b.ProjectID || doc.SignedURL != "" || !strings.HasSuffix(doc.Link["url"].(string), "?REDACTED") {
		t.Errorf("export document: %+v", doc)
	}

	r = c.run(t, "export", b.ProjectID, "--user", "u1", "--show-url")
	wantCode(t, r, exitOK)
	wantIn(t, "export --show-url", r.stdout, "X-Signature=")
	doc = decode[struct {
		ID        string `json:"id"`
		Link      map[string]any
		SignedURL string `json:"signedUrl"`
	}](t, c.run(t, "export", b.ProjectID, "--user", "u1", "--json", "--show-url"))
	if !strings.Contains(doc.SignedURL, "X-Signature=") {
		t.Errorf("export --show-url document: %+v", doc)
	}

	wantCode(t, c.run(t, "export", "proj_nope", "--user", "u1"), exitNotFound)
}

func TestExportDownload(t *testing.T) {
	srv, c := worker(t)
	b, v := deployed(t, srv, "u1")
	out := filepath.Join(c.dir, "site.zip")
	r := c.run(t, "export", b.ProjectID, "--user", "u1", "--out", out)
	wantCode(t, r, exitOK)
	wantIn(t, "export --out", r.stdout, "Saved "+out+": ", "a tar.gz archive", "note: named .zip but it is a tar.gz archive")
	wantIn(t, "plain download progress", r.stderr, "downloading site.zip (", "100%")
	sameFile(t, out, srv.Artifact(v))
}

func TestDownload(t *testing.T) {
	srv, c := worker(t)
	_, v := deployed(t, srv, "u1")

	// Without --out: the worker's name, with the extension of what the
	// archive really is.
	r := c.run(t, "download", v, "--user", "u1")
	wantCode(t, r, exitOK)
	wantIn(t, "download", r.stdout, "Saved "+v+".tar.gz: ", "a tar.gz archive")
	sameFile(t, filepath.Join(c.dir, v+".tar.gz"), srv.Artifact(v))

	out := filepath.Join(c.dir, "a.tgz")
	doc := decode[jsonDownload](t, c.run(t, "download", v, "--user", "u1", "--out", out, "--json"))
	if doc.Path != out || doc.Format != "tar.gz" || doc.Bytes != int64(len(srv.Artifact(v))) || doc.Attempts != 1 {
		t.Errorf("download document: %+v", doc)
	}
	sameFile(t, out, srv.Artifact(v))

	// To stdout: the archive alone on stdout, the report on stderr.
	r = c.run(t, "download", v, "--user", "u1", "--out", "-")
	wantCode(t, r, exitOK)
	if r.stdout != string(srv.Artifact(v)) {
		t.Errorf("stdout is not the archive (%d bytes, want %d)", len(r.stdout), len(srv.Artifact(v)))
	}
	wantIn(t, "download to stdout", r.stderr, "Downloaded ")
	wantCode(t, c.run(t, "download", v, "--user", "u1", "--out", "-", "--json"), exitUsage)

	wantCode(t, c.run(t, "download", "ver_nope", "--user", "u1"), exitNotFound)
}

// A connection that breaks mid-download is resumed where it stopped, and
// the file holds the whole archive.
func TestDownloadResumed(t *testing.T) {
	srv, c := worker(t, sheentest.WithArtifactPadding(256<<10))
	_, v := deployed(t, srv, "u1")
	srv.AddFault(sheentest.Fault{Route: sheentest.RouteStore, Calls: []int{1}, ResetAfterBytes: 100 << 10})

	out := filepath.Join(c.dir, "site.tar.gz")
	r := c.run(t, "download", v, "--user", "u1", "--out", out)
	wantCode(t, r, exitOK)
	wantIn(t, "resumed download", r.stdout, "resumed 1 time(s) where the connection broke")
	wantIn(t, "resume notice", r.stderr, "download interrupted; resuming (after ")
	sameFile(t, out, srv.Artifact(v))
	if n := srv.Calls(sheentest.RouteStore); n != 2 {
		t.Errorf("the object store saw %d requests, want 2", n)
	}

	srv.AddFault(sheentest.Fault{Route: sheentest.RouteStore, Calls: []int{1}, ResetAfterBytes: 100 << 10})
	doc := decode[jsonDownload](t, c.run(t, "download", v, "--user", "u1", "--out", out, "--json", "--force"))
	if doc.Resumes != 1 || doc.Attempts != 2 || doc.Bytes != int64(len(srv.Artifact(v))) {
		t.Errorf("resumed download document: %+v", doc)
	}
	sameFile(t, out, srv.Artifact(v))
}

// An expired link is renewed once; an archive that is gone says so, and
// --rebuild gets it back.
func TestDownloadExpiredAndGone(t *testing.T) {
	srv, c := worker(t)
	b, v := deployed(t, srv, "u1")
	srv.AddFault(sheentest.Fault{Route: sheentest.RouteStore, Calls: []int{1}, Status: 403, Body: "<Error><Code>AccessDenied</Code></Error>"})
	r := c.run(t, "download", v, "--user", "u1")
	wantCode(t, r, exitOK)
	wantIn(t, "refreshed link", r.stdout, "the link was refused (expired): a fresh one was fetched")

	srv.DropArtifact(v)
	r = c.run(t, "export", b.ProjectID, "--user", "u1")
	wantCode(t, r, exitNotFound)
	wantIn(t, "gone archive", r.stderr, "sheen: the archive is gone (404", "run the same command with --rebuild")

	r = c.run(t, "download", v, "--user", "u1", "--rebuild", "--force")
	wantCode(t, r, exitOK)
	wantIn(t, "rebuilt", r.stderr, "the archive is gone: rebuilding version "+v)
	sameFile(t, filepath.Join(c.dir, v+".tar.gz"), srv.Artifact(v))
	if srv.Calls(sheen.RouteRebuild) != 1 {
		t.Errorf("rebuild calls: %d", srv.Calls(sheen.RouteRebuild))
	}
}

// The command never replaces or moves away a file that was there before
// it ran: not the worker's file name it saves under, not the name with the
// archive's real extension, not --out. It says so with exit code 11 and
// leaves no temporary file; --force replaces.
func TestDownloadNeverClobbers(t *testing.T) {
	srv, c := worker(t)
	b, v := deployed(t, srv, "u1")
	mine := []byte("a file of the user's own")
	write := func(name string) string {
		t.Helper()
		path := filepath.Join(c.dir, name)
		if err := os.WriteFile(path, mine, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}

	// The worker names the archive v.zip; it is a tar.gz. A v.zip that was
	// there stays as it was, and the archive is saved as v.tar.gz.
	zip := write(v + ".zip")
	r := c.run(t, "download", v, "--user", "u1")
	wantCode(t, r, exitOK)
	wantIn(t, "download beside the worker's name", r.stdout, "Saved "+v+".tar.gz: ")
	sameFile(t, zip, mine)
	sameFile(t, filepath.Join(c.dir, v+".tar.gz"), srv.Artifact(v))

	// Again: v.tar.gz is taken now. Refused, the file left alone.
	tgz := write(v + ".tar.gz")
	r = c.run(t, "download", v, "--user", "u1")
	wantCode(t, r, exitExists)
	wantIn(t, "taken name", r.stderr, "sheen: "+v+".tar.gz exists: not replaced, the download was discarded", "--force")
	sameFile(t, tgz, mine)
	doc := decode[errorDoc](t, c.run(t, "download", v, "--user", "u1", "--json"))
	if doc.Error.Kind != "file_exists" || doc.Error.ExitCode != exitExists || !strings.Contains(doc.Error.Message, "exists") {
		t.Errorf("taken name, JSON: %+v", doc.Error)
	}
	sameFile(t, tgz, mine)

	// --out FILE that exists: refused before anything is downloaded.
	out := write("site.tar.gz")
	fetched := srv.Calls(sheentest.RouteStore)
	r = c.run(t, "download", v, "--user", "u1", "--out", out)
	wantCode(t, r, exitExists)
	wantIn(t, "taken --out", r.stderr, out+" exists: not replaced, nothing downloaded", "--force")
	sameFile(t, out, mine)
	r = c.run(t, "export", "--user", "u1", "--out", out, b.ProjectID)
	wantCode(t, r, exitExists)
	sameFile(t, out, mine)
	if n := srv.Calls(sheentest.RouteStore); n != fetched {
		t.Errorf("the object store was asked %d time(s) for an archive that had nowhere to go", n-fetched)
	}

	// No temporary file is left behind by any of it.
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"site.tar.gz", v + ".tar.gz", v + ".zip"}; !slices.Equal(names, want) {
		t.Errorf("the folder holds %q, want %q", names, want)
	}

	// --force replaces, whole.
	wantCode(t, c.run(t, "download", v, "--user", "u1", "--out", out, "--force"), exitOK)
	sameFile(t, out, srv.Artifact(v))
	wantCode(t, c.run(t, "download", v, "--user", "u1", "--force"), exitOK)
	sameFile(t, tgz, srv.Artifact(v))
	sameFile(t, zip, mine)
}

// placeNew never replaces a file, even one that appeared while the archive
// was downloading.
func TestPlaceNew(t *testing.T) {
	dir := t.TempDir()
	tmp, path := filepath.Join(dir, "tmp"), filepath.Join(dir, "final")
	if err := os.WriteFile(tmp, []byte("archive"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := placeNew(tmp, path)
	var exists *fileExistsError
	if !errors.As(err, &exists) || exitCode(err) != exitExists {
		t.Fatalf("placeNew onto a file: %v; want a *fileExistsError", err)
	}
	sameFile(t, path, []byte("mine"))
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := placeNew(tmp, path); err != nil {
		t.Fatal(err)
	}
	sameFile(t, path, []byte("archive"))
	if _, err := os.Stat(tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the temporary file is still there: %v", err)
	}
}

func sameFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 || !bytes.Equal(got, want) {
		t.Errorf("%s: %d bytes, want the archive's %d", path, len(got), len(want))
	}
}
