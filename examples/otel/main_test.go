package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// `go run ./examples/otel` works with no environment: the stdout exporter
// writes every span as JSON, and the tree shows the retries, the cache
// hit, the phases, the resumed download and the 402, without a signed
// query or a signature anywhere.
func TestOtelExample(t *testing.T) {
	t.Setenv("WORKER_BASE_URL", "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out, true); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	text := out.String()
	exported := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "{") {
			var span struct{ Name string }
			if err := json.Unmarshal([]byte(line), &span); err != nil {
				t.Fatalf("exporter line is not JSON: %v\n%s", err, line)
			}
			exported[span.Name]++
		}
	}
	for name, n := range map[string]int{"quickstart": 1, "sheen.Billing.Balance": 2, "GET /v1/billing/balance/{userId}": 3,
		"sheen.Builds.Wait": 1, "sheen.Exports.Download": 1, "sheen.Builds.CreatePreview": 2} {
		if exported[name] != n {
			t.Errorf("the exporter wrote %d %q spans, want %d", exported[name], name, n)
		}
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^  sheen\.Billing\.Balance  \S+  \[status=200 attempts=3 outcome=ok\]\n` +
			`    GET /v1/billing/balance/\{userId\}  \S+  \[status=429 code=RATE_LIMITED .*retry=rate_limited backoff=200ms\]\n` +
			`    GET /v1/billing/balance/\{userId\}  \S+  \[status=503 code=SERVICE_UNAVAILABLE .*retry=server_error backoff=\S+\]\n` +
			`    GET /v1/billing/balance/\{userId\}  \S+  \[status=200.*\]\n` +
			`  sheen\.Billing\.Balance  \S+  \[cache hit=true\]$`),
		regexp.MustCompile(`(?m)^  sheen\.Builds\.Wait  \S+  \[build=succeeded events=\d+\]\n(      · sheen\.build\.phase  \[sheen\.build\.phase=\w+ .*\]\n){4,}`),
		regexp.MustCompile(`(?m)^  sheen\.Exports\.Download  \S+  \[bytes=\d+ resumes=1 format=tar\.gz\]\n      · sheen\.download\.interrupted  \[error\.type=truncated sheen\.download\.offset=65536 sheen\.download\.retry=true\]$`),
		regexp.MustCompile(`(?m)^  sheen\.Builds\.CreatePreview  \S+  \[status=402 code=insufficient_ai_time attempts=1 outcome=client_error\]$`),
		regexp.MustCompile(`(?m)^  sheen\.client\.retries +sheen\.operation=sheen\.Billing\.Balance sheen\.retry\.reason=rate_limited +1 \{retry\}$`),
		regexp.MustCompile(`(?m)^  sheen\.cache\.hits +sheen\.cache=balance +1 \{lookup\}$`),
		regexp.MustCompile(`(?m)^  sheen\.download\.bytes +sheen\.download\.format=tar\.gz +\d+ By$`),
	} {
		if !want.MatchString(text) {
			t.Errorf("output lacks %s:\n%s", want, text[strings.Index(text, "The trace as a tree:"):])
		}
	}
	for _, secret := range []string{"X-Signature", "X-Expires", "x-sheen-sig", user} {
		if strings.Contains(text, secret) {
			t.Errorf("the output holds %q", secret)
		}
	}
}
