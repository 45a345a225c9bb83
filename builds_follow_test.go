package sheen

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// buildsStepClock is a Clock whose After fires at once and moves the time on by
// d, recording every wait: the follower's pace, without sleeping.
type buildsStepClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
}

func newBuildsStepClock() *buildsStepClock {
	return &buildsStepClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *buildsStepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *buildsStepClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d > 0 {
		c.now = c.now.Add(d)
		c.waits = append(c.waits, d)
	}
	ch <- c.now
	return ch
}

func (c *buildsStepClock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

// buildsScript answers each fetch with the next batch, then with nothing.
type buildsScript struct {
	mu      sync.Mutex
	batches []buildsBatch
	afters  []int64
	users   []string
}

type buildsBatch struct {
	events []BuildEvent
	more   bool
	err    error
}

func newBuildsScript(batches ...[]BuildEvent) *buildsScript {
	s := &buildsScript{}
	for _, b := range batches {
		s.batches = append(s.batches, buildsBatch{events: b})
	}
	return s
}

func (s *buildsScript) FetchEvents(_ context.Context, _, userID string, after int64) ([]BuildEvent, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.afters = append(s.afters, after)
	s.users = append(s.users, userID)
	if len(s.batches) == 0 {
		return nil, false, nil
	}
	b := s.batches[0]
	s.batches = s.batches[1:]
	return append([]BuildEvent(nil), b.events...), b.more, b.err
}

func (s *buildsScript) fetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.afters)
}

// evt is an event as a source would give it.
func buildEvt(id int64, typ, phase string, opts ...func(*EventRow)) BuildEvent {
	r := EventRow{ID: id, BuildID: "B1", EventType: typ, EventPhase: phase}
	for _, o := range opts {
		o(&r)
	}
	return r.Event()
}

func evProgress(p float64) func(*EventRow) { return func(r *EventRow) { r.OverallProgress = &p } }
func evPreview(u string) func(*EventRow) {
	return func(r *EventRow) { r.PreviewURL = u; r.Finished = true }
}
func evFailure(code, msg string) func(*EventRow) {
	return func(r *EventRow) { r.ErrorCode, r.UserErrorMessage = code, msg }
}
func evData(j string) func(*EventRow) { return func(r *EventRow) { r.EventData = json.RawMessage(j) } }

// buildsFollowClient is a client whose only way to the worker fails: follower
// tests use their own sources.
func buildsFollowClient(t *testing.T, clock Clock) *WorkerClient {
	t.Helper()
	return newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL)
		return jsonResponse(r, 500, `{}`), nil
	}), WithClock(clock))
}

func eventIDs(events []BuildEvent) []int64 {
	var out []int64
	for _, e := range events {
		out = append(out, e.ID)
	}
	return out
}

