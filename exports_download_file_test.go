package sheen

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// openFilesUnder lists this process's descriptors open on files in dir.
func openFilesUnder(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("cannot list open descriptors: %v", err)
	}
	var open []string
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			open = append(open, target)
		}
	}
	return open
}

type userPanic struct{ msg string }

// A panic in the progress callback (or the writer) leaves no .part file and
// no open descriptor behind, and reaches the caller as the user's own panic.
func TestDownloadToFilePanicCleansUp(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts descriptors through /proc/self/fd")
	}
	content := downloadContent(300_000)
	store := newDownloadStore(t, content)
	c, _ := downloadWorker(t, store)
	dir := t.TempDir()
	want := &userPanic{"progress callback blew up"}
	var got any
	func() {
		defer func() { got = recover() }()
		c.Exports.DownloadToFile(context.Background(), downloadLinkFor(t, c), filepath.Join(dir, "p1.zip"), &DownloadOptions{Progress: func(n, _ int64) {
			if n > 100_000 {
				panic(want)
			}
		}})
	}()
	if got != want {
		t.Fatalf("recovered %v, want the callback's own panic", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left %v in the directory", entries)
	}
	if open := openFilesUnder(t, dir); len(open) != 0 {
		t.Errorf("descriptors still open: %v", open)
	}
	// The connection to the store was let go too: goleak (TestMain) checks
	// no goroutine is left, and a new download works.
	if _, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), io.Discard, nil); err != nil {
		t.Fatal(err)
	}
}

func TestDownloadToFile(t *testing.T) {
	content := downloadContent(1<<20 + 3)
	store := newDownloadStore(t, content)
	store.cut[0] = 500_000
	c, _ := downloadWorker(t, store)
	dir := t.TempDir()
	path := filepath.Join(dir, "p1.zip")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := c.Exports.DownloadToFile(context.Background(), downloadLinkFor(t, c), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if sum(got) != sum(content) || res.Resumes != 1 {
		t.Fatalf("file has %d bytes, result %+v", len(got), res)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %v", entries)
	}
	if _, err := c.Exports.DownloadToFile(context.Background(), downloadLinkFor(t, c), filepath.Join(dir, "missing", "x.zip"), nil); err == nil {
		t.Error("a path in a missing directory was accepted")
	}
}
