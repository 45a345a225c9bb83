//go:build !windows

package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/sheenapps/sheen-go/sheentest"
)

// runTTY runs the command with stdout and stderr on a pseudo-terminal and
// returns what the terminal received.
func (c cli) runTTY(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sheenBin, args...)
	cmd.Env = append(cleanEnv(), append(c.env, "TERM=xterm")...)
	cmd.Dir = c.dir
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 160})
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no pseudo-terminal: %v (under CI=true this fails)", err)
		}
		t.Skipf("SKIPPED, NO PSEUDO-TERMINAL: %v (under CI=true this fails)", err)
	}
	defer tty.Close()
	var out bytes.Buffer
	_, _ = io.Copy(&out, tty) // ends with EIO once the command has exited
	code := 0
	if err := cmd.Wait(); err != nil {
		var exit *exec.ExitError
		if !asExit(err, &exit) {
			t.Fatal(err)
		}
		code = exit.ExitCode()
	}
	return out.String(), code
}

func asExit(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*target = e
	return ok
}

var (
	// redraw is a carriage return that is not a line end: a bar drawn
	// again on its own line. (The terminal turns each "\n" into "\r\n".)
	redraw = regexp.MustCompile(`\r[^\n]`)
	// timing is the bar's elapsed and predicted remaining time.
	timing = regexp.MustCompile(`\[\d+s:\d+s\]`)
)

// On a terminal, --watch draws one bar that moves through the phases, not
// a line per event.
func TestTTYBuildBar(t *testing.T) {
	out, code := cli{dir: t.TempDir()}.runTTY(t, "--fake", "--fake-step", "30ms", "build", fakeDemoUser, "--prompt", "A bakery", "--watch")
	if code != exitOK {
		t.Fatalf("exit %d:\n%q", code, out)
	}
	if !redraw.MatchString(out) {
		t.Errorf("the bar is never redrawn in place:\n%q", out)
	}
	if !timing.MatchString(out) {
		t.Errorf("no elapsed/remaining time shown:\n%q", out)
	}
	wantIn(t, "build bar", out, "[development] Writing the code", "[deploy] Deploying", "100%", "Deployed build ")
	if strings.Contains(out, "[  5%] development  Build started") {
		t.Errorf("plain event lines on a terminal:\n%q", out)
	}
}

// On a terminal a download draws a bar with bytes, rate and time left.
func TestTTYDownloadBar(t *testing.T) {
	srv, c := worker(t, sheentest.WithArtifactPadding(3<<20))
	_, v := deployed(t, srv, "u1")
	// A break part way makes the bar stand still for the resume's wait,
	// so it is drawn at least once before the end.
	srv.AddFault(sheentest.Fault{Route: sheentest.RouteStore, Calls: []int{1}, ResetAfterBytes: 1 << 20})
	out, code := c.runTTY(t, "download", v, "--user", "u1")
	if code != exitOK {
		t.Fatalf("exit %d:\n%q", code, out)
	}
	if !redraw.MatchString(out) {
		t.Errorf("the bar is never redrawn in place:\n%q", out)
	}
	if !timing.MatchString(out) {
		t.Errorf("no elapsed/remaining time shown:\n%q", out)
	}
	wantIn(t, "download bar", out, v+".zip", "100%", "MB", "/s", "Saved "+v+".tar.gz", "resumed 1 time(s)")
	if strings.Contains(out, "downloading "+v) {
		t.Errorf("plain progress lines on a terminal:\n%q", out)
	}
	sameFile(t, c.dir+"/"+v+".tar.gz", srv.Artifact(v))
}
