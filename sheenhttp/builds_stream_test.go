package sheenhttp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sheenapps/sheen-go"
	"go.uber.org/goleak"
)

// memSource is an in-memory EventSource and EventNotifier: events per
// build, one owner per build (another user's fetch answers 404 as the
// worker does), counts of fetches and of live subscriptions.
type memSource struct {
	mu       sync.Mutex
	events   map[string][]sheen.BuildEvent
	owner    map[string]string
	wakes    map[chan struct{}]string
	fetches  int
	failWith error // every fetch fails with it while set
}

func newMemSource() *memSource {
	return &memSource{events: map[string][]sheen.BuildEvent{}, owner: map[string]string{}, wakes: map[chan struct{}]string{}}
}

func (m *memSource) FetchEvents(ctx context.Context, buildID, userID string, after int64) ([]sheen.BuildEvent, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fetches++
	if m.failWith != nil {
		return nil, false, m.failWith
	}
	if m.owner[buildID] != userID {
		return nil, false, &sheen.APIError{StatusCode: http.StatusNotFound, Code: "BUILD_NOT_FOUND", Message: "Build not found"}
	}
	var out []sheen.BuildEvent
	for _, ev := range m.events[buildID] {
		if ev.ID > after {
			out = append(out, ev)
		}
	}
	return out, false, nil
}

func (m *memSource) Subscribe(ctx context.Context, buildID string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	m.mu.Lock()
	m.wakes[ch] = buildID
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		delete(m.wakes, ch)
		m.mu.Unlock()
	}
}

// readers counts the live subscriptions to buildID: one per upstream
// reader following it.
func (m *memSource) readers(buildID string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, b := range m.wakes {
		if b == buildID {
			n++
		}
	}
	return n
}

func (m *memSource) fetchCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fetches
}

func (m *memSource) fail(err error) {
	m.mu.Lock()
	m.failWith = err
	m.mu.Unlock()
}

// build registers a build of userID with no events yet.
func (m *memSource) build(buildID, userID string) {
	m.mu.Lock()
	m.owner[buildID] = userID
	m.mu.Unlock()
}

