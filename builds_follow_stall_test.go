package sheen

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// quietSource gives its events on the fetches named in script (by 0-based
// index), nothing on the others, and fails after limit fetches so that a
// reading that never stops ends the test instead of hanging it.
type quietSource struct {
	script map[int][]BuildEvent
	limit  int
	n      atomic.Int32
}

var errQuietLimit = errors.New("quietSource: fetch limit reached; the reading never stopped on its own")

func (s *quietSource) FetchEvents(context.Context, string, string, int64) ([]BuildEvent, bool, error) {
	n := int(s.n.Add(1)) - 1
	if n >= s.limit {
		return nil, false, errQuietLimit
	}
	return append([]BuildEvent(nil), s.script[n]...), false, nil
}

func sumWaits(waits []time.Duration) time.Duration {
	var d time.Duration
	for _, w := range waits {
		d += w
	}
	return d
}

// A build whose events stop is given up after the default stall timeout,
// even under context.Background(): Wait ends with a *BuildStalledError that
// names the build and the last event read, and is no build failure.
func TestBuildsWaitStopsWhenTheBuildGoesQuiet(t *testing.T) {
	clock := newBuildsStepClock()
	c := buildsFollowClient(t, clock)
	src := &quietSource{script: map[int][]BuildEvent{0: {buildEvt(1, "started", "development")}}, limit: 10_000}
	res, err := c.Builds.Wait(context.Background(), "B1", "u1", &FollowOptions{Source: src})
	var stalled *BuildStalledError
	if !errors.As(err, &stalled) || !errors.Is(err, ErrBuildStalled) || res != nil {
		t.Fatalf("Wait = %+v, %v; want a *BuildStalledError", res, err)
	}
	if diff := cmp.Diff(&BuildStalledError{ID: "B1", LastEventID: 1, Quiet: DefaultBuildStallTimeout}, stalled); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
	if errors.Is(err, ErrBuildFailed) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a stall reads as a build failure or a deadline: %v", err)
	}
	// The last wait is cut to end at the stall timeout, for one last look.
	if got := sumWaits(clock.Waits()); got != DefaultBuildStallTimeout {
		t.Errorf("waited %s in all before giving up, want %s", got, DefaultBuildStallTimeout)
	}
}

// StallTimeout counts from the reading's start and from each new event;
// the last fetch is made when it runs out; Follow yields the error once.
func TestBuildsFollowStallTimeoutCountsFromTheLastNewEvent(t *testing.T) {
	clock := newBuildsStepClock()
	c := buildsFollowClient(t, clock)
	// Fetches at 0, 25 s, 50 s (event 2), 75 s, 100 s, 110 s (the end).
	src := &quietSource{script: map[int][]BuildEvent{
		0: {buildEvt(1, "started", "development")},
		2: {buildEvt(1, "started", "development"), buildEvt(2, "progress", "development")}, // 1 again: not news
	}, limit: 1000}
	follow := &FollowOptions{
		Source:       src,
		StallTimeout: time.Minute,
		PollInterval: func(Phase) time.Duration { return 25 * time.Second },
	}
	var ids []int64
	var errs []error
	for ev, err := range c.Builds.Follow(context.Background(), "B1", "u1", follow) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ids = append(ids, ev.ID)
	}
	if diff := cmp.Diff([]int64{1, 2}, ids); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	var stalled *BuildStalledError
	if len(errs) != 1 || !errors.As(errs[0], &stalled) || stalled.LastEventID != 2 || stalled.Quiet != time.Minute {
		t.Fatalf("errors %v; want one *BuildStalledError after event 2", errs)
	}
	want := []time.Duration{25 * time.Second, 25 * time.Second, 25 * time.Second, 25 * time.Second, 10 * time.Second}
	if diff := cmp.Diff(want, clock.Waits()); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
	if n := src.n.Load(); n != 6 {
		t.Errorf("%d fetches, want 6 (the last when the stall timeout ran out)", n)
	}
}

