package main

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

func TestBuild(t *testing.T) {
	srv, c := worker(t)

	r := c.run(t, "build", "u1", "--prompt", "A bakery", "--framework", "vue")
	wantCode(t, r, exitOK)
	ids := srv.BuildIDs()
	if len(ids) != 1 {
		t.Fatalf("builds: %v", ids)
	}
	wantIn(t, "build", r.stdout, "Build "+ids[0]+" started for project ", "follow it: sheen watch "+ids[0]+" --user u1")

	doc := decode[jsonBuild](t, c.run(t, "build", "u1", "--prompt", "A bakery", "--json"))
	if doc.BuildID == "" || doc.ProjectID == "" || doc.UserID != "u1" || doc.Type != "" {
		t.Errorf("build document: %+v", doc)
	}

	wantCode(t, c.run(t, "build", "u1"), exitUsage) // --prompt is required
	wantCode(t, c.run(t, "build", "u1", "--prompt", "x", "--framework", "angular"), exitUsage)
}

// build --watch follows the build: a line per event when stdout is not a
// terminal, JSON lines with --json, exit 0 once deployed.
func TestBuildWatch(t *testing.T) {
	srv, c := worker(t)
	r := c.run(t, "build", "u1", "--prompt", "A bakery", "--watch")
	wantCode(t, r, exitOK)
	id := srv.BuildIDs()[0]
	wantIn(t, "watched build", r.stdout,
		"[  5%] development  Build started\n", "[ 45%] dependencies Installing dependencies\n", "[100%] deploy       Deployed\n",
		"Deployed build "+id+": preview "+srv.URL+"/preview/", "metadata     Metadata ready")

	r = c.run(t, "build", "u1", "--prompt", "A bakery", "--watch", "--json")
	wantCode(t, r, exitOK)
	lines := jsonLines(t, r)
	types := make([]string, 0, len(lines))
	for _, l := range lines {
		types = append(types, l["type"].(string))
	}
	want := []string{"build", "event", "event", "event", "event", "event", "event", "event", "event", "result"}
	if !slices.Equal(types, want) {
		t.Fatalf("JSON lines %v, want %v", types, want)
	}
	last := lines[len(lines)-1]
	if last["buildId"] != srv.BuildIDs()[1] || !strings.HasPrefix(last["previewUrl"].(string), srv.URL) || last["metadataDone"] != true {
		t.Errorf("result line: %v", last)
	}
}

// A build that fails exits 10 with the worker's message for the user.
func TestFailedBuild(t *testing.T) {
	srv, c := worker(t)
	srv.FailNextBuild("BUILD_FAILED", "The build ran out of memory")
	r := c.run(t, "build", "u1", "--prompt", "A bakery", "--watch")
	wantCode(t, r, exitFailed)
	id := srv.BuildIDs()[0]
	wantIn(t, "failed build's events", r.stdout, "Build failed: The build ran out of memory")
	wantIn(t, "failed build", r.stderr, "sheen: build "+id+" failed while in build (BUILD_FAILED): The build ran out of memory")

	srv.FailNextBuild("BUILD_FAILED", "The build ran out of memory")
	r = c.run(t, "build", "u1", "--prompt", "A bakery", "--watch", "--json")
	wantCode(t, r, exitFailed)
	lines := jsonLines(t, r)
	last := lines[len(lines)-1]
	e, _ := last["error"].(map[string]any)
	if last["type"] != "error" || e["kind"] != "build_failed" || e["buildId"] != srv.BuildIDs()[1] || e["code"] != "BUILD_FAILED" {
		t.Errorf("last line: %v", last)
	}

	// watch on the failed build says the same.
	r = c.run(t, "watch", id, "--user", "u1")
	wantCode(t, r, exitFailed)
	wantIn(t, "watch of a failed build", r.stderr, "The build ran out of memory")
}

func TestUpdateStatusWatch(t *testing.T) {
	srv, c := worker(t)
	b, _ := deployed(t, srv, "u1")

	r := c.run(t, "update", "u1", b.ProjectID, "--prompt", "Add a menu", "--watch")
	wantCode(t, r, exitOK)
	upd := srv.BuildIDs()[1]
	wantIn(t, "update", r.stdout, "Build "+upd+" started for project "+b.ProjectID, "Deployed build "+upd, "v1.0.1")
	doc := decode[jsonBuild](t, c.run(t, "update", "u1", b.ProjectID, "--prompt", "Add hours", "--json"))
	if doc.ProjectID != b.ProjectID || doc.BaseVersionID == "" {
		t.Errorf("update document: %+v", doc)
	}
	wantCode(t, c.run(t, "update", "u1", "proj_nope", "--prompt", "x"), exitNotFound)

	r = c.run(t, "status", b.ID, "--user", "u1")
	wantCode(t, r, exitOK)
	wantIn(t, "status", r.stdout, "Build "+b.ID+": completed, 100%, phase metadata, 8 events", "preview "+srv.URL)
	st := decode[jsonStatus](t, c.run(t, "status", b.ID, "--user", "u1", "--json"))
	if st.BuildID != b.ID || st.Status != "completed" || st.Progress != 1 || !st.Finished || st.EventCount != 8 {
		t.Errorf("status document: %+v", st)
	}
	r = c.run(t, "status", "bld_nope", "--user", "u1")
	wantCode(t, r, exitNotFound)
	wantIn(t, "unknown build", r.stderr, "sheen: not found (404): Build not found")
	wantCode(t, c.run(t, "status", b.ID), exitUsage) // --user is required

	r = c.run(t, "watch", b.ID, "--user", "u1")
	wantCode(t, r, exitOK)
	wantIn(t, "watch", r.stdout, "[100%] deploy       Deployed", "Deployed build "+b.ID)
	lines := jsonLines(t, c.run(t, "watch", b.ID, "--user", "u1", "--json"))
	if len(lines) != 9 || lines[0]["type"] != "event" || lines[8]["type"] != "result" {
		t.Errorf("watch JSON lines: %v", lines)
	}
}

