package sheen

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// ErrBuildFailed is matched (errors.Is) by the *BuildFailedError that Wait
// returns when the build ends in failure.
var ErrBuildFailed = errors.New("sheen: build failed")

// DefaultMetadataWait is how long, by default, Events and Wait keep
// following the metadata phase after the deploy completed.
const DefaultMetadataWait = 30 * time.Second

// DefaultMetadataStartWait is how long, by default, Events and Wait wait
// after the deploy completed for the metadata phase to show up at all,
// before deciding the build has none.
const DefaultMetadataStartWait = 5 * time.Second

// EventSource is where build events come from. The default is the worker's
// HTTP endpoint (GET /v1/builds/{buildId}/events); package pgevents reads
// the project_build_events table directly. Give one to a call with
// WithEventSource or to the client with WithBuildEventSource.
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
func defaultPollInterval(phase string) time.Duration {
	switch phase {
	case PhaseBuild, PhaseDeploy:
		return time.Second
	case PhaseDependencies:
		return 3 * time.Second
	}
	return 2 * time.Second
}

// FollowOption changes how Events and Wait follow a build.
type FollowOption func(*followConfig)

type followConfig struct {
	source            EventSource
	interval          func(phase string) time.Duration
	metadataWait      time.Duration
	metadataStartWait time.Duration
	after             int64
	onEvent           func(BuildEvent)
}

// WithEventSource reads the events from src instead of the client's source
// (the worker's HTTP endpoint unless WithBuildEventSource said otherwise).
func WithEventSource(src EventSource) FollowOption {
	return func(c *followConfig) {
		if src != nil {
			c.source = src
		}
	}
}

// WithPollInterval sets how long to wait between fetches, given the phase
// of the latest event ("" before any). A result of zero or less means
// DefaultPollInterval for that phase.
func WithPollInterval(interval func(phase string) time.Duration) FollowOption {
	return func(c *followConfig) { c.interval = interval }
}

// WithMetadataWait sets how long, after the deploy completed, the reader
// keeps following the metadata phase that runs after it (the version's
// name, recommendations; a metadata failure is reported there). Reading
// stops as soon as that phase ends (completed, failed, finished or at
// 100%), when no metadata event has shown up within the start wait (see
// WithMetadataStartWait), or when d has passed since the deploy's
// completion was read, whichever comes first; either way the build counts
// as succeeded. The default is DefaultMetadataWait (30 s); 0 stops at the
// deploy's completion, for callers who want the preview URL as soon as it
// exists.
func WithMetadataWait(d time.Duration) FollowOption {
	return func(c *followConfig) { c.metadataWait = max(d, 0) }
}

// WithMetadataStartWait sets how long, after the deploy completed, the
// reader waits for a first metadata event before deciding the build has no
// metadata phase and stopping (default DefaultMetadataStartWait, 5 s; never
// longer than WithMetadataWait's wait).
func WithMetadataStartWait(d time.Duration) FollowOption {
	return func(c *followConfig) { c.metadataStartWait = max(d, 0) }
}

// WithAfterEventID resumes reading after event id (the largest id a
// previous reader saw), instead of from the build's first event.
func WithAfterEventID(id int64) FollowOption {
	return func(c *followConfig) { c.after = max(id, 0) }
}

// WithEventCallback calls fn with every event as it is read, before Events
// yields it or Wait moves on: a hook for progress bars. fn runs on the
// reading goroutine; keep it quick.
func WithEventCallback(fn func(BuildEvent)) FollowOption {
	return func(c *followConfig) { c.onEvent = fn }
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
	// WithAfterEventID.
	LastEventID int64
	// Events is how many events were read.
	Events int
	// MetadataDone reports whether the metadata phase ended while the
	// reader waited for it (see WithMetadataWait).
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
	Phase string
	// Event is the event that reported the failure.
	Event BuildEvent
}