// A negative StallTimeout waits as long as the context allows: a build
// quiet for longer than the default still ends with its outcome.
func TestBuildsNegativeStallTimeoutWaitsForTheOutcome(t *testing.T) {
	clock := newBuildsStepClock()
	c := buildsFollowClient(t, clock)
	quietFetches := int(2*DefaultBuildStallTimeout/(2*time.Second)) + 1 // 2 s apart
	src := &quietSource{script: map[int][]BuildEvent{
		0:            {buildEvt(1, "started", "setup")},
		quietFetches: {buildEvt(2, "completed", "deploy", evPreview("https://preview.example/p1"))},
	}, limit: quietFetches + 10}
	res, err := c.Builds.Wait(context.Background(), "B1", "u1", &FollowOptions{Source: src, StallTimeout: -1, MetadataWait: -1})
	if err != nil || res.PreviewURL != "https://preview.example/p1" {
		t.Fatalf("Wait = %+v, %v; want the deploy after %s of quiet", res, err, 2*DefaultBuildStallTimeout)
	}
}

// Once the deploy's completion is read, the stall timeout no longer
// applies: the metadata wait decides when the reading ends, and the build
// succeeded.
func TestBuildsStallTimeoutEndsAtTheDeploy(t *testing.T) {
	clock := newBuildsStepClock()
	c := buildsFollowClient(t, clock)
	src := &quietSource{script: map[int][]BuildEvent{
		0: {buildEvt(1, "completed", "deploy", evPreview("https://preview.example/p1"))},
	}, limit: 10_000}
	res, err := c.Builds.Wait(context.Background(), "B1", "u1", &FollowOptions{
		Source: src, StallTimeout: time.Minute, MetadataWait: time.Hour, MetadataStartWait: time.Hour,
	})
	if err != nil || res.PreviewURL != "https://preview.example/p1" || res.MetadataDone {
		t.Fatalf("Wait = %+v, %v; want the deploy's success after the metadata wait", res, err)
	}
	if got := sumWaits(clock.Waits()); got != time.Hour {
		t.Errorf("waited %s after the deploy, want the metadata wait (1h)", got)
	}
}

// The audit's case: the worker's endpoint keeps answering nothing new after
// "started", and the caller gave context.Background(). On the real clock
// (a synctest bubble's), with every default, Wait gives up after
// DefaultBuildStallTimeout instead of polling for ever.
func TestBuildsWaitOnTheWorkerGivesUpOnAQuietBuild(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var fetches atomic.Int32
		c := newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if fetches.Add(1) > 10_000 {
				return nil, errQuietLimit
			}
			if r.URL.Query().Get("lastEventId") == "0" {
				return jsonResponse(r, 200, `{"buildId":"B1","events":[{"id":"1","build_id":"B1","event_type":"started","phase":"development","title":"Writing code","overall_progress":0.1,"finished":false}],"lastEventId":1}`), nil
			}
			return jsonResponse(r, 200, `{"buildId":"B1","events":[],"lastEventId":"1"}`), nil
		}))
		start := time.Now()
		_, err := c.Builds.Wait(context.Background(), "B1", "u1", nil)
		var stalled *BuildStalledError
		if !errors.As(err, &stalled) || stalled.ID != "B1" || stalled.LastEventID != 1 {
			t.Fatalf("Wait: %v; want a *BuildStalledError after event 1", err)
		}
		// The bubble's clock is fake: this is the stall timeout plus at
		// most one poll interval, not a measure of the machine's speed.
		if took := time.Since(start); took < DefaultBuildStallTimeout || took > DefaultBuildStallTimeout+time.Minute {
			t.Errorf("Wait gave up after %s of the bubble's time, want %s", took, DefaultBuildStallTimeout)
		}
	})
}

func TestBuildStalledErrorMessage(t *testing.T) {
	err := error(&BuildStalledError{ID: "B1", LastEventID: 42, Quiet: 15 * time.Minute})
	want := "sheen: build B1 went quiet: no new event for 15m0s after event 42; its outcome is unknown"
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
	if !errors.Is(err, ErrBuildStalled) || errors.Is(err, ErrBuildFailed) {
		t.Errorf("errors.Is: ErrBuildStalled %v, ErrBuildFailed %v", errors.Is(err, ErrBuildStalled), errors.Is(err, ErrBuildFailed))
	}
}