// add appends events to a build, numbering them on, and wakes its readers.
func (m *memSource) add(buildID string, evs ...sheen.BuildEvent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ev := range evs {
		n := len(m.events[buildID])
		ev.ID, ev.BuildID = int64(n+1), buildID
		m.events[buildID] = append(m.events[buildID], ev)
	}
	for ch, b := range m.wakes {
		if b == buildID {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// The phases of a successful build, as events.
func progressEvent(phase sheen.Phase, title string, p float64) sheen.BuildEvent {
	return sheen.BuildEvent{Type: "progress", Kind: sheen.KindProgress, Phase: phase, Title: title, Progress: p, HasProgress: true}
}

var (
	evStarted  = sheen.BuildEvent{Type: "started", Kind: sheen.KindStarted, Phase: sheen.PhaseDevelopment, Title: "Build started", Progress: 0.05, HasProgress: true}
	evCode     = progressEvent(sheen.PhaseDevelopment, "Writing the code", 0.25)
	evDeps     = progressEvent(sheen.PhaseDependencies, "Installing dependencies", 0.45)
	evBuild    = progressEvent(sheen.PhaseBuild, "Building", 0.65)
	evDeploy   = progressEvent(sheen.PhaseDeploy, "Deploying", 0.85)
	evDeployed = sheen.BuildEvent{Type: "completed", Kind: sheen.KindCompleted, Phase: sheen.PhaseDeploy, Title: "Deployed", Progress: 1, HasProgress: true,
		Finished: true, PreviewURL: "https://preview.test/p1/", VersionID: "ver1", VersionName: "v1.0.0"}
	evMeta     = progressEvent(sheen.PhaseMetadata, "Writing metadata", 0.6)
	evMetaDone = sheen.BuildEvent{Type: "completed", Kind: sheen.KindCompleted, Phase: sheen.PhaseMetadata, Title: "Metadata ready", Progress: 1, HasProgress: true, Finished: true}
	evFailed   = sheen.BuildEvent{Type: "failed", Kind: sheen.KindFailed, Phase: sheen.PhaseBuild, Title: "Build failed", Finished: true,
		Error: &sheen.BuildEventError{Code: "BUILD_FAILED", Message: "The build script failed"}}
)

func wholeBuild() []sheen.BuildEvent {
	return []sheen.BuildEvent{evStarted, evCode, evDeps, evBuild, evDeploy, evDeployed, evMeta, evMetaDone}
}

const (
	alice = "7d1f7e52-5b0e-4c7a-9a59-2f2d0f0a6b11"
	bob   = "0c9a3f1e-2d4b-4e6f-8a1c-3b5d7f9e1a20"
)

// headerUser is a test Authorize: the user named by the X-User header.
func headerUser(r *http.Request) (string, error) {
	if u := r.Header.Get("X-User"); u != "" {
		return u, nil
	}
	return "", errors.New("not signed in")
}

// newTestStream makes a BuildStream over src, on a client (with opts) that
// never reaches a worker; the readers poll once an hour, so only the
// source's notifications move them.
func newTestStream(t *testing.T, src sheen.EventSource, cfg BuildStreamConfig, opts ...sheen.Option) *BuildStream {
	t.Helper()
	c := newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return nil, errors.New("no worker in this test")
	}), opts...)
	if cfg.Authorize == nil {
		cfg.Authorize = headerUser
	}
	var follow sheen.FollowOptions
	if cfg.Follow != nil {
		follow = *cfg.Follow
	}
	follow.Source, follow.PollInterval = src, func(sheen.Phase) time.Duration { return time.Hour }
	cfg.Follow = &follow
	s, err := NewBuildStream(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sseRecorder is a flushable ResponseWriter that keeps what a stream
// wrote. With block set, every Write waits until block is closed or the
// write deadline passes: a browser that stopped reading.
type sseRecorder struct {
	mu       sync.Mutex
	header   http.Header
	status   int
	buf      bytes.Buffer
	deadline time.Time
	block    chan struct{}
}

func newRecorder() *sseRecorder { return &sseRecorder{header: http.Header{}} }

func (r *sseRecorder) Header() http.Header { return r.header }

func (r *sseRecorder) WriteHeader(status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status == 0 {
		r.status = status
	}
}

func (r *sseRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	block, deadline := r.block, r.deadline
	r.mu.Unlock()
	if block != nil {
		var expired <-chan time.Time
		if !deadline.IsZero() {
			expired = time.After(time.Until(deadline))
		}
		select {
		case <-block:
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.buf.Write(p)
}

func (r *sseRecorder) Flush() {}

func (r *sseRecorder) SetWriteDeadline(t time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deadline = t
	return nil
}

func (r *sseRecorder) code() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *sseRecorder) body() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// sseFrame is one parsed block of a stream: a message, an event, a comment
// or a retry hint.
type sseFrame struct {
	id, event, data, comment, retry string
}

// parseSSE splits a stream into its blocks, as an EventSource reads them.
func parseSSE(body string) []sseFrame {
	var out []sseFrame
	for _, block := range strings.Split(body, "\n\n") {
		if block == "" {
			continue
		}
		var f sseFrame
		for _, line := range strings.Split(block, "\n") {
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "":
				f.comment = value
			case "id":
				f.id = value
			case "event":
				f.event = value
			case "data":
				f.data += value
			case "retry":
				f.retry = value
			}
		}
		out = append(out, f)
	}
	return out
}

// messages returns the ids of the build-event messages of a stream.
func messageIDs(frames []sseFrame) []int64 {
	var ids []int64
	for _, f := range frames {
		if f.id != "" && f.event == "" {
			id, _ := strconv.ParseInt(f.id, 10, 64)
			ids = append(ids, id)
		}
	}
	return ids
}

func endOf(t *testing.T, frames []sseFrame) map[string]any {
	t.Helper()
	for _, f := range frames {
		if f.event == "end" {
			var m map[string]any
			if err := json.Unmarshal([]byte(f.data), &m); err != nil {
				t.Fatalf("end event %q: %v", f.data, err)
			}
			return m
		}
	}
	return nil
}

// watch is one browser's request to a stream, served on its own goroutine.
type watch struct {
	rec    *sseRecorder
	cancel context.CancelFunc
	done   chan struct{}
}

func (w *watch) frames() []sseFrame { return parseSSE(w.rec.body()) }

func (w *watch) ended() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// open starts a request as user for buildID, resuming after lastID ("" for
// none).
func open(s http.Handler, user, buildID, lastID string, rec *sseRecorder) *watch {
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/app/builds/"+buildID+"/events", nil)
	req.SetPathValue("buildId", buildID)
	if user != "" {
		req.Header.Set("X-User", user)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	w := &watch{rec: rec, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		s.ServeHTTP(rec, req)
	}()
	return w
}

func ids(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// A browser that drops mid-build and reconnects with the last id it
// received gets every later event once: none repeated, none missed, and
// then the end.
func TestBuildStreamResumesFromLastEventID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newMemSource()
		src.build("b1", alice)
		src.add("b1", evStarted, evCode, evDeps)
		s := newTestStream(t, src, BuildStreamConfig{})
		defer s.Close()

		first := open(s, alice, "b1", "", newRecorder())
		synctest.Wait()
		if got := messageIDs(first.frames()); !slices.Equal(got, ids(1, 3)) {
			t.Fatalf("first connection got %v, want 1..3", got)
		}
		if f := first.frames(); f[0].retry != "2000" {
			t.Errorf("first block %+v, want the retry hint", f[0])
		}
		first.cancel() // the connection drops
		synctest.Wait()
		src.add("b1", evBuild, evDeploy) // written while no one watched

		second := open(s, alice, "b1", "3", newRecorder())
		synctest.Wait()
		src.add("b1", evDeployed, evMeta, evMetaDone)
		synctest.Wait()
		if !second.ended() {
			t.Fatal("the stream did not end with the build")
		}
		got := append(messageIDs(first.frames()), messageIDs(second.frames())...)
		if !slices.Equal(got, ids(1, 8)) {
			t.Errorf("events across the reconnect: %v, want 1..8 once each", got)
		}
		end := endOf(t, second.frames())
		if end["status"] != "deployed" || end["previewUrl"] != "https://preview.test/p1/" || end["metadataDone"] != true ||
			end["versionName"] != "v1.0.0" || end["lastEventId"] != float64(8) {
			t.Errorf("end: %v", end)
		}
		if h := second.rec.Header(); h.Get("Content-Type") != "text/event-stream" || h.Get("Cache-Control") != "no-store" {
			t.Errorf("headers: %v", h)
		}
	})
}

// A browser that reconnects after the end was written (it did not close
// its EventSource) gets no event again, only the end.
func TestBuildStreamReconnectAfterEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newMemSource()
		src.build("b1", alice)
		src.add("b1", wholeBuild()...)
		s := newTestStream(t, src, BuildStreamConfig{})
		defer s.Close()
		w := open(s, alice, "b1", "8", newRecorder())
		synctest.Wait()
		if !w.ended() {
			t.Fatal("the stream of an ended build stayed open")
		}
		if got := messageIDs(w.frames()); len(got) != 0 {
			t.Errorf("events resent: %v", got)
		}
		if end := endOf(t, w.frames()); end["status"] != "deployed" {
			t.Errorf("end: %v", end)
		}
	})
}

