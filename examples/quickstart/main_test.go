package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	sheen "github.com/sheenapps/sheen-go"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The README's first command must keep working: run the quickstart's whole
// path against the fake worker as `go run` does.
func TestQuickstartAgainstFakeWorker(t *testing.T) {
	t.Setenv("WORKER_BASE_URL", "")
	checkQuickstart(t, options{})
}

// A client with each signing scheme completes the whole flow against a fake
// worker that verifies that scheme.
func TestQuickstartEverySigningScheme(t *testing.T) {
	t.Setenv("WORKER_BASE_URL", "")
	for _, scheme := range []sheen.Signing{sheen.SigningBodyPath, sheen.SigningTimestamp, sheen.SigningDual} {
		t.Run(scheme.String(), func(t *testing.T) {
			t.Parallel()
			out := checkQuickstart(t, options{signing: scheme, step: 20 * time.Millisecond, perMinute: 6000})
			if !strings.Contains(out, "("+scheme.String()+" signing)") {
				t.Errorf("the fake worker did not use %s:\n%s", scheme, out)
			}
		})
	}
}

func checkQuickstart(t *testing.T, opt options) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opt.tempRoot = t.TempDir()
	var out bytes.Buffer
	if err := run(ctx, &out, opt); err != nil {
		t.Fatalf("quickstart failed: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`affordable = true`),
		regexp.MustCompile(`done: preview at http://127\.0\.0\.1:\d+/preview/`),
		regexp.MustCompile(`archive: (\d+) bytes, sha256 [0-9a-f]{64}, really a tar\.gz archive`),
		regexp.MustCompile(`refused: .* \(code insufficient_ai_time\)`),
		regexp.MustCompile(`balance now .*: build bld_\w+ started`),
		regexp.MustCompile(`(?m)^Summary\n  balance .*\n  build     bld_\w+: \d+ events .*\n  archive   \d+ bytes of tar\.gz, .*(now removed|kept at ).*\n  402 .*\n  took `),
	} {
		if !want.MatchString(text) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "X-Signature") {
		t.Error("the output shows a signed URL's query")
	}
	// One size for the archive wherever it is printed.
	size := regexp.MustCompile(`archive: (\d+) bytes`).FindStringSubmatch(text)
	if size != nil && !strings.Contains(text, size[1]+"/"+size[1]+" bytes") || size != nil && !strings.Contains(text, "archive   "+size[1]+" bytes") {
		t.Errorf("the archive's size is printed inconsistently:\n%s", text)
	}
	if !opt.tty && strings.Contains(text, "\r") {
		t.Errorf("plain output (not a terminal) has carriage returns:\n%q", text)
	}
	if left, _ := os.ReadDir(opt.tempRoot); len(left) != 0 {
		t.Errorf("the quickstart left %s in the temporary folder", left[0].Name())
	}
	return text
}

// On a terminal the bars redraw one line; -out keeps the archive.
func TestQuickstartOnATerminalKeepingTheArchive(t *testing.T) {
	t.Setenv("WORKER_BASE_URL", "")
	keep := t.TempDir()
	text := checkQuickstart(t, options{signing: sheen.SigningBodyPath, step: 20 * time.Millisecond, perMinute: 6000, tty: true, outDir: keep})
	if !strings.Contains(text, "\r   build    [") {
		t.Errorf("no redrawn bar on a terminal:\n%q", text)
	}
	if files, _ := filepath.Glob(filepath.Join(keep, "*.zip")); len(files) != 1 {
		t.Errorf("-out kept %v", files)
	}
}
