package sheen

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// EventSource is where build events come from. The default is the worker's
// HTTP endpoint (GET /v1/builds/{buildId}/events); package pgevents reads
// the project_build_events table directly. Give one to a call with
// FollowOptions.Source or to the client with WithBuildEventSource.
type EventSource interface {
	// FetchEvents returns the user-visible events of build buildID for user
	// userID whose id is greater than after, in ascending id order. more
	// reports that further events exist that this batch left out (a page
	// limit), so the reader asks again at once instead of waiting out its
	// poll interval. Retry transient failures inside; an error returned
	// here ends the reading.
	FetchEvents(ctx context.Context, buildID, userID string, after int64) (events []BuildEvent, more bool, err error)
}

// EventNotifier is an optional interface of an EventSource that can tell
// early that a build may have new events (Postgres LISTEN/NOTIFY, a
// webhook). A reader subscribes for as long as it follows a build and
// fetches as soon as the channel receives instead of waiting out its poll
// interval. It keeps polling at the interval all the same, so a notifier
// that goes quiet only makes delivery slower, never stops it.
type EventNotifier interface {
	// Subscribe returns a channel that receives whenever events of buildID
	// may have been written, and a function that ends the subscription
	// (called exactly once, when the reader stops). Sends must never block:
	// a buffer of one and a non-blocking send will do, since one fetch
	// reads everything new.
	Subscribe(ctx context.Context, buildID string) (wake <-chan struct{}, stop func())
}

// defaultPollInterval is the reference UI's pace for a build's current
// phase: 1 s in build and deploy, 3 s in dependencies, 2 s otherwise.
func defaultPollInterval(phase Phase) time.Duration {
	switch phase {
	case PhaseBuild, PhaseDeploy:
		return time.Second
	case PhaseDependencies:
		return 3 * time.Second
	}
	return 2 * time.Second
}

// FollowOptions are the settings of one reading of a build's events, for
// Builds.Follow and Builds.Wait (and Exports.RebuildMissing). The zero
// value, like a nil *FollowOptions, means every default. A bad value is
// refused with a *ValidationError before anything is read.
type FollowOptions struct {
	// AfterEventID resumes the reading after this event id (the largest id
	// a previous reader saw, BuildResult.LastEventID) instead of from the
	// build's first event. 0 reads from the first event; a negative id is
	// refused.
	AfterEventID int64

	// OnEvent is called with every event as it is read, before Follow
	// yields it or Wait moves on: a hook for progress bars. It runs on the
	// reading goroutine; keep it quick. nil calls nothing.
	OnEvent func(BuildEvent)

	// Source is where the events are read from. nil means the client's
	// source: the one given with WithBuildEventSource, else the worker's
	// HTTP endpoint.
	Source EventSource

	// PollInterval is how long to wait between fetches, given the phase of
	// the latest event ("" before any). nil, or a result of zero or less,
	// means the default for that phase (1 s in build and deploy, 3 s in
	// dependencies, 2 s otherwise).
	PollInterval func(phase Phase) time.Duration

	// MetadataWait is how long, after the deploy completed, the reading
	// keeps following the metadata phase that runs after it (the version's
	// name, recommendations; a metadata failure is reported there).
	// Reading stops as soon as that phase ends (completed, failed, finished
	// or at 100%), when no metadata event has shown up within
	// MetadataStartWait, or when MetadataWait has passed since the
	// deploy's completion was read, whichever comes first; either way the
	// build counts as succeeded. 0 means DefaultMetadataWait (30 s); a
	// negative value (such as -1) stops at the deploy's completion, for
	// callers who want the preview URL as soon as it exists.
	MetadataWait time.Duration

	// MetadataStartWait is how long, after the deploy completed, the
	// reading waits for a first metadata event before deciding the build
	// has no metadata phase and stopping (never longer than MetadataWait).
	// 0 means DefaultMetadataStartWait (5 s); a negative value (such as -1)
	// does not wait for a metadata phase that has not started yet.
	MetadataStartWait time.Duration

	// StallTimeout is how long the reading waits for a new event, from its
	// start and from each new event, before it stops with a
	// *BuildStalledError (matching ErrBuildStalled): the build went quiet
	// and its outcome is unknown, as when ctx ends. Once the deploy's
	// completion is read it no longer applies (MetadataWait bounds what
	// follows). It is timed on the client's clock (WithClock), between
	// fetches: a fetch under way is bounded by its source (the worker's
	// endpoint by the client's attempt timeout and retries). 0 means
	// DefaultBuildStallTimeout (15 minutes); a negative value (such as -1)
	// waits as long as ctx allows.
	StallTimeout time.Duration
}