// The messages carry the event as JSON, progress as a fraction.
func TestBuildStreamMessageShape(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newMemSource()
		src.build("b1", alice)
		at := time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC)
		ev := evDeployed
		ev.CreatedAt, ev.Code, ev.Params = at, "BUILD_deploy", json.RawMessage(`{"n":1}`)
		src.add("b1", ev)
		s := newTestStream(t, src, BuildStreamConfig{Follow: &sheen.FollowOptions{MetadataWait: -1}})
		defer s.Close()
		w := open(s, alice, "b1", "", newRecorder())
		synctest.Wait()
		frames := w.frames()
		var msg map[string]any
		if err := json.Unmarshal([]byte(frames[1].data), &msg); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"id": float64(1), "buildId": "b1", "type": "completed", "kind": "completed", "phase": "deploy",
			"title": "Deployed", "progress": float64(1), "finished": true, "previewUrl": "https://preview.test/p1/",
			"code": "BUILD_deploy", "params": map[string]any{"n": float64(1)}, "versionId": "ver1", "versionName": "v1.0.0",
			"createdAt": "2026-01-15T10:00:00Z",
		}
		if fmt.Sprint(msg) != fmt.Sprint(want) {
			t.Errorf("message\n got %v\nwant %v", msg, want)
		}
	})
}

