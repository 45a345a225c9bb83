package sheenhttp

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/sheenapps/sheen-go"
)

// The fan-out behind BuildStream: one upstream reader (Builds.Wait, which
// follows as Builds.Follow does) per build and user, however many browsers watch it. The
// reader appends each event, encoded once as an SSE frame, to a log shared
// by every subscriber; a subscriber is only a cursor into that log, so it
// holds no queue of its own and a slow one holds back nobody: the reader
// never waits for a subscriber, and each subscriber writes from its own
// goroutine at its own pace. The log keeps a build's latest maxHeldFrames
// events; a subscriber that falls behind them reads what it missed from the
// source itself (catchUp in builds_stream.go).

// maxHeldFrames is how many of a build's events the shared log keeps in
// memory (a variable so tests can make it small).
var maxHeldFrames = 1024

// hubKey names one upstream reader: a build as one user sees it (sources
// filter events by user, so two users never share a reader).
type hubKey struct{ buildID, userID string }

// frame is one build event encoded as an SSE message.
type frame struct {
	id   int64
	data []byte // the whole message: "id: N\ndata: {...}\n\n"
}

// hub is one upstream reader and the log its subscribers read.
type hub struct {
	key    hubKey
	ctx    context.Context // the reader's; canceled when the last subscriber leaves
	cancel context.CancelFunc
	source sheen.EventSource // the upstream source itself, for catch-up reads

	mu      sync.Mutex
	refs    int           // subscribers; the reader stops when it drops to 0
	frames  []frame       // the latest events, ascending ids
	dropped int64         // the largest id dropped from the front of frames
	ready   bool          // the source answered a first fetch
	done    bool          // the reader stopped
	end     []byte        // the final frame, when the build ended
	err     error         // why the reader stopped, when not at the build's end
	changed chan struct{} // closed and replaced at every change
}

// hubView is what a subscriber reads from the hub at once.
type hubView struct {
	frames  []frame // events after the subscriber's cursor that the log holds
	missed  int64   // > cursor: events up to this id were dropped from the log
	ready   bool
	done    bool
	end     []byte
	err     error
	changed <-chan struct{}
}

// view returns what the hub holds after cursor. The frames it returns are
// never written again (the reader only appends beyond them, or drops from
// the front by reslicing), so the caller reads them without the lock.
func (h *hub) view(cursor int64) hubView {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := hubView{ready: h.ready, done: h.done, end: h.end, err: h.err, changed: h.changed}
	if cursor < h.dropped {
		v.missed = h.dropped
	}
	i := sort.Search(len(h.frames), func(i int) bool { return h.frames[i].id > cursor })
	v.frames = h.frames[i:len(h.frames):len(h.frames)]
	return v
}

// changedLocked wakes every subscriber waiting on the hub.
func (h *hub) changedLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// markReady records that the source answered.
func (h *hub) markReady() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.ready {
		h.ready = true
		h.changedLocked()
	}
}

// append adds an event's frame, dropping the oldest beyond maxHeldFrames.
func (h *hub) append(f frame) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := len(h.frames); n > 0 && f.id <= h.frames[n-1].id {
		return // not reached: the follower delivers ascending ids once
	}
	if len(h.frames) >= maxHeldFrames {
		// Reslice only: a subscriber may be reading frames[0] right now.
		// The dropped frames are freed when append next moves the array.
		h.dropped = h.frames[0].id
		h.frames = h.frames[1:]
	}
	h.frames = append(h.frames, f)
	h.ready = true
	h.changedLocked()
}

// finish records that the reader stopped: with the final frame when the
// build ended, or with the error that stopped it.
func (h *hub) finish(end []byte, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.done, h.end, h.err = true, end, err
	if end == nil && err == nil {
		h.err = errors.New("sheenhttp: the build's events stopped")
	}
	h.changedLocked()
}

// hubs is the set of running upstream readers of one BuildStream.
type hubs struct {
	mu     sync.Mutex
	all    map[hubKey]*hub
	closed bool // no new hubs
}

// join returns the hub of key, with one more subscriber, and whether it is
// new: the caller then starts its reader. newHub runs under the lock. It
// returns nil after close.
func (hs *hubs) join(key hubKey, newHub func() *hub) (h *hub, created bool) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.closed {
		return nil, false
	}
	if h = hs.all[key]; h == nil {
		if hs.all == nil {
			hs.all = map[hubKey]*hub{}
		}
		h, created = newHub(), true
		hs.all[key] = h
	}
	h.mu.Lock()
	h.refs++
	h.mu.Unlock()
	return h, created
}

// leave drops a subscriber; the last one out stops the reader and forgets
// the hub.
func (hs *hubs) leave(h *hub) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h.mu.Lock()
	h.refs--
	last := h.refs == 0
	h.mu.Unlock()
	if !last {
		return
	}
	if hs.all[h.key] == h {
		delete(hs.all, h.key)
	}
	h.cancel()
}

// forget removes a hub whose reader failed, so the next subscriber starts a
// fresh one; its current subscribers still read what it holds.
func (hs *hubs) forget(h *hub) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.all[h.key] == h {
		delete(hs.all, h.key)
	}
}

// close stops every reader and refuses new hubs from now on.
func (hs *hubs) close() {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.closed = true
	for _, h := range hs.all {
		h.cancel()
	}
}

// count returns how many upstream readers run.
func (hs *hubs) count() int {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return len(hs.all)
}

// hubSource is the source a hub's reader fetches through: it tells the hub
// when the source has answered a first time.
type hubSource struct {
	sheen.EventSource
	h *hub
}

// FetchEvents implements EventSource.
func (s *hubSource) FetchEvents(ctx context.Context, buildID, userID string, after int64) ([]sheen.BuildEvent, bool, error) {
	events, more, err := s.EventSource.FetchEvents(ctx, buildID, userID, after)
	if err == nil {
		s.h.markReady()
	}
	return events, more, err
}

// hubNotifierSource is a hubSource over a source that is an EventNotifier,
// so the reader is still woken early.
type hubNotifierSource struct {
	*hubSource
	n sheen.EventNotifier
}

// Subscribe implements EventNotifier.
func (s *hubNotifierSource) Subscribe(ctx context.Context, buildID string) (<-chan struct{}, func()) {
	return s.n.Subscribe(ctx, buildID)
}

// wrapHubSource returns src as the hub's reader fetches through it.
func wrapHubSource(src sheen.EventSource, h *hub) sheen.EventSource {
	hs := &hubSource{EventSource: src, h: h}
	if n, ok := src.(sheen.EventNotifier); ok {
		return &hubNotifierSource{hubSource: hs, n: n}
	}
	return hs
}