func TestBuildsEventsFromTheWorkerResumeFromTheLargestID(t *testing.T) {
	c, mt, _ := buildsClient(t, WithClock(newBuildsStepClock()))
	answers := []string{
		`{"buildId":"B1","events":[
			{"id":"1","build_id":"B1","event_type":"started","phase":"setup","title":"Setting up","overall_progress":0.05,"finished":false,"created_at":"2025-01-01T00:00:00.000Z"},
			{"id":2,"build_id":"B1","event_type":"progress","phase":"development","overall_progress":"0.3"}],"lastEventId":2}`,
		`{"buildId":"B1","events":[{"event_type":"progress","title":"no id"}],"lastEventId":"2"}`,
		`{"buildId":"B1","events":[
			{"id":"5","event_type":"progress","phase":"build","overall_progress":0.7},
			{"id":"2","event_type":"progress","phase":"development","overall_progress":0.3},
			{"id":"4","event_type":"progress","phase":"dependencies","overall_progress":0.5}],"lastEventId":5}`,
		`{"buildId":"B1","events":[{"id":"6","event_type":"completed","phase":"deploy","overall_progress":1,"finished":true,
			"preview_url":"https://preview.example/p1","versionId":"V1","created_at":"2025-01-01T00:02:30.000Z"}],"lastEventId":6}`,
		`{"buildId":"B1","events":[{"id":"7","event_type":"completed","phase":"metadata","overall_progress":100,"versionName":"Todo app v1"}],"lastEventId":7}`,
	}
	var mu sync.Mutex
	var asked []string
	mt.RegisterResponder("GET", `=~^`+buildsBase+`/v1/builds/B1/events`, func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		defer mu.Unlock()
		if got := r.URL.Query().Get("userId"); got != "u1" {
			t.Errorf("userId %q, want u1", got)
		}
		asked = append(asked, r.URL.Query().Get("lastEventId"))
		return buildsAnswer(200, answers[min(len(asked)-1, len(answers)-1)])(r)
	})
	var seen []BuildEvent
	res, err := c.Builds.Wait(context.Background(), "B1", "u1", &FollowOptions{OnEvent: func(e BuildEvent) { seen = append(seen, e) }})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"0", "2", "2", "5", "6"}, asked); diff != "" {
		t.Errorf("lastEventId asked (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int64{1, 2, 4, 5, 6, 7}, eventIDs(seen)); diff != "" {
		t.Errorf("events delivered (-want +got): each once, in id order:\n%s", diff)
	}
	want := &BuildResult{
		ID: "B1", PreviewURL: "https://preview.example/p1", VersionID: "V1", VersionName: "Todo app v1",
		Duration: 150 * time.Second, LastEventID: 7, Events: 6, MetadataDone: true,
	}
	if diff := cmp.Diff(want, res, cmpopts.IgnoreFields(BuildResult{}, "Final")); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	if res.Final.ID != 6 {
		t.Errorf("final event %d, want the deploy's completion (6)", res.Final.ID)
	}
}