// Error returns "sheen: build ID failed in phase P: CODE: message".
func (e *BuildFailedError) Error() string {
	msg := "sheen: build " + e.ID + " failed"
	if e.Phase != "" {
		msg += " in phase " + e.Phase
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
//     WithMetadataWait and WithMetadataStartWait). A metadata failure is
//     yielded like any event but does not make the build a failure.
//
// It always resumes after the largest id seen (never from 0), so duplicate
// or out-of-order ids from the source are dropped rather than repeated.
// Between fetches it waits DefaultPollInterval for the latest phase (see
// WithPollInterval), or less when its source implements EventNotifier.
//
// Transient HTTP failures are retried by the client; Follow yields an
// error, once, only when it has to stop (the source failed for good, ctx
// ended, an argument was invalid). Breaking out of the loop stops it.
func (s *BuildsService) Follow(ctx context.Context, buildID, userID string, opts ...FollowOption) iter.Seq2[BuildEvent, error] {
	return func(yield func(BuildEvent, error) bool) {
		if err := ready((*service)(s)); err != nil {
			yield(BuildEvent{}, err)
			return
		}
		f, err := s.newFollower(buildID, userID, opts)
		if err != nil {
			yield(BuildEvent{}, err)
			return
		}
		f.run(ctx, yield)
	}
}

// Wait follows build buildID of user userID to its end, like Events, and
// returns how it ended: a *BuildResult, or a *BuildFailedError carrying the
// worker's error code and message for the user. Any other error means the
// outcome is unknown (ctx ended, the source failed): call Wait again to
// keep following (WithAfterEventID, given the last id WithEventCallback saw,
// skips what was read already). Pass WithEventCallback to see every event
// on the way.
func (s *BuildsService) Wait(ctx context.Context, buildID, userID string, opts ...FollowOption) (*BuildResult, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	f, err := s.newFollower(buildID, userID, opts)
	if err != nil {
		return nil, err
	}
	var stopErr error
	f.run(ctx, func(_ BuildEvent, err error) bool {
		if err != nil {
			stopErr = err
		}
		return true
	})
	if stopErr != nil {
		return nil, stopErr
	}
	return f.result()
}

// WorkerEventSource returns the source that reads events from the worker's
// HTTP endpoint through this client (signed, rate limited, retried), for
// wrapping or combining with another source.
func (s *BuildsService) WorkerEventSource() EventSource {
	if ready((*service)(s)) != nil {
		return nil
	}
	return &httpEventSource{c: s.client.core}
}

// follower is one reading of one build's events: the cursor and what the
// events so far say about the outcome.
type follower struct {
	c               *core
	buildID, userID string
	cfg             followConfig

	cursor int64
	phase  string
	count  int
	first  *BuildEvent

	success, failure *BuildEvent
	successAt        time.Time
	metadataSeen     bool
	metadataDone     bool
	metadataErr      *BuildEventError
	previewURL       string
	versionID        string
	versionName      string
}

func (s *BuildsService) newFollower(buildID, userID string, opts []FollowOption) (*follower, error) {
	if _, err := escapeID("buildId", buildID); err != nil {
		return nil, err
	}
	if _, err := escapeID("userId", userID); err != nil {
		return nil, err
	}
	c := s.client.core
	cfg := followConfig{source: c.builds.source, metadataWait: DefaultMetadataWait, metadataStartWait: DefaultMetadataStartWait}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.source == nil {
		cfg.source = &httpEventSource{c: c}
	}
	return &follower{c: c, buildID: buildID, userID: userID, cfg: cfg, cursor: cfg.after}, nil
}

func (f *follower) run(ctx context.Context, yield func(BuildEvent, error) bool) {
	if ctx == nil {
		yield(BuildEvent{}, &ValidationError{Field: "context", Reason: "is nil"})
		return
	}
	var wake <-chan struct{}
	if n, ok := f.cfg.source.(EventNotifier); ok {
		w, stop := n.Subscribe(ctx, f.buildID)
		if stop != nil {
			defer stop()
		}
		wake = w
	}
	for {
		events, more, err := f.cfg.source.FetchEvents(ctx, f.buildID, f.userID, f.cursor)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
				err = f.ctxError(ctxErr)
			}
			yield(BuildEvent{}, err)
			return
		}
		slices.SortStableFunc(events, func(a, b BuildEvent) int { return cmp.Compare(a.ID, b.ID) })
		advanced := false
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
			if !yield(ev, nil) {
				return
			}
			if f.over() {
				return
			}
		}
		if f.over() {
			return
		}
		if more && advanced {
			continue
		}
		d := f.interval()
		if f.success != nil {
			d = min(d, f.metadataDeadline().Sub(f.c.clock.Now()))
		}
		if err := f.wait(ctx, d, wake); err != nil {
			yield(BuildEvent{}, err)
			return
		}
	}
}