func TestVersionsAndRollback(t *testing.T) {
	srv, c := worker(t)
	b, v1 := deployed(t, srv, "u1")
	upd, err := sdk(t, srv).Builds.UpdateProject(t.Context(), sheen.UpdateProjectRequest{UserID: "u1", ProjectID: b.ProjectID, Prompt: "Add a menu"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Finish(upd.ID)
	v2 := srv.LatestVersion(b.ProjectID)

	r := c.run(t, "versions", b.ProjectID)
	wantCode(t, r, exitOK)
	wantIn(t, "versions", r.stdout, "ID", "SEMVER", v1, v2, "Add a menu")
	if strings.Index(r.stdout, v2) > strings.Index(r.stdout, v1) {
		t.Errorf("versions not newest first:\n%s", r.stdout)
	}
	vs := decode[struct {
		ProjectID string        `json:"projectId"`
		Versions  []jsonVersion `json:"versions"`
	}](t, c.run(t, "versions", b.ProjectID, "--json", "--state", "published"))
	if len(vs.Versions) != 2 || vs.Versions[0].ID != v2 || !vs.Versions[1].HasArtifact {
		t.Errorf("versions document: %+v", vs)
	}
	wantCode(t, c.run(t, "versions", b.ProjectID, "--state", "draft"), exitUsage)
	wantCode(t, c.run(t, "versions", "proj_nope"), exitNotFound)

	r = c.run(t, "rollback", "u1", b.ProjectID, v1, "--idempotency-key", "k-1")
	wantCode(t, r, exitOK)
	v3 := srv.LatestVersion(b.ProjectID)
	wantIn(t, "rollback", r.stdout, "Rolled "+b.ProjectID+" back to "+v1+": new version "+v3, "idempotency key k-1")
	// The same key replays the answer: no second rollback.
	rb := decode[map[string]any](t, c.run(t, "rollback", "u1", b.ProjectID, v1, "--idempotency-key", "k-1", "--json"))
	if rb["rollbackVersionId"] != v3 || rb["idempotencyKey"] != "k-1" || srv.LatestVersion(b.ProjectID) != v3 {
		t.Errorf("replayed rollback: %v", rb)
	}
	srv.RollbackInProgress(b.ProjectID, true)
	r = c.run(t, "rollback", "u1", b.ProjectID, v1)
	wantCode(t, r, exitFailure)
	wantIn(t, "conflict", r.stderr, "409 rollback_in_progress")
}

// A build whose answer is lost may have started: exit 9, never a retry.
func TestOutcomeUnknown(t *testing.T) {
	srv, c := worker(t)
	srv.AddFault(sheentest.Fault{Route: sheen.RouteCreatePreview, Status: http.StatusBadGateway, Body: "<html>bad gateway</html>"})
	r := c.run(t, "build", "u1", "--prompt", "A bakery")
	wantCode(t, r, exitUnknown)
	wantIn(t, "outcome unknown", r.stderr, "sheen: outcome unknown: the worker may have carried out POST /v1/create-preview-for-new-project (it answered 502: Bad Gateway", "check before trying again")
	if n := srv.Calls(sheen.RouteCreatePreview); n != 1 {
		t.Errorf("create-preview sent %d times", n)
	}
	doc := decode[errorDoc](t, c.run(t, "build", "u1", "--prompt", "A bakery", "--json"))
	if doc.Error.Kind != "outcome_unknown" || doc.Error.Status != http.StatusBadGateway {
		t.Errorf("outcome unknown document: %+v", doc.Error)
	}
}

func TestGenerate(t *testing.T) {
	srv, c := worker(t)
	b, _ := deployed(t, srv, "u1")
	r := c.run(t, "generate", "u1", b.ProjectID, "--prompt", "Add a footer")
	wantCode(t, r, exitOK)
	if r.stdout != "Done: Add a footer\n" {
		t.Errorf("generate output %q", r.stdout)
	}
	doc := decode[map[string]any](t, c.run(t, "generate", "u1", b.ProjectID, "--prompt", "Add a footer", "--json"))
	if doc["output"] != "Done: Add a footer" || doc["fallback"] != false {
		t.Errorf("generate document: %v", doc)
	}
	r = c.run(t, "generate", "u1", "proj_nofolder", "--prompt", "x")
	wantCode(t, r, exitNotFound)
	wantIn(t, "generate without a folder", r.stderr, "Project directory not found")
}