func TestBuildsEventsPollIntervalFollowsThePhase(t *testing.T) {
	batches := func() *buildsScript {
		return newBuildsScript(
			[]BuildEvent{buildEvt(1, "started", "setup")},
			[]BuildEvent{buildEvt(2, "progress", "dependencies")},
			nil,
			[]BuildEvent{buildEvt(3, "progress", "build")},
			[]BuildEvent{buildEvt(4, "progress", "deploy")},
			[]BuildEvent{buildEvt(5, "completed", "deploy", evPreview("https://p.example"))},
		)
	}
	for _, tc := range []struct {
		name     string
		interval func(Phase) time.Duration
		want     []time.Duration
	}{
		{"defaults", nil, []time.Duration{2 * time.Second, 3 * time.Second, 3 * time.Second, time.Second, time.Second}},
		{"custom", func(phase Phase) time.Duration {
			if phase == PhaseBuild {
				return 250 * time.Millisecond
			}
			return 0 // the default
		}, []time.Duration{2 * time.Second, 3 * time.Second, 3 * time.Second, 250 * time.Millisecond, time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newBuildsStepClock()
			c := buildsFollowClient(t, clock)
			follow := &FollowOptions{Source: batches(), MetadataWait: -1, PollInterval: tc.interval}
			if _, err := c.Builds.Wait(context.Background(), "B1", "u1", follow); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, clock.Waits()); diff != "" {
				t.Errorf("waits between fetches (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildsEventsEndByTheSpecsRules(t *testing.T) {
	type outcome struct {
		ok            bool
		failCode      string
		failMessage   string
		previewURL    string
		metadataDone  bool
		metadataError string // its code
	}
	for _, tc := range []struct {
		name    string
		batches [][]BuildEvent
		follow  FollowOptions // without Source
		wantIDs []int64
		want    outcome
		// wantWaited is the clock time spent after the last event, when it
		// matters.
		wantWaited time.Duration
	}{
		{
			name: "deploy completed ends at once without a metadata wait",
			batches: [][]BuildEvent{
				{buildEvt(1, "started", "setup"), buildEvt(2, "completed", "deploy", evPreview("https://p.example/1"))},
				{buildEvt(3, "started", "metadata")},
			},
			follow:  FollowOptions{MetadataWait: -1},
			wantIDs: []int64{1, 2},
			want:    outcome{ok: true, previewURL: "https://p.example/1"},
		},
		{
			name: "metadata failure after the deploy is reported; the deploy stands",
			batches: [][]BuildEvent{
				{buildEvt(1, "started", "setup"), buildEvt(2, "completed", "deploy", evPreview("https://p.example/2"))},
				{buildEvt(3, "progress", "metadata", evProgress(60))},
				{buildEvt(4, "failed", "metadata", evFailure("METADATA_FAILED", "Could not name the version"))},
				{buildEvt(5, "progress", "metadata")},
			},
			wantIDs: []int64{1, 2, 3, 4},
			want:    outcome{ok: true, previewURL: "https://p.example/2", metadataDone: true, metadataError: "METADATA_FAILED"},
		},
		{
			name: "metadata at 100% ends the wait",
			batches: [][]BuildEvent{
				{buildEvt(1, "completed", "deploy", evPreview("https://p.example/3"))},
				{buildEvt(2, "progress", "metadata", evProgress(100))},
				{buildEvt(3, "progress", "metadata")},
			},
			wantIDs: []int64{1, 2},
			want:    outcome{ok: true, previewURL: "https://p.example/3", metadataDone: true},
		},
		{
			name: "metadata that never ends is cut at the wait",
			batches: [][]BuildEvent{
				{buildEvt(1, "completed", "deploy", evPreview("https://p.example/4"))},
				{buildEvt(2, "started", "metadata")},
			},
			follow:     FollowOptions{MetadataWait: 5 * time.Second},
			wantIDs:    []int64{1, 2},
			want:       outcome{ok: true, previewURL: "https://p.example/4"},
			wantWaited: 5 * time.Second,
		},
		{
			name: "no metadata phase: reading stops after the start wait",
			batches: [][]BuildEvent{
				{buildEvt(1, "completed", "deploy", evPreview("https://p.example/4b"))},
			},
			wantIDs:    []int64{1},
			want:       outcome{ok: true, previewURL: "https://p.example/4b"},
			wantWaited: DefaultMetadataStartWait,
		},
		{
			name: "a negative start wait does not wait for a metadata phase to start",
			batches: [][]BuildEvent{
				{buildEvt(1, "completed", "deploy", evPreview("https://p.example/4d"))},
				{buildEvt(2, "started", "metadata")},
			},
			follow:  FollowOptions{MetadataStartWait: -1},
			wantIDs: []int64{1},
			want:    outcome{ok: true, previewURL: "https://p.example/4d"},
		},
		{
			name: "a metadata phase that starts late is followed",
			batches: [][]BuildEvent{
				{buildEvt(1, "completed", "deploy", evPreview("https://p.example/4c"))},
				nil, nil,
				{buildEvt(2, "started", "metadata")},
				nil,
				{buildEvt(3, "completed", "metadata")},
			},
			follow:     FollowOptions{MetadataStartWait: 3 * time.Second},
			wantIDs:    []int64{1, 2, 3},
			want:       outcome{ok: true, previewURL: "https://p.example/4c", metadataDone: true},
			wantWaited: 7 * time.Second, // 3 x 1 s in deploy (the last fetch at the start deadline still counts), 2 x 2 s in metadata
		},
		{
			name: "failure in the build phase",
			batches: [][]BuildEvent{
				{buildEvt(1, "started", "setup"), buildEvt(2, "failed", "build", evFailure("BUILD_FAILED", "The build failed: missing module"))},
				{buildEvt(3, "progress", "build")},
			},
			wantIDs: []int64{1, 2},
			want:    outcome{failCode: "BUILD_FAILED", failMessage: "The build failed: missing module"},
		},
		{
			name: "legacy task_failed",
			batches: [][]BuildEvent{
				{buildEvt(1, "plan_started", ""), buildEvt(2, "task_failed", "", evData(`{"message":"Task failed","error":"TypeScript error"}`))},
			},
			wantIDs: []int64{1, 2},
			want:    outcome{failMessage: "TypeScript error"},
		},
		{
			name: "any type ending in _failed",
			batches: [][]BuildEvent{
				{buildEvt(1, "ai_started", ""), buildEvt(2, "lint_failed", "", evData(`{"message":"Lint failed"}`))},
			},
			wantIDs: []int64{1, 2},
			want:    outcome{failMessage: "Lint failed"},
		},
		{
			name: "metadata failure before the deploy is not the end",
			batches: [][]BuildEvent{
				{buildEvt(1, "failed", "metadata", evFailure("META", "no metadata"))},
				{buildEvt(2, "completed", "deploy", evPreview("https://p.example/5"))},
			},
			wantIDs: []int64{1, 2},
			want:    outcome{ok: true, previewURL: "https://p.example/5", metadataDone: true, metadataError: "META"},
		},
		{
			name: "a failure after the deploy does not undo it",
			batches: [][]BuildEvent{
				{buildEvt(1, "completed", "deploy", evPreview("https://p.example/6")), buildEvt(2, "failed", "deploy", evFailure("LATE", "late"))},
			},
			follow:     FollowOptions{MetadataWait: 2 * time.Second},
			wantIDs:    []int64{1, 2},
			want:       outcome{ok: true, previewURL: "https://p.example/6"},
			wantWaited: 2 * time.Second,
		},
		{
			name: "legacy deploy_completed",
			batches: [][]BuildEvent{
				{buildEvt(1, "build_started", ""), buildEvt(2, "deploy_completed", "", evData(`{"message":"Deployed","previewUrl":"https://p.example/7"}`))},
			},
			follow:  FollowOptions{MetadataWait: -1},
			wantIDs: []int64{1, 2},
			want:    outcome{ok: true, previewURL: "https://p.example/7"},
		},
		{
			name: "completed in the build phase is not the end",
			batches: [][]BuildEvent{
				{buildEvt(1, "completed", "build")},
				{buildEvt(2, "completed", "", evPreview("https://p.example/8"))},
			},
			follow:  FollowOptions{MetadataWait: -1},
			wantIDs: []int64{1, 2},
			want:    outcome{ok: true, previewURL: "https://p.example/8"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Follow yields what the rules say and stops.
			clock := newBuildsStepClock()
			c := buildsFollowClient(t, clock)
			src := newBuildsScript(tc.batches...)
			var got []BuildEvent
			follow := tc.follow
			follow.Source = src
			for e, err := range c.Builds.Follow(context.Background(), "B1", "u1", &follow) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, e)
			}
			if diff := cmp.Diff(tc.wantIDs, eventIDs(got)); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if tc.wantWaited > 0 {
				var waited time.Duration
				for _, w := range clock.Waits() {
					waited += w
				}
				if waited != tc.wantWaited {
					t.Errorf("waited %s after the deploy, want %s", waited, tc.wantWaited)
				}
			}

			// Wait reports the outcome.
			c = buildsFollowClient(t, newBuildsStepClock())
			follow = tc.follow
			follow.Source = newBuildsScript(tc.batches...)
			res, err := c.Builds.Wait(context.Background(), "B1", "u1", &follow)
			if !tc.want.ok {
				var bf *BuildFailedError
				if !errors.As(err, &bf) || !errors.Is(err, ErrBuildFailed) {
					t.Fatalf("error %v, want *BuildFailedError", err)
				}
				if bf.Code != tc.want.failCode || bf.Message != tc.want.failMessage || bf.ID != "B1" {
					t.Errorf("failure %q %q of %q, want %q %q of B1", bf.Code, bf.Message, bf.ID, tc.want.failCode, tc.want.failMessage)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			gotOutcome := outcome{ok: true, previewURL: res.PreviewURL, metadataDone: res.MetadataDone}
			if res.MetadataError != nil {
				gotOutcome.metadataError = res.MetadataError.Code
			}
			if diff := cmp.Diff(tc.want, gotOutcome, cmp.AllowUnexported(outcome{})); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildsEventsFetchFullPagesAtOnce(t *testing.T) {
	clock := newBuildsStepClock()
	c := buildsFollowClient(t, clock)
	src := &buildsScript{batches: []buildsBatch{
		{events: []BuildEvent{buildEvt(1, "started", "setup"), buildEvt(2, "progress", "setup")}, more: true},
		{events: []BuildEvent{buildEvt(3, "progress", "build"), buildEvt(4, "progress", "build")}, more: true},
		{events: []BuildEvent{buildEvt(5, "completed", "deploy", evPreview("https://p.example"))}},
	}}
	if _, err := c.Builds.Wait(context.Background(), "B1", "u1", &FollowOptions{Source: src, MetadataWait: -1}); err != nil {
		t.Fatal(err)
	}
	if w := clock.Waits(); len(w) != 0 {
		t.Errorf("waited %v between full pages; want no wait", w)
	}
	if diff := cmp.Diff([]int64{0, 2, 4}, src.afters); diff != "" {
		t.Errorf("cursors asked (-want +got):\n%s", diff)
	}
}

func TestBuildsEventsResumeAfterAGivenID(t *testing.T) {
	c := buildsFollowClient(t, newBuildsStepClock())
	src := newBuildsScript([]BuildEvent{buildEvt(3, "progress", "build"), buildEvt(6, "completed", "deploy", evPreview("https://p.example"))})
	res, err := c.Builds.Wait(context.Background(), "B1", "u1", &FollowOptions{Source: src, AfterEventID: 5, MetadataWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	if src.afters[0] != 5 || res.Events != 1 || res.LastEventID != 6 {
		t.Errorf("first cursor %d, %d events, last id %d; want 5, 1 (event 3 is before the resume point), 6", src.afters[0], res.Events, res.LastEventID)
	}
}

func TestBuildsEventsStopOnSourceError(t *testing.T) {
	c := buildsFollowClient(t, newBuildsStepClock())
	down := errors.New("database is down")
	src := &buildsScript{batches: []buildsBatch{
		{events: []BuildEvent{buildEvt(1, "started", "setup")}},
		{err: down},
		{events: []BuildEvent{buildEvt(2, "completed", "deploy")}},
	}}
	var events []BuildEvent
	var errs []error
	for e, err := range c.Builds.Follow(context.Background(), "B1", "u1", &FollowOptions{Source: src}) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		events = append(events, e)
	}
	if len(events) != 1 || len(errs) != 1 || !errors.Is(errs[0], down) {
		t.Fatalf("got events %v and errors %v; want event 1, then the source's error once", eventIDs(events), errs)
	}
	if n := src.fetches(); n != 2 {
		t.Errorf("%d fetches, want 2: no reading after the error", n)
	}
	_, err := c.Builds.Wait(context.Background(), "B1", "u1", &FollowOptions{Source: &buildsScript{batches: []buildsBatch{{err: down}}}})
	if !errors.Is(err, down) || errors.Is(err, ErrBuildFailed) {
		t.Errorf("Wait error %v, want the source's error (the outcome is unknown, not a failure)", err)
	}
}

func TestBuildsEventsHonourContext(t *testing.T) {
	c := buildsFollowClient(t, newFakeClock(time.Time{})) // the clock never moves: only ctx can end the wait
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := newBuildsScript([]BuildEvent{buildEvt(1, "started", "setup")})
	var errs []error
	n := 0
	for _, err := range c.Builds.Follow(ctx, "B1", "u1", &FollowOptions{Source: src}) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n++
		cancel()
	}
	if n != 1 || len(errs) != 1 || !errors.Is(errs[0], context.Canceled) {
		t.Errorf("got %d events and errors %v; want 1 event, then context.Canceled once", n, errs)
	}
}

// buildsNotifySource is a buildsScript that also implements EventNotifier.
type buildsNotifySource struct {
	*buildsScript
	wake     chan struct{}
	fetched  chan int64
	subbed   atomic.Value // build id
	stopped  atomic.Int32
	subCount atomic.Int32
}

func (s *buildsNotifySource) FetchEvents(ctx context.Context, buildID, userID string, after int64) ([]BuildEvent, bool, error) {
	ev, more, err := s.buildsScript.FetchEvents(ctx, buildID, userID, after)
	select {
	case s.fetched <- after:
	default:
	}
	return ev, more, err
}

func (s *buildsNotifySource) Subscribe(_ context.Context, buildID string) (<-chan struct{}, func()) {
	s.subbed.Store(buildID)
	s.subCount.Add(1)
	return s.wake, func() { s.stopped.Add(1) }
}

func TestBuildsEventsWakeOnNotification(t *testing.T) {
	c := buildsFollowClient(t, newFakeClock(time.Time{})) // the poll interval never passes
	src := &buildsNotifySource{
		buildsScript: newBuildsScript(
			[]BuildEvent{buildEvt(1, "started", "build")},
			[]BuildEvent{buildEvt(2, "completed", "deploy", evPreview("https://p.example"))},
		),
		wake:    make(chan struct{}, 1),
		fetched: make(chan int64, 4),
	}
	type result struct {
		res *BuildResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := c.Builds.Wait(context.Background(), "B1", "u1", &FollowOptions{
			Source:       src,
			MetadataWait: -1,
			PollInterval: func(Phase) time.Duration { return time.Hour },
		})
		done <- result{res, err}
	}()
	<-src.fetched
	src.wake <- struct{}{}
	select {
	case r := <-done:
		if r.err != nil || r.res.LastEventID != 2 {
			t.Fatalf("got %+v, %v; want the build completed at event 2", r.res, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the reader did not fetch when notified (it waited out its one-hour interval)")
	}
	if src.subbed.Load() != "B1" || src.subCount.Load() != 1 || src.stopped.Load() != 1 {
		t.Errorf("subscribed to %v %d time(s), stopped %d time(s); want B1 once, stopped once", src.subbed.Load(), src.subCount.Load(), src.stopped.Load())
	}
}

func TestBuildsEventsBreakStopsReading(t *testing.T) {
	c := buildsFollowClient(t, newBuildsStepClock())
	src := &buildsNotifySource{
		buildsScript: newBuildsScript([]BuildEvent{buildEvt(1, "started", "build"), buildEvt(2, "progress", "build")}, []BuildEvent{buildEvt(3, "progress", "build")}),
		wake:         make(chan struct{}, 1),
		fetched:      make(chan int64, 4),
	}
	for range c.Builds.Follow(context.Background(), "B1", "u1", &FollowOptions{Source: src}) {
		break
	}
	if n := src.fetches(); n != 1 {
		t.Errorf("%d fetches after breaking on the first event, want 1", n)
	}
	if src.stopped.Load() != 1 {
		t.Error("the subscription was not ended")
	}
}

func TestBuildsClientEventSourceOption(t *testing.T) {
	src := newBuildsScript([]BuildEvent{buildEvt(1, "completed", "deploy", evPreview("https://p.example"))})
	c := newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Errorf("unexpected request %s", r.URL)
		return jsonResponse(r, 500, `{}`), nil
	}), WithClock(newBuildsStepClock()), WithBuildEventSource(src))
	res, err := c.Builds.Wait(context.Background(), "B1", "u1", &FollowOptions{MetadataWait: -1})
	if err != nil || res.PreviewURL != "https://p.example" {
		t.Fatalf("got %+v, %v", res, err)
	}
	if src.users[0] != "u1" {
		t.Errorf("source asked for user %q, want u1", src.users[0])
	}
	if _, err := NewWorkerClient(WithSecret(testSecret), WithBuildEventSource(nil)); err == nil {
		t.Error("a nil source was accepted")
	}
}

func TestBuildsBuildFailedError(t *testing.T) {
	e := newBuildFailedError("B1", buildEvt(9, "failed", "build", evFailure("BUILD_FAILED", "Your app did not compile")))
	if got, want := e.Error(), "sheen: build B1 failed in phase build: BUILD_FAILED: Your app did not compile"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var wrapped error = errors.Join(errors.New("context"), e)
	var bf *BuildFailedError
	if !errors.As(wrapped, &bf) || !errors.Is(wrapped, ErrBuildFailed) || bf.Event.ID != 9 {
		t.Error("a wrapped BuildFailedError is not found by errors.As / errors.Is")
	}
	if bare := newBuildFailedError("B2", buildEvt(1, "failed", "")); bare.Message == "" {
		t.Error("a failure without text has an empty message")
	}
}

// A bad FollowOptions value fails the call before any reading; it is never
// clamped or ignored. nil functions and a nil source are the defaults, not
// bad values.
func TestBuildsFollowRefusesBadOptionValues(t *testing.T) {
	c := buildsFollowClient(t, newBuildsStepClock())
	src := newBuildsScript([]BuildEvent{buildEvt(1, "completed", "deploy", evPreview("https://p.example"))})
	bad := &FollowOptions{Source: src, AfterEventID: -5}
	const field = "FollowOptions.AfterEventID"
	var ve *ValidationError
	_, err := c.Builds.Wait(context.Background(), "B1", "u1", bad)
	if !errors.As(err, &ve) || ve.Field != field {
		t.Errorf("Wait with a negative AfterEventID: %v, want a *ValidationError naming %s", err, field)
	}
	for _, err := range c.Builds.Follow(context.Background(), "B1", "u1", bad) {
		if !errors.As(err, &ve) || ve.Field != field {
			t.Errorf("Follow with a negative AfterEventID: %v, want a *ValidationError naming %s", err, field)
		}
	}
	if n := src.fetches(); n != 0 {
		t.Errorf("%d fetches with bad options, want none", n)
	}
}

// WithCallTimeout bounds the whole follow, not one request: a build that
// never ends is given up when it runs out.
func TestBuildsFollowCallTimeoutBoundsTheFollow(t *testing.T) {
	c := buildsFollowClient(t, newFakeClock(time.Time{})) // the poll interval never passes
	src := newBuildsScript([]BuildEvent{buildEvt(1, "started", "setup")})
	_, err := c.Builds.Wait(context.Background(), "B1", "u1", &FollowOptions{Source: src}, WithCallTimeout(10*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait error %v, want the call's deadline", err)
	}
}

// A client NewWorkerClient did not make still hands out a worker event
// source; reading from it fails with ErrNotConfigured instead of panicking.
func TestBuildsWorkerEventSourceOfAnUnconfiguredClient(t *testing.T) {
	for name, svc := range map[string]*BuildsService{
		"zero WorkerClient": new(WorkerClient).Builds,
		"zero service":      new(BuildsService),
	} {
		src := svc.WorkerEventSource()
		if src == nil {
			t.Fatalf("%s: WorkerEventSource returned nil", name)
		}
		events, more, err := src.FetchEvents(context.Background(), "B1", "u1", 0)
		if !errors.Is(err, ErrNotConfigured) || events != nil || more {
			t.Errorf("%s: FetchEvents = %v, %v, %v; want ErrNotConfigured", name, events, more, err)
		}
	}
}