// DefaultBuildStallTimeout is FollowOptions.StallTimeout's default: how
// long Follow and Wait wait for a build's next event before giving up on
// it. The worker's events carry no heartbeat, and a build's development
// phase runs the model, which may send nothing while it works: the default
// is longer than the SDK lets one model run stay silent
// (DefaultGenerateStallTimeout, 10 minutes).
const DefaultBuildStallTimeout = 15 * time.Minute

// ErrBuildStalled is matched (errors.Is) by the *BuildStalledError that
// Follow and Wait end with when a build sends no new event within
// FollowOptions.StallTimeout.
var ErrBuildStalled = errors.New("sheen: build went quiet")

// BuildStalledError is a reading of a build's events that stopped because
// no new event came within FollowOptions.StallTimeout. The build's outcome
// is unknown: it may still be running, or the worker may have lost it. To
// keep following, call Wait or Follow again with FollowOptions.AfterEventID
// set to LastEventID; Builds.Status gives the worker's summary. It matches
// ErrBuildStalled.
type BuildStalledError struct {
	// ID is the build followed.
	ID string
	// LastEventID is the largest event id read (the AfterEventID the
	// reading started from when it read none), to resume from.
	LastEventID int64
	// Quiet is how long the reading waited without a new event: the stall
	// timeout.
	Quiet time.Duration
}

// Error returns "sheen: build ID went quiet: no new event for D after
// event N; its outcome is unknown".
func (e *BuildStalledError) Error() string {
	return "sheen: build " + e.ID + " went quiet: no new event for " + e.Quiet.String() +
		" after event " + strconv.FormatInt(e.LastEventID, 10) + "; its outcome is unknown"
}

// Is matches ErrBuildStalled.
func (e *BuildStalledError) Is(target error) bool { return target == ErrBuildStalled }

// followConfig is one reading's settings: FollowOptions with their
// defaults applied.
type followConfig struct {
	source            EventSource
	interval          func(Phase) time.Duration
	metadataWait      time.Duration // 0: stop at the deploy's completion
	metadataStartWait time.Duration
	after             int64
	onEvent           func(BuildEvent)
	stall             time.Duration // 0: no stall timeout
}

// settings checks o (nil is every default) and applies the defaults, but
// for the source, which the caller chooses.
func (o *FollowOptions) settings() (followConfig, error) {
	cfg := followConfig{metadataWait: DefaultMetadataWait, metadataStartWait: DefaultMetadataStartWait, stall: DefaultBuildStallTimeout}
	if o == nil {
		return cfg, nil
	}
	if o.AfterEventID < 0 {
		return cfg, &ValidationError{Field: "FollowOptions.AfterEventID", Reason: "must not be negative"}
	}
	cfg.source, cfg.interval, cfg.after, cfg.onEvent = o.Source, o.PollInterval, o.AfterEventID, o.OnEvent
	cfg.metadataWait = waitSetting(o.MetadataWait, DefaultMetadataWait)
	cfg.metadataStartWait = waitSetting(o.MetadataStartWait, DefaultMetadataStartWait)
	cfg.stall = waitSetting(o.StallTimeout, DefaultBuildStallTimeout)
	return cfg, nil
}

