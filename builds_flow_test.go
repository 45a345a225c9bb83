package sheen_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

// Flows against the in-process fake worker: signed requests, real HTTP,
// the worker's event stream as it writes it.

const flowUser = "5b0e6c3a-8f0e-4d3e-9a57-2f1c3f1d7a10"

func flowClient(t *testing.T, opts ...sheentest.Option) (*sheentest.Server, *sheen.WorkerClient) {
	t.Helper()
	srv := sheentest.NewServer(append([]sheentest.Option{sheentest.WithTest(t), sheentest.WithUser(flowUser, 10*time.Hour), sheentest.WithRateLimit(60_000)}, opts...)...)
	c, err := srv.Client(sheen.WithRetry(sheen.RetryConfig{BackoffBase: time.Millisecond}), sheen.WithRateLimit(60_000))
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

func TestBuildsFlowCreateAndWait(t *testing.T) {
	_, c := flowClient(t)
	ctx := context.Background()
	b, err := c.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: flowUser, Prompt: "a todo app", Framework: sheen.FrameworkVue})
	if err != nil {
		t.Fatal(err)
	}
	var phases []sheen.Phase
	var progress []float64
	res, err := c.Builds.Wait(ctx, b.ID, flowUser, &sheen.FollowOptions{OnEvent: func(e sheen.BuildEvent) {
		phases = append(phases, e.Phase)
		progress = append(progress, e.Progress)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.PreviewURL, "/preview/"+b.ProjectID+"/") || res.VersionID == "" || res.VersionName == "" || !res.MetadataDone {
		t.Errorf("result %+v: want the preview of project %s, its version and the metadata done", res, b.ProjectID)
	}
	wantPhases := []sheen.Phase{"development", "development", "dependencies", "build", "deploy", "deploy", "metadata", "metadata"}
	if diff := cmp.Diff(wantPhases, phases); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	for i, p := range progress {
		if p < 0 || p > 1 {
			t.Errorf("event %d progress %v out of [0, 1] (the worker sends metadata progress as 60 and 100)", i, p)
		}
	}

	// The version shows up in the project's list, and can be rolled back
	// to; the replayed answer of a repeated key is the same rollback.
	var versions []sheen.ProjectVersion
	for v, err := range c.Builds.Versions(ctx, b.ProjectID, "") {
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	if len(versions) != 1 || versions[0].ID != res.VersionID || !versions[0].HasArtifact {
		t.Fatalf("versions %+v, want the build's version %s with its artifact", versions, res.VersionID)
	}
	req := sheen.RollbackRequest{UserID: flowUser, ProjectID: b.ProjectID, TargetVersionID: res.VersionID, IdempotencyKey: "rollback-once"}
	first, err := c.Builds.Rollback(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Builds.Rollback(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if first.RollbackVersionID == "" || again.RollbackVersionID != first.RollbackVersionID {
		t.Errorf("the same key made rollbacks %q and %q; want one", first.RollbackVersionID, again.RollbackVersionID)
	}

	st, err := c.Builds.Status(ctx, b.ID, flowUser)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "completed" || st.Progress != 1 || !st.Finished || st.EventCount != 8 {
		t.Errorf("status %+v, want completed at 100%% with 8 events", st)
	}
}

func TestBuildsFlowFailures(t *testing.T) {
	srv, c := flowClient(t)
	ctx := context.Background()

	srv.FailNextBuild("BUILD_FAILED", "Module not found: ./Filters")
	b, err := c.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: flowUser, Prompt: "x"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Builds.Wait(ctx, b.ID, flowUser, nil)
	var bf *sheen.BuildFailedError
	if !errors.As(err, &bf) || bf.Code != "BUILD_FAILED" || bf.Message != "Module not found: ./Filters" || bf.Phase != "build" {
		t.Fatalf("error %v, want the build's failure in phase build", err)
	}

	srv.FailNextMetadata()
	b, err = c.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: flowUser, Prompt: "y"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Builds.Wait(ctx, b.ID, flowUser, nil)
	if err != nil {
		t.Fatalf("a metadata failure after the deploy failed the build: %v", err)
	}
	if res.MetadataError == nil || res.MetadataError.Code != "METADATA_FAILED" || res.PreviewURL == "" {
		t.Errorf("result %+v, want the preview and the metadata failure reported", res)
	}
}

func TestBuildsFlowFollowMidway(t *testing.T) {
	srv, c := flowClient(t, sheentest.WithBuildPace(sheentest.PaceManual, 0))
	ctx := context.Background()
	b, err := c.Builds.UpdateProject(ctx, sheen.UpdateProjectRequest{UserID: flowUser, ProjectID: "p-missing", Prompt: "x"})
	if !errors.Is(err, sheen.ErrNotFound) || b != nil {
		t.Fatalf("update of an unknown project: %v, %v; want not found", b, err)
	}
	b, err = c.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: flowUser, Prompt: "x"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Step(b.ID)
	// Each event read moves the build one step on: the reader keeps
	// resuming from where it was until the build ends.
	n := 0
	for e, err := range c.Builds.Follow(ctx, b.ID, flowUser, &sheen.FollowOptions{PollInterval: func(sheen.Phase) time.Duration { return time.Millisecond }}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if e.ID <= 0 {
			t.Errorf("event without an id: %+v", e)
		}
		srv.Step(b.ID)
	}
	if n != 8 {
		t.Errorf("read %d events, want the build's 8", n)
	}

	// Rebuild: the answer names a build to follow.
	var versionID string
	for v, err := range c.Builds.Versions(ctx, b.ProjectID, "") {
		if err != nil {
			t.Fatal(err)
		}
		versionID = v.ID
	}
	rb, err := c.Builds.Rebuild(ctx, versionID)
	if err != nil {
		t.Fatal(err)
	}
	srv.Finish(rb.ID)
	res, err := c.Builds.Wait(ctx, rb.ID, flowUser, nil)
	if err != nil || res.VersionID != versionID {
		t.Fatalf("rebuild outcome %+v, %v; want version %s rebuilt", res, err, versionID)
	}
}

// An Idempotency-Key does not make a billed build safe to resend: the worker
// replays answers by key only for rollback. A connection reset after the
// worker queued the build is reported as ErrOutcomeUnknown, and the user is
// billed for one build, not two.
func TestBuildsFlowIdempotencyKeyDoesNotResendABuild(t *testing.T) {
	srv, c := flowClient(t)
	srv.AddFault(sheentest.Fault{Route: sheen.RouteCreatePreview, Calls: []int{1}, ResetAfterBytes: 10})
	_, err := c.Builds.CreatePreview(context.Background(), sheen.CreatePreviewRequest{UserID: flowUser, ProjectID: "p1", Prompt: "x"},
		sheen.WithIdempotencyKey("create-p1-once"))
	if !errors.Is(err, sheen.ErrOutcomeUnknown) {
		t.Errorf("err = %v, want ErrOutcomeUnknown: the build may have started", err)
	}
	if n := srv.Calls(sheen.RouteCreatePreview); n != 1 {
		t.Errorf("create-preview sent %d times, want once", n)
	}
	if ids := srv.BuildIDs(); len(ids) != 1 {
		t.Errorf("builds on the worker: %v, want one", ids)
	}
}
