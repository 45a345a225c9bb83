package main

import (
	"bytes"
	"context"
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
	var out bytes.Buffer
	if err := run(ctx, &out, opt); err != nil {
		t.Fatalf("quickstart failed: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`affordable = true`),
		regexp.MustCompile(`done: preview at http://127\.0\.0\.1:\d+/preview/`),
		regexp.MustCompile(`sha256 [0-9a-f]{64}, really a tar\.gz archive`),
		regexp.MustCompile(`refused: .* \(code insufficient_ai_time\)`),
		regexp.MustCompile(`balance now .*: build bld_\w+ started`),
	} {
		if !want.MatchString(text) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "X-Signature") {
		t.Error("the output shows a signed URL's query")
	}
	return text
}