// waitSetting reads a duration field whose zero means def and whose
// negative values mean no wait.
func waitSetting(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// BuildResult is how a successful build ended.
type BuildResult struct {
	// ID is the build followed.
	ID string
	// PreviewURL is where the deployed preview is served.
	PreviewURL string
	// VersionID and VersionName name the version the build produced (the
	// name often comes from the metadata phase; empty when no event said).
	VersionID   string
	VersionName string
	// Duration is how long the build took: the deploy event's
	// duration_seconds when it has one, else the time between the first
	// event read and the deploy's completion, as the worker stamped them.
	Duration time.Duration
	// Final is the event that completed the deploy.
	Final BuildEvent
	// LastEventID is the largest event id read, to resume from with
	// FollowOptions.AfterEventID.
	LastEventID int64
	// Events is how many events were read.
	Events int
	// MetadataDone reports whether the metadata phase ended while the
	// reader waited for it (see FollowOptions.MetadataWait).
	MetadataDone bool
	// MetadataError is the failure the metadata phase reported, if any. It
	// does not make the build a failure: the deploy's outcome stands.
	MetadataError *BuildEventError
}

// BuildFailedError is a build that ended in failure. It matches
// ErrBuildFailed.
type BuildFailedError struct {
	// ID is the build that failed.
	ID string
	// Code is the worker's error code ("" when it sent none).
	Code string
	// Message is the worker's message for the user, never empty.
	Message string
	// Params are the code's parameters, for localised messages.
	Params json.RawMessage
	// Phase is the phase the build failed in, when known.
	Phase Phase
	// Event is the event that reported the failure.
	Event BuildEvent
}

// Error returns "sheen: build ID failed in phase P: CODE: message".
func (e *BuildFailedError) Error() string {
	msg := "sheen: build " + e.ID + " failed"
	if e.Phase != "" {
		msg += " in phase " + string(e.Phase)
	}
	if e.Code != "" {
		msg += ": " + e.Code
	}
	return msg + ": " + e.Message
}

// Is matches ErrBuildFailed.
func (e *BuildFailedError) Is(target error) bool { return target == ErrBuildFailed }

func newBuildFailedError(buildID string, ev BuildEvent) *BuildFailedError {
	e := &BuildFailedError{ID: cmp.Or(ev.BuildID, buildID), Phase: ev.Phase, Event: ev, Code: ev.Code}
	if ev.Error != nil {
		e.Code = cmp.Or(ev.Error.Code, ev.Code)
		e.Message = ev.Error.Message
		e.Params = ev.Error.Params
	}
	e.Message = cmp.Or(e.Message, ev.Description, ev.Title, "the build failed")
	return e
}

// Follow follows build buildID of user userID and yields its events in id
// order, each once, until the build is over:
//
//   - after a failed event (failed, task_failed, deploy_failed, any type
//     ending in _failed) outside the metadata phase;
//   - after the deploy completed (completed in the deploy phase, or the
//     legacy deploy_completed), once the metadata phase that follows it has
//     ended, or has not started within 5 s, or has run for 30 s (see
//     FollowOptions.MetadataWait and MetadataStartWait). A metadata failure is
//     yielded like any event but does not make the build a failure.
//
// It always resumes after the largest id seen (never from 0), so duplicate
// or out-of-order ids from the source are dropped rather than repeated.
// Between fetches it waits for the latest phase's poll interval (see
// FollowOptions.PollInterval), or less when its source implements EventNotifier.
//
// follow shapes the reading (nil: every default); opts are, for the
// worker's endpoint, the CallOptions of every request it makes, and
// WithCallTimeout bounds the whole follow.
//
// Transient HTTP failures are retried by the client; Follow yields an
// error, once, only when it has to stop (the source failed for good, ctx
// ended, no new event came within FollowOptions.StallTimeout, an argument
// was invalid). Breaking out of the loop stops it.
func (s *BuildsService) Follow(ctx context.Context, buildID, userID string, follow *FollowOptions, opts ...CallOption) iter.Seq2[BuildEvent, error] {
	return func(yield func(BuildEvent, error) bool) {
		f, err := s.newFollower(buildID, userID, follow, opts)
		if err != nil {
			yield(BuildEvent{}, err)
			return
		}
		f.run(ctx, yield)
	}
}

// Wait follows build buildID of user userID to its end, like Follow (and
// with the same options), and returns how it ended: a *BuildResult, or a
// *BuildFailedError carrying the worker's error code and message for the
// user. Any other error means the outcome is unknown (ctx ended, the
// source failed, the build went quiet for FollowOptions.StallTimeout: a
// *BuildStalledError): call Wait again to keep following (AfterEventID,
// given the last id OnEvent saw or BuildStalledError.LastEventID, skips
// what was read already). Set FollowOptions.OnEvent to see every event on
// the way.
func (s *BuildsService) Wait(ctx context.Context, buildID, userID string, follow *FollowOptions, opts ...CallOption) (*BuildResult, error) {
	f, err := s.newFollower(buildID, userID, follow, opts)
	if err != nil {
		return nil, err
	}
	f.op = opWait
	var stopErr error
	f.run(ctx, func(_ BuildEvent, err error) bool {
		stopErr = cmp.Or(stopErr, err)
		return true
	})
	if stopErr != nil {
		return nil, stopErr
	}
	res, ended, err := f.result(f.buildID)
	if !ended { // not reached: the reading stops at an outcome or with an error
		return nil, fmt.Errorf("sheen: following build %s: the events ended before the build did", f.buildID)
	}
	return res, err
}

// WorkerEventSource returns the source that reads events from the worker's
// HTTP endpoint through this client (signed, rate limited, retried), for
// wrapping or combining with another source. It is never nil: on a client
// NewWorkerClient did not make, its FetchEvents returns ErrNotConfigured.
func (s *BuildsService) WorkerEventSource() EventSource {
	return &httpEventSource{svc: (*service)(s)}
}

// follower is one reading of one build's events: the cursor, and what the
// events so far say about the outcome.
type follower struct {
	outcome
	clock           Clock
	buildID, userID string
	cfg             followConfig
	timeout         time.Duration // WithCallTimeout: bounds the whole reading
	tel             *telemetry
	op              string     // the span's name: opFollow or opWait
	obs             *followObs // the reading's telemetry, nil when none records

	cursor    int64
	phase     Phase
	successAt time.Time // when the deploy's completion was read
	heardAt   time.Time // when the reading started or last read a new event
}

func (s *BuildsService) newFollower(buildID, userID string, follow *FollowOptions, opts []CallOption) (*follower, error) {
	cc, err := newCallConfig(opts)
	cfg, ferr := follow.settings()
	if err = cmp.Or(ready((*service)(s)), err, ferr, checkID("buildId", buildID), checkID("userId", userID)); err != nil {
		return nil, err
	}
	if cfg.source == nil {
		cfg.source = s.client.builds.source
	}
	if cfg.source == nil {
		cfg.source = &httpEventSource{svc: (*service)(s), opts: opts}
	}
	f := &follower{clock: s.client.core.clock, buildID: buildID, userID: userID, cfg: cfg, timeout: cc.timeout, cursor: cfg.after,
		tel: s.client.core.tel, op: opFollow}
	return f, nil
}

func (f *follower) run(ctx context.Context, yield func(BuildEvent, error) bool) {
	if ctx == nil {
		yield(BuildEvent{}, &ValidationError{Field: "context", Reason: "is nil"})
		return
	}
	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	ctx, yield, end := f.traced(ctx, yield)
	defer end()
	var wake <-chan struct{}
	if n, ok := f.cfg.source.(EventNotifier); ok {
		w, stop := n.Subscribe(ctx, f.buildID)
		if stop != nil {
			defer stop()
		}
		wake = w
	}
	f.heardAt = f.clock.Now()
	for {
		events, more, err := f.cfg.source.FetchEvents(ctx, f.buildID, f.userID, f.cursor)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
				err = f.ctxError(ctxErr)
			}
			yield(BuildEvent{}, err)
			return
		}
		advanced, stop := f.deliver(events, yield)
		if stop || f.over() {
			return
		}
		if advanced {
			f.heardAt = f.clock.Now()
		}
		if more && advanced {
			continue
		}
		d := f.nextWait()
		if left, bounded := f.stallLeft(); bounded {
			if left <= 0 {
				yield(BuildEvent{}, &BuildStalledError{ID: f.buildID, LastEventID: f.cursor, Quiet: f.cfg.stall})
				return
			}
			d = min(d, left) // one last fetch when the stall timeout ends
		}
		if err := f.wait(ctx, d, wake); err != nil {
			yield(BuildEvent{}, err)
			return
		}
	}
}

