package main

import (
	"context"
	"fmt"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

// What the embedded fake worker (--fake) holds when a command starts. The
// ids of builds and versions are the fake's own, made in order; startFake
// checks them, so --help never names an id that does not exist.
const (
	// fakeDemoUser is the quickstart's user: the fake's welcome bonus, less
	// the two seeded builds.
	fakeDemoUser = "7d1f7e52-5b0e-4c7a-9a59-2f2d0f0a6b11"
	// fakePoorUser has 30 s of AI time: any build answers 402.
	fakePoorUser    = "0b6f3a10-0000-4000-8000-000000000001"
	fakePoorBalance = 30 * time.Second
	// fakeProject is the demo user's project, built then updated.
	fakeProject = "proj_demo"
	// fakeBuild1 made fakeVersion1; fakeBuild2 (an update) fakeVersion2.
	fakeBuild1   = "bld_0001"
	fakeVersion1 = "ver_0002"
	fakeBuild2   = "bld_0003"
	fakeVersion2 = "ver_0004"

	// defaultFakeStep is the time between two steps of a fake build, so
	// that --watch has something to show (a build takes 8 steps).
	defaultFakeStep = 400 * time.Millisecond
)

// fakeHelpLines describe the fake's seeded data for --help.
func fakeHelpLines() []string {
	return []string{
		"user    " + fakeDemoUser + "  (demo user)",
		"  project " + fakeProject + ", versions " + fakeVersion1 + " and " + fakeVersion2 + " (newest),",
		"  builds " + fakeBuild1 + " and " + fakeBuild2,
		"user    " + fakePoorUser + "  (" + human(fakePoorBalance) + " of AI time: builds get a 402)",
	}
}

// fakeWorker is the embedded fake worker of --fake.
type fakeWorker struct {
	srv *sheentest.Server
}

// startFake starts the fake worker, signing like the deployed worker, with
// builds moving one step every step, and seeds it.
func startFake(step time.Duration) (*fakeWorker, error) {
	if step <= 0 {
		return nil, usagef("--fake-step must be positive")
	}
	srv := sheentest.NewServer(
		sheentest.WithSigning(sheen.SigningDual),
		sheentest.WithBuildPace(sheentest.PaceTimed, step),
		sheentest.WithUser(fakePoorUser, fakePoorBalance),
	)
	f := &fakeWorker{srv: srv}
	if err := f.seed(); err != nil {
		srv.Close()
		return nil, fmt.Errorf("starting the fake worker: %w", err)
	}
	return f, nil
}

func (f *fakeWorker) close() { f.srv.Close() }

// seed builds the demo project and updates it, through a client of its own
// (so --verbose does not show these calls), and checks the ids.
func (f *fakeWorker) seed() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := f.srv.Client()
	if err != nil {
		return err
	}
	b1, err := c.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{
		UserID: fakeDemoUser, ProjectID: fakeProject, Prompt: "A landing page for a neighbourhood bakery", Framework: sheen.FrameworkReact,
	})
	if err != nil {
		return err
	}
	f.srv.Finish(b1.ID)
	b2, err := c.Builds.UpdateProject(ctx, sheen.UpdateProjectRequest{
		UserID: fakeDemoUser, ProjectID: fakeProject, Prompt: "Add opening hours and a menu",
	})
	if err != nil {
		return err
	}
	f.srv.Finish(b2.ID)
	got := []string{b1.ID, f.srv.LatestVersion(fakeProject), b2.ID}
	want := []string{fakeBuild1, fakeVersion2, fakeBuild2}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Errorf("the fake made id %q where %q was expected", got[i], want[i])
		}
	}
	return nil
}
