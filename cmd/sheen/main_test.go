package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

// sheenBin is the command under test, built once for all tests.
var sheenBin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sheen-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	sheenBin = filepath.Join(dir, "sheen")
	if out, err := exec.Command("go", "build", "-o", sheenBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building sheen: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// result is what a run of the command left.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s\n--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// cli runs the command with env added to a clean environment (none of the
// SDK's variables from the machine running the tests).
type cli struct {
	env   []string
	stdin string
	dir   string
}

func (c cli) run(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sheenBin, args...)
	cmd.Env = append(cleanEnv(), c.env...)
	cmd.Dir = c.dir
	cmd.Stdin = strings.NewReader(c.stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("running sheen %v: %v", args, err)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// cleanEnv is the test process's environment without the variables the
// SDK reads, so the machine's configuration cannot leak into a test.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "WORKER_") || strings.HasPrefix(name, "CLAUDE_") || name == "TERM" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// worker starts a fake worker that signs like the deployed one, and
// returns it with the environment that points the command at it: the
// fake is shared with the child process through its URL and secret.
func worker(t *testing.T, opts ...sheentest.Option) (*sheentest.Server, cli) {
	t.Helper()
	srv := sheentest.NewServer(append([]sheentest.Option{sheentest.WithTest(t), sheentest.WithSigning(sheen.SigningDual)}, opts...)...)
	// NewServer sets srv.URL after its server starts, and the handlers
	// read it. Requests from this process order the two for the race
	// detector (it sees socket writes and reads as synchronisation);
	// requests from the child process alone do not, so send one first.
	if resp, err := http.Get(srv.URL + "/"); err == nil {
		resp.Body.Close()
	}
	return srv, cli{env: []string{
		sheen.EnvBaseURL + "=" + srv.URL,
		sheen.EnvSecret + "=" + srv.Secret,
		sheen.EnvSigning + "=dual",
	}, dir: t.TempDir()}
}

// sdk returns a client of the fake worker, for setting up a test.
func sdk(t *testing.T, srv *sheentest.Server) *sheen.WorkerClient {
	t.Helper()
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// deployed starts a build of a new project for user and runs it to its
// end; it returns the build and the version it made.
func deployed(t *testing.T, srv *sheentest.Server, user string) (*sheen.Build, string) {
	t.Helper()
	b, err := sdk(t, srv).Builds.CreatePreview(context.Background(), sheen.CreatePreviewRequest{UserID: user, Prompt: "A bakery"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Finish(b.ID)
	return b, srv.LatestVersion(b.ProjectID)
}

// wantCode fails the test when the run did not exit with code.
func wantCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("want exit %d, got %s", code, r)
	}
}

// wantIn fails the test when text does not hold every one of subs.
func wantIn(t *testing.T, what, text string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(text, s) {
			t.Errorf("%s lacks %q:\n%s", what, s, text)
		}
	}
}

// decode reads stdout as one JSON document.
func decode[T any](t *testing.T, r result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, r)
	}
	return v
}

// jsonLines reads stdout as JSON lines.
func jsonLines(t *testing.T, r result) []map[string]any {
	t.Helper()
	var out []map[string]any
	for l := range strings.Lines(r.stdout) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v\n%s", l, err, r)
		}
		out = append(out, m)
	}
	return out
}

// errorDoc is the JSON document of a failure.
type errorDoc struct {
	Type  string `json:"type"`
	Error struct {
		Kind              string           `json:"kind"`
		ExitCode          int              `json:"exitCode"`
		Message           string           `json:"message"`
		Status            int              `json:"status"`
		Code              string           `json:"code"`
		AvailableSeconds  *float64         `json:"availableSeconds"`
		RequiredSeconds   *float64         `json:"requiredSeconds"`
		Suggestions       []jsonSuggestion `json:"suggestions"`
		RetryAfterSeconds *float64         `json:"retryAfterSeconds"`
		RetryAt           string           `json:"retryAt"`
		BuildID           string           `json:"buildId"`
	} `json:"error"`
}