// A failed build ends the stream with its code and message; a deploy with
// no metadata phase ends it once Wait's start wait is over.
func TestBuildStreamEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newMemSource()
		src.build("bad", alice)
		src.add("bad", evStarted, evCode, evFailed)
		src.build("nometa", alice)
		src.add("nometa", evStarted, evDeployed)
		s := newTestStream(t, src, BuildStreamConfig{})
		defer s.Close()

		failed := open(s, alice, "bad", "", newRecorder())
		noMeta := open(s, alice, "nometa", "", newRecorder())
		synctest.Wait()
		if !failed.ended() {
			t.Fatal("a failed build's stream stayed open")
		}
		end := endOf(t, failed.frames())
		errObj, _ := end["error"].(map[string]any)
		if end["status"] != "failed" || end["phase"] != "build" || errObj["code"] != "BUILD_FAILED" || errObj["message"] != "The build script failed" {
			t.Errorf("failed end: %v", end)
		}
		if noMeta.ended() {
			t.Fatal("the stream ended at the deploy, before the metadata phase had a chance")
		}
		time.Sleep(sheen.DefaultMetadataStartWait)
		synctest.Wait()
		if !noMeta.ended() {
			t.Fatal("the stream did not end after the metadata start wait")
		}
		if end := endOf(t, noMeta.frames()); end["status"] != "deployed" || end["metadataDone"] != false {
			t.Errorf("deployed end: %v", end)
		}
	})
}

// An idle stream gets a comment every Heartbeat, and nothing else.
func TestBuildStreamHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newMemSource()
		src.build("b1", alice)
		src.add("b1", evStarted)
		s := newTestStream(t, src, BuildStreamConfig{Heartbeat: 20 * time.Second})
		defer s.Close()
		w := open(s, alice, "b1", "", newRecorder())
		synctest.Wait()
		count := func() int {
			n := 0
			for _, f := range w.frames() {
				if f.comment == "heartbeat" {
					n++
				}
			}
			return n
		}
		if n := count(); n != 0 {
			t.Fatalf("%d heartbeats before the interval", n)
		}
		time.Sleep(20 * time.Second)
		synctest.Wait()
		if n := count(); n != 1 {
			t.Fatalf("%d heartbeats after one interval, want 1", n)
		}
		// An event resets the interval: no heartbeat right after it.
		time.Sleep(10 * time.Second)
		src.add("b1", evCode)
		synctest.Wait()
		time.Sleep(15 * time.Second)
		synctest.Wait()
		if n := count(); n != 1 {
			t.Errorf("%d heartbeats 15 s after an event, want still 1", n)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if n := count(); n != 2 {
			t.Errorf("%d heartbeats 20 s after an event, want 2", n)
		}
		if got := messageIDs(w.frames()); !slices.Equal(got, ids(1, 2)) {
			t.Errorf("events: %v", got)
		}
		w.cancel()
	})
}

