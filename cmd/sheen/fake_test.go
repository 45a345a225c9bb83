package main

import (
	"encoding/json"
	"strings"
	"testing"
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

		r = c.run(t, append(args, "--json")...)
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
