package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	sheen "github.com/sheenapps/sheen-go"
)

// unsetWorkerEnv unsets the worker's variables for the test.
func unsetWorkerEnv(t *testing.T) {
	for _, name := range []string{sheen.EnvBaseURL, sheen.EnvSecret, sheen.EnvSecretV2, sheen.EnvSigning, sheen.EnvGenerateURL, sheen.EnvGenerateSecret} {
		t.Setenv(name, "") // restored after the test
		os.Unsetenv(name)
	}
}

// `go run ./examples/testing` with no environment starts the fake worker
// and shows the service's three answers through its own HTTP endpoint; the
// goroutines of the server and the fake end with it (goleak, TestMain).
func TestRunWithNoEnvironment(t *testing.T) {
	unsetWorkerEnv(t)
	var out bytes.Buffer
	if err := run(context.Background(), &out, "127.0.0.1:0", true); err != nil {
		t.Fatalf("run: %v\n%s", err, &out)
	}
	for _, want := range []string{
		"started the fake worker",
		"200 OK\n  {\"projectId\":",
		`"format":"tar.gz"`,
		"402 Payment Required\n  {\"error\":\"not enough AI time\",\"available\":\"30s\"",
		"422 Unprocessable Entity\n  {\"code\":\"BUILD_FAILED\",\"error\":\"Module not found: ./Menu\"}",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the output does not show %q:\n%s", want, &out)
		}
	}
}

// A half-configured environment is an error naming what is missing, not
// the fake worker.
func TestRunWithHalfAnEnvironment(t *testing.T) {
	unsetWorkerEnv(t)
	t.Setenv(sheen.EnvBaseURL, "https://worker.example.com")
	var out bytes.Buffer
	err := run(context.Background(), &out, "127.0.0.1:0", true)
	if err == nil || !strings.Contains(err.Error(), sheen.EnvSecret+" is not set") || strings.Contains(out.String(), "fake worker") {
		t.Errorf("got %v\n%s", err, &out)
	}
}

// Without -once it serves until its context ends, then stops the server
// and the fake worker (goleak, TestMain).
func TestRunServesUntilCanceled(t *testing.T) {
	unsetWorkerEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &watchWriter{want: "Try it", seen: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- run(ctx, w, "127.0.0.1:0", false) }()
	select {
	case <-w.seen:
	case err := <-done:
		t.Fatalf("run returned before serving: %v\n%s", err, w.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}

// watchWriter collects the output and closes seen once it shows want.
type watchWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.buf.String(), w.want)
	n, err := w.buf.Write(p)
	if !had && strings.Contains(w.buf.String(), w.want) {
		close(w.seen)
	}
	return n, err
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