// stallLeft is how long the reading may still wait for a new event;
// bounded is false when nothing bounds it (no stall timeout, or the
// deploy's completion was read and the metadata deadline takes over).
func (f *follower) stallLeft() (left time.Duration, bounded bool) {
	if f.cfg.stall <= 0 || f.success != nil {
		return 0, false
	}
	return f.heardAt.Add(f.cfg.stall).Sub(f.clock.Now()), true
}

// deliver yields, in id order, the events not seen yet; stop reports that
// the reading is over or the caller stopped it.
func (f *follower) deliver(events []BuildEvent, yield func(BuildEvent, error) bool) (advanced, stop bool) {
	slices.SortStableFunc(events, func(a, b BuildEvent) int { return cmp.Compare(a.ID, b.ID) })
	for _, ev := range events {
		if ev.ID <= f.cursor {
			continue // seen already, or older than where we resumed
		}
		f.cursor, advanced = ev.ID, true
		ev.Progress = clampProgress(ev.Progress)
		f.observe(ev)
		if f.cfg.onEvent != nil {
			f.cfg.onEvent(ev)
		}
		if !yield(ev, nil) || f.over() {
			return advanced, true
		}
	}
	return advanced, false
}

// observe updates what the events say about the build, and notes when the
// deploy's completion was read.
func (f *follower) observe(ev BuildEvent) {
	deployed := f.success != nil
	f.outcome.observe(ev)
	if ev.Phase != "" {
		f.phase = ev.Phase
	}
	if !deployed && f.success != nil {
		f.successAt = f.clock.Now()
	}
	f.obs.event(ev, f.clock)
}