// observe updates what the events say about the build.
func (f *follower) observe(ev BuildEvent) {
	f.count++
	if f.first == nil {
		first := ev
		f.first = &first
	}
	if ev.Phase != "" {
		f.phase = ev.Phase
	}
	if ev.PreviewURL != "" {
		f.previewURL = ev.PreviewURL
	}
	if ev.VersionID != "" {
		f.versionID = ev.VersionID
	}
	if ev.VersionName != "" {
		f.versionName = ev.VersionName
	}
	if ev.Phase == PhaseMetadata {
		f.metadataSeen = true
	}
	if ev.metadataDone() {
		f.metadataDone = true
	}
	if ev.MetadataFailed() && f.metadataErr == nil {
		f.metadataErr = ev.Error
		if f.metadataErr == nil {
			f.metadataErr = &BuildEventError{Code: ev.Code, Message: cmp.Or(ev.Description, ev.Title, "metadata generation failed")}
		}
	}
	if f.success != nil || f.failure != nil {
		return // the first outcome stands
	}
	switch {
	case ev.DeploySucceeded():
		f.success, f.successAt = &ev, f.c.clock.Now()
	case ev.BuildFailed():
		f.failure = &ev
	}
}

// over reports whether the reading is finished.
func (f *follower) over() bool {
	switch {
	case f.failure != nil:
		return true
	case f.success == nil:
		return false
	case f.metadataDone || f.cfg.metadataWait <= 0:
		return true
	}
	return !f.c.clock.Now().Before(f.metadataDeadline())
}

// metadataDeadline is when reading stops after a successful deploy: the
// metadata wait, or the shorter start wait while no metadata event has
// shown up.
func (f *follower) metadataDeadline() time.Time {
	wait := f.cfg.metadataWait
	if !f.metadataSeen {
		wait = min(wait, f.cfg.metadataStartWait)
	}
	return f.successAt.Add(wait)
}

func (f *follower) interval() time.Duration {
	if f.cfg.interval != nil {
		if d := f.cfg.interval(f.phase); d > 0 {
			return d
		}
	}
	return defaultPollInterval(f.phase)
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
	case <-f.c.clock.After(d):
	case <-wake:
	}
	return nil
}

func (f *follower) ctxError(err error) error {
	return fmt.Errorf("sheen: following build %s: %w", f.buildID, err)
}

func (f *follower) result() (*BuildResult, error) {
	switch {
	case f.failure != nil:
		return nil, newBuildFailedError(f.buildID, *f.failure)
	case f.success == nil:
		return nil, fmt.Errorf("sheen: following build %s: the events ended before the build did", f.buildID)
	}
	r := &BuildResult{
		ID:            f.buildID,
		PreviewURL:    cmp.Or(f.success.PreviewURL, f.previewURL),
		VersionID:     f.versionID,
		VersionName:   f.versionName,
		Final:         *f.success,
		LastEventID:   f.cursor,
		Events:        f.count,
		MetadataDone:  f.metadataDone,
		MetadataError: f.metadataErr,
		Duration:      f.success.Duration,
	}
	if r.Duration == 0 && f.first != nil && !f.first.CreatedAt.IsZero() && f.success.CreatedAt.After(f.first.CreatedAt) {
		r.Duration = f.success.CreatedAt.Sub(f.first.CreatedAt)
	}
	return r, nil
}

// httpEventSource reads events from the worker's HTTP endpoint.
type httpEventSource struct{ c *core }

// FetchEvents implements EventSource with GET
// /v1/builds/{buildId}/events?userId=&lastEventId=.
func (s *httpEventSource) FetchEvents(ctx context.Context, buildID, userID string, after int64) ([]BuildEvent, bool, error) {
	id, err := escapeID("buildId", buildID)
	if err != nil {
		return nil, false, err
	}
	if _, err := escapeID("userId", userID); err != nil {
		return nil, false, err
	}
	q := url.Values{}
	q.Set("userId", userID)
	q.Set("lastEventId", strconv.FormatInt(after, 10))
	var w eventsResponseWire
	if err := s.c.do(ctx, http.MethodGet, "/v1/builds/"+id+"/events?"+q.Encode(), nil, &w, callConfig{}); err != nil {
		return nil, false, err
	}
	events := make([]BuildEvent, 0, len(w.Events))
	for _, raw := range w.Events {
		ev, ok := decodeEvent(raw)
		if !ok {
			s.c.logger.LogAttrs(ctx, slog.LevelWarn, "sheen: skipping a build event without a usable id",
				slog.String("build_id", buildID), slog.Int("bytes", len(raw)))
			continue
		}
		if ev.BuildID == "" {
			ev.BuildID = buildID
		}
		events = append(events, ev)
	}
	return events, false, nil
}
