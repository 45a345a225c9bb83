package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Every command works with --fake and no configuration at all, with the
// ids --help names, in text and in JSON.
func TestFakeEveryCommand(t *testing.T) {
	c := cli{dir: t.TempDir()}
	help := c.run(t, "--help")
	wantCode(t, help, exitOK)
	wantIn(t, "--help", help.stdout, fakeDemoUser, fakePoorUser, fakeProject, fakeVersion1, fakeVersion2, fakeBuild1, fakeBuild2)

	u, p := fakeDemoUser, fakeProject
	for _, tc := range []struct {
		args []string
		code int
		want string // in text output
	}{
		// watch writes JSON lines: checked line by line below.
		{[]string{"balance", u}, exitOK, u + " has "},
		{[]string{"check", u, "--size", "large"}, exitOK, "can afford main_build (large)"},
		{[]string{"check", fakePoorUser}, exitInsufficient, "cannot afford"},
		{[]string{"usage", u, "--period", "month"}, exitOK, "used 4m30s"},
		{[]string{"history", u}, exitOK, "build " + fakeBuild2},
		{[]string{"build", u, "--prompt", "A bakery"}, exitOK, "add --watch to follow the build"},
		{[]string{"build", fakePoorUser, "--prompt", "A bakery"}, exitInsufficient, ""},
		{[]string{"update", u, p, "--prompt", "Add a menu"}, exitOK, "started for project " + p},
		{[]string{"status", fakeBuild1, "--user", u}, exitOK, "completed"},
		{[]string{"watch", fakeBuild2, "--user", u}, exitOK, "Deployed build " + fakeBuild2},
		{[]string{"versions", p}, exitOK, fakeVersion1},
		{[]string{"rollback", u, p, fakeVersion1}, exitOK, "back to " + fakeVersion1},
		{[]string{"generate", u, p, "--prompt", "Add a footer"}, exitOK, "Done: Add a footer"},
		{[]string{"export", p, "--user", u}, exitOK, p + "-latest.zip"},
		{[]string{"download", fakeVersion1, "--user", u}, exitOK, "Saved " + fakeVersion1 + ".tar.gz"},
		{[]string{"verify", "--sample"}, exitOK, "valid: POST"},
	} {
		args := append([]string{"--fake"}, tc.args...)
		r := c.run(t, args...)
		wantCode(t, r, tc.code)
		wantIn(t, strings.Join(tc.args, " "), r.stdout+r.stderr, tc.want)

		// In a folder of its own: download never replaces the file the
		// text run saved.
		jc := c
		jc.dir = t.TempDir()
		r = jc.run(t, append(args, "--json")...)
		wantCode(t, r, tc.code)
		if tc.args[0] == "watch" {
			jsonLines(t, r)
		} else if !json.Valid([]byte(r.stdout)) {
			t.Errorf("%v --json: stdout is not one JSON document:\n%s", tc.args, r)
		}
	}
}

func TestFakeWatchJSONLines(t *testing.T) {
	r := cli{}.run(t, "--fake", "--fake-step", "5ms", "build", fakeDemoUser, "--prompt", "A bakery", "--watch", "--json")
	wantCode(t, r, exitOK)
	lines := jsonLines(t, r)
	if len(lines) != 10 || lines[0]["type"] != "build" || lines[9]["type"] != "result" {
		t.Errorf("JSON lines: %v", lines)
	}
}

// Ctrl-C while following a build ends the command with exit 130.
func TestInterrupted(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGINT to send on Windows")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The build never moves: the command waits until it is interrupted.
	cmd := exec.CommandContext(ctx, sheenBin, "--fake", "--fake-step", "1h", "build", fakeDemoUser, "--prompt", "A bakery", "--watch")
	cmd.Env = cleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "Build ") {
		t.Fatalf("first line %q: %v", line, err)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitInterrupted {
		t.Fatalf("want exit %d, got %v; stderr:\n%s", exitInterrupted, err, stderr.String())
	}
	wantIn(t, "interrupted", stderr.String(), "sheen: interrupted")
}

func TestCompletion(t *testing.T) {
	r := cli{}.run(t, "completion", "bash")
	wantCode(t, r, exitOK)
	wantIn(t, "bash completion", r.stdout, "bash completion V2 for sheen")
	r = cli{}.run(t, "__complete", "check", "u1", "--op", "")
	wantCode(t, r, exitOK)
	wantIn(t, "--op completion", r.stdout, "main_build\nmetadata_generation\nupdate\n")
}
