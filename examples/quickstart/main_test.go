package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The README's first command must keep working: run the quickstart's whole
// path against the fake worker.
func TestQuickstartAgainstFakeWorker(t *testing.T) {
	t.Setenv("WORKER_BASE_URL", "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out, options{}); err != nil {
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
}