// Browsers watching one build as one user share one upstream reader; it
// stops when the last one leaves. Another user gets a reader of their own.
func TestBuildStreamSharesOneReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newMemSource()
		src.build("b1", alice)
		src.add("b1", evStarted)
		s := newTestStream(t, src, BuildStreamConfig{})
		defer s.Close()
		var watches []*watch
		for range 5 {
			watches = append(watches, open(s, alice, "b1", "", newRecorder()))
		}
		synctest.Wait()
		if n := src.readers("b1"); n != 1 {
			t.Fatalf("%d upstream readers for 5 browsers, want 1", n)
		}
		fetches := src.fetchCount()
		src.add("b1", evCode, evDeps)
		synctest.Wait()
		if n := src.fetchCount() - fetches; n != 1 {
			t.Errorf("one new batch of events cost %d fetches for 5 browsers, want 1", n)
		}
		for i, w := range watches {
			if got := messageIDs(w.frames()); !slices.Equal(got, ids(1, 3)) {
				t.Errorf("browser %d got %v", i, got)
			}
		}
		// Bob asks for alice's build: not his, refused, and no reader shared.
		rec := newRecorder()
		open(s, bob, "b1", "", rec)
		synctest.Wait()
		if rec.code() != http.StatusNotFound {
			t.Errorf("bob watching alice's build: %d", rec.code())
		}
		for _, w := range watches[:4] {
			w.cancel()
		}
		synctest.Wait()
		if n := src.readers("b1"); n != 1 {
			t.Errorf("%d upstream readers with one browser left, want 1", n)
		}
		watches[4].cancel()
		synctest.Wait()
		if n, hubs := src.readers("b1"), s.hubs.count(); n != 0 || hubs != 0 {
			t.Errorf("after the last browser left: %d readers, %d hubs; want none", n, hubs)
		}
	})
}

// A browser that stops reading delays neither the others nor the reader,
// and is dropped once a write has waited WriteTimeout.
func TestBuildStreamSlowBrowser(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newMemSource()
		src.build("b1", alice)
		src.add("b1", evStarted)
		s := newTestStream(t, src, BuildStreamConfig{WriteTimeout: 30 * time.Second})
		defer s.Close()
		stuck := newRecorder()
		stuck.block = make(chan struct{}) // never closed: it reads nothing
		slow := open(s, alice, "b1", "", stuck)
		fast := open(s, alice, "b1", "", newRecorder())
		synctest.Wait()
		src.add("b1", wholeBuild()[1:]...)
		synctest.Wait()
		if !fast.ended() {
			t.Fatal("the reading browser did not get to the end while another was stuck")
		}
		if got := messageIDs(fast.frames()); !slices.Equal(got, ids(1, 8)) {
			t.Errorf("the reading browser got %v", got)
		}
		if slow.ended() {
			t.Fatal("the stuck browser was dropped before its write timed out")
		}
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if !slow.ended() {
			t.Fatal("the stuck browser was not dropped after WriteTimeout")
		}
	})
}

// A build with more events than the reader keeps is still streamed whole:
// the events the reader let go are read from the source.
func TestBuildStreamCatchUp(t *testing.T) {
	old := maxHeldFrames
	maxHeldFrames = 3
	defer func() { maxHeldFrames = old }()
	synctest.Test(t, func(t *testing.T) {
		src := newMemSource()
		src.build("b1", alice)
		var evs []sheen.BuildEvent
		for i := range 10 {
			evs = append(evs, progressEvent(sheen.PhaseDevelopment, fmt.Sprint("step ", i), float64(i)/20))
		}
		src.add("b1", evs...)
		s := newTestStream(t, src, BuildStreamConfig{})
		defer s.Close()
		early := open(s, alice, "b1", "", newRecorder())
		synctest.Wait()
		late := open(s, alice, "b1", "2", newRecorder())
		synctest.Wait()
		if got := messageIDs(early.frames()); !slices.Equal(got, ids(1, 10)) {
			t.Errorf("from the start: %v", got)
		}
		if got := messageIDs(late.frames()); !slices.Equal(got, ids(3, 10)) {
			t.Errorf("after 2: %v", got)
		}
		if s.hubs.count() != 1 {
			t.Errorf("%d hubs", s.hubs.count())
		}
		early.cancel()
		late.cancel()
	})
}