// over reports whether the reading is finished: the outcome is known, or
// the wait for the metadata phase after the deploy is over.
func (f *follower) over() bool {
	switch {
	case f.ended():
		return true
	case f.success == nil:
		return false
	case f.cfg.metadataWait <= 0:
		return true
	}
	return !f.clock.Now().Before(f.metadataDeadline())
}

// metadataDeadline is when reading stops after a successful deploy.
func (f *follower) metadataDeadline() time.Time {
	return f.successAt.Add(f.metadataWait(f.cfg.metadataWait, f.cfg.metadataStartWait))
}

// nextWait is how long to wait before the next fetch: the phase's poll
// interval, cut short by the metadata deadline after a deploy.
func (f *follower) nextWait() time.Duration {
	d := defaultPollInterval(f.phase)
	if f.cfg.interval != nil {
		if custom := f.cfg.interval(f.phase); custom > 0 {
			d = custom
		}
	}
	if f.success != nil {
		d = min(d, f.metadataDeadline().Sub(f.clock.Now()))
	}
	return d
}

// wait waits d on the client's clock, or less when the source says there
// may be news, or until ctx ends.
func (f *follower) wait(ctx context.Context, d time.Duration, wake <-chan struct{}) error {
	if err := ctx.Err(); err != nil {
		return f.ctxError(err)
	}
	if d <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return f.ctxError(ctx.Err())
	case <-f.clock.After(d):
	case <-wake:
	}
	return nil
}

func (f *follower) ctxError(err error) error {
	return fmt.Errorf("sheen: following build %s: %w", f.buildID, err)
}

// httpEventSource reads events from the worker's HTTP endpoint, each
// request with opts (those of the follow that made it).
type httpEventSource struct {
	svc  *service
	opts []CallOption
}

// FetchEvents implements EventSource with GET
// /v1/builds/{buildId}/events?userId=&lastEventId=.
func (s *httpEventSource) FetchEvents(ctx context.Context, buildID, userID string, after int64) ([]BuildEvent, bool, error) {
	if err := cmp.Or(ready(s.svc), checkID("userId", userID)); err != nil {
		return nil, false, err
	}
	var w buildEventsWire
	q := url.Values{"userId": {userID}, "lastEventId": {strconv.FormatInt(after, 10)}}
	if err := s.svc.send(ctx, call{route: RouteBuildEvents, params: []string{buildID}, query: q, out: &w}, s.opts); err != nil {
		return nil, false, err
	}
	if w.skipped > 0 {
		s.svc.client.core.logger.LogAttrs(ctx, slog.LevelWarn, "sheen: skipping build events without a usable id",
			slog.String("build_id", buildID), slog.Int("events", w.skipped))
	}
	for i := range w.events {
		w.events[i].BuildID = cmp.Or(w.events[i].BuildID, buildID)
	}
	return w.events, false, nil
}