// Refusals: who may watch which build, and what the request must say.
func TestBuildStreamRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newMemSource()
		src.build("b1", alice)
		src.build("secret", alice)
		src.add("b1", evStarted)
		s := newTestStream(t, src, BuildStreamConfig{
			AuthorizeResource: func(r *http.Request, userID string, kind ResourceKind, id string) error {
				switch {
				case kind != ResourceBuild:
					return errors.New("unexpected kind " + string(kind))
				case id == "secret":
					return errors.New("not yours")
				case id == "gone":
					return sheen.ErrNotFound
				}
				return nil
			},
		})
		defer s.Close()
		for _, c := range []struct {
			name, user, build, last, method string
			status                          int
			code                            string
		}{
			{"signed out", "", "b1", "", "GET", 401, "UNAUTHORIZED"},
			{"refused by AuthorizeResource", alice, "secret", "", "GET", 403, "FORBIDDEN"},
			{"unknown to AuthorizeResource", alice, "gone", "", "GET", 404, "NOT_FOUND"},
			{"another user's build", bob, "b1", "", "GET", 404, "NOT_FOUND"},
			{"bad build id", alice, "..", "", "GET", 400, "BAD_REQUEST"},
			{"bad Last-Event-ID", alice, "b1", "x", "GET", 400, "BAD_REQUEST"},
			{"negative Last-Event-ID", alice, "b1", "-1", "GET", 400, "BAD_REQUEST"},
			{"invalid user id", "a/b", "b1", "", "GET", 500, "INTERNAL_ERROR"},
			{"POST", alice, "b1", "", "POST", 405, "METHOD_NOT_ALLOWED"},
		} {
			req := httptest.NewRequest(c.method, "/app/builds/x/events", nil)
			req.SetPathValue("buildId", c.build)
			if c.user != "" {
				req.Header.Set("X-User", c.user)
			}
			if c.last != "" {
				req.Header.Set("Last-Event-ID", c.last)
			}
			before := src.fetchCount()
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			var body struct{ Code string }
			_ = json.Unmarshal(rec.Body.Bytes(), &body)
			if rec.Code != c.status || body.Code != c.code || rec.Header().Get("Content-Type") != "application/json; charset=utf-8" {
				t.Errorf("%s: %d %s, want %d %s", c.name, rec.Code, rec.Body, c.status, c.code)
			}
			if c.name != "another user's build" && src.fetchCount() != before {
				t.Errorf("%s: the source was read for a refused request", c.name)
			}
		}
		synctest.Wait()
		if s.hubs.count() != 0 {
			t.Errorf("%d hubs left by refused requests", s.hubs.count())
		}
	})
}

// A source that fails before it answers once refuses the request; one that
// fails later ends the streams without an end, so browsers reconnect.
func TestBuildStreamSourceFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newMemSource()
		src.build("b1", alice)
		src.add("b1", evStarted)
		s := newTestStream(t, src, BuildStreamConfig{})
		defer s.Close()
		src.fail(errors.New("database unreachable"))
		rec := newRecorder()
		open(s, alice, "b1", "", rec)
		synctest.Wait()
		if rec.code() != http.StatusBadGateway || !strings.Contains(rec.body(), "EVENTS_UNAVAILABLE") {
			t.Errorf("source down: %d %s", rec.code(), rec.body())
		}

		src.fail(nil)
		w := open(s, alice, "b1", "", newRecorder())
		synctest.Wait()
		src.fail(errors.New("database gone"))
		src.add("b1", evCode)
		synctest.Wait()
		if !w.ended() {
			t.Fatal("the stream stayed open after its source failed")
		}
		if endOf(t, w.frames()) != nil {
			t.Error("a failed source sent an end event")
		}
		if s.hubs.count() != 0 {
			t.Error("the failed reader is still shared")
		}
	})
}

// Close ends open streams and refuses new ones.
func TestBuildStreamClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newMemSource()
		src.build("b1", alice)
		src.add("b1", evStarted)
		s := newTestStream(t, src, BuildStreamConfig{})
		w := open(s, alice, "b1", "", newRecorder())
		synctest.Wait()
		s.Close()
		synctest.Wait()
		if !w.ended() || endOf(t, w.frames()) != nil {
			t.Error("Close did not end the stream (without an end event)")
		}
		rec := newRecorder()
		open(s, alice, "b1", "", rec)
		synctest.Wait()
		if rec.code() != http.StatusServiceUnavailable {
			t.Errorf("after Close: %d", rec.code())
		}
	})
}

// NewBuildStream refuses what cannot work.
func TestNewBuildStreamRefusesBadConfig(t *testing.T) {
	c := newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) { return nil, errors.New("unused") }))
	for name, cfg := range map[string]BuildStreamConfig{
		"no Authorize":          {},
		"negative heartbeat":    {Authorize: headerUser, Heartbeat: -1},
		"negative timeout":      {Authorize: headerUser, WriteTimeout: -1},
		"AfterEventID":          {Authorize: headerUser, Follow: &sheen.FollowOptions{AfterEventID: 3}},
		"OnEvent":               {Authorize: headerUser, Follow: &sheen.FollowOptions{OnEvent: func(sheen.BuildEvent) {}}},
		"WithResponse":          {Authorize: headerUser, Options: []sheen.CallOption{sheen.WithResponse(&sheen.Response{})}},
		"negative AfterEventID": {Authorize: headerUser, Follow: &sheen.FollowOptions{AfterEventID: -1}},
		"nil option":            {Authorize: headerUser, Options: []sheen.CallOption{nil}},
	} {
		if _, err := NewBuildStream(c, cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewBuildStream(nil, BuildStreamConfig{Authorize: headerUser}); err == nil {
		t.Error("nil client accepted")
	}
}

// The worker's HTTP endpoint as the source: the stream reads it through
// the client for the signed-in user, and the worker's 404 for a build that
// is not theirs is the stream's 404.
func TestBuildStreamWorkerSource(t *testing.T) {
	var mu sync.Mutex
	var queries []string
	c := newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		if r.URL.Query().Get("userId") != alice {
			return jsonResponse(r, 404, `{"error":"Build not found","code":"BUILD_NOT_FOUND"}`), nil
		}
		return jsonResponse(r, 200, `{"events":[
			{"id":"1","build_id":"b1","event_type":"started","phase":"development","title":"Build started","overall_progress":0.05},
			{"id":"2","build_id":"b1","event_type":"failed","phase":"build","title":"Build failed","finished":true,
			 "error":{"code":"BUILD_FAILED","message":"The build script failed"}}]}`), nil
	}))
	s, err := NewBuildStream(c, BuildStreamConfig{Authorize: headerUser})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	front := httptest.NewServer(s)
	defer front.Close()
	get := func(user string) (*http.Response, []sseFrame) {
		req, _ := http.NewRequest("GET", front.URL+"/?buildId=b1", nil)
		req.Header.Set("X-User", user)
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			body.WriteString(sc.Text() + "\n")
		}
		return resp, parseSSE(body.String())
	}
	resp, frames := get(alice)
	if resp.StatusCode != 200 || !slices.Equal(messageIDs(frames), ids(1, 2)) || endOf(t, frames)["status"] != "failed" {
		t.Errorf("alice: %d %+v", resp.StatusCode, frames)
	}
	if resp, _ := get(bob); resp.StatusCode != 404 {
		t.Errorf("bob: %d", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(queries) != 2 || queries[0] != "lastEventId=0&userId="+alice {
		t.Errorf("queries to the worker: %q", queries)
	}
	front.Close()
	s.Close()
	goleak.VerifyNone(t)
}
