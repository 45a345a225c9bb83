package sheen

import (
	"bytes"
	"cmp"
	"encoding/json"
	"strings"
	"time"

	"github.com/sheenapps/sheen-go/internal/jsonx"
	"github.com/sheenapps/sheen-go/internal/wire"
)

// EventKind is what an event says happened, whatever spelling its type had:
// the clean types (started, progress, completed, failed) map to themselves,
// legacy types by their suffix (plan_started is started, deploy_completed is
// completed, task_failed is failed, plan_generated is progress).
type EventKind string

// Event kinds.
const (
	KindStarted   EventKind = "started"
	KindProgress  EventKind = "progress"
	KindCompleted EventKind = "completed"
	KindFailed    EventKind = "failed"
	// KindOther is a type the SDK does not know; such events are still
	// delivered.
	KindOther EventKind = "other"
)

// BuildEvent is one event of a build, from the worker's HTTP endpoint or
// straight from the project_build_events table: clean rows and legacy rows
// (payload in event_data) come out the same way.
type BuildEvent struct {
	// ID orders the events of a build; readers resume after the largest
	// one seen.
	ID int64
	// BuildID is the build the event belongs to.
	BuildID string
	// UserID is the user the event is visible to, when the source says.
	UserID string
	// Type is the event type as written ("progress", "deploy_completed",
	// or one the SDK does not know).
	Type string
	// Kind is what Type means.
	Kind EventKind
	// Phase is setup, development, dependencies, build, deploy or metadata
	// (see the Phase constants), derived from a legacy type when the row
	// has none, empty when unknown.
	Phase Phase
	// Title and Description are the user-facing text. A legacy row's
	// message is its Title.
	Title       string
	Description string
	// Progress is the overall progress in [0, 1]; HasProgress says whether
	// the event carried one. Percentages (60, 100) are turned into
	// fractions and anything out of range is clamped.
	Progress    float64
	HasProgress bool
	// Finished is the worker's own "this build is over" flag.
	Finished bool
	// PreviewURL is where the built preview can be seen, when the event
	// carries it (normally the deploy's completion).
	PreviewURL string
	// Code and Params are the event's machine-readable code and its
	// parameters (event_code, event_params), for localised messages.
	Code   string
	Params json.RawMessage
	// Error is the failure a failed event reports, nil when it reports
	// none.
	Error *BuildEventError
	// VersionID and VersionName name the version the build produced, when
	// the event carries them.
	VersionID   string
	VersionName string
	// Duration is the event's duration_seconds, zero when absent.
	Duration time.Duration
	// CreatedAt is when the worker wrote the event (UTC; zero when
	// unknown).
	CreatedAt time.Time
	// Data is a legacy row's raw event_data, for fields the SDK does not
	// read.
	Data json.RawMessage
}

// BuildEventError is the failure a failed event reports.
type BuildEventError struct {
	// Code is the worker's error code (for example "BUILD_FAILED").
	Code string
	// Message is the message meant for the user.
	Message string
	// Params are the code's parameters, for localised messages.
	Params json.RawMessage
}

// DeploySucceeded reports whether the event is the end of a successful
// build: a completed event of the deploy phase (or the legacy
// deploy_completed), or a completed event without a phase that the worker
// marked finished.
func (e BuildEvent) DeploySucceeded() bool {
	return e.Kind == KindCompleted && (e.Phase == PhaseDeploy || (e.Phase == "" && e.Finished))
}

// BuildFailed reports whether the event ends the build as a failure: a
// failed event (failed, task_failed, deploy_failed or any type ending in
// _failed) outside the metadata phase.
func (e BuildEvent) BuildFailed() bool {
	return e.Kind == KindFailed && e.Phase != PhaseMetadata
}

// MetadataFailed reports whether the event is a failure of the metadata
// phase, which runs after the deploy and never turns a deployed build into
// a failed one.
func (e BuildEvent) MetadataFailed() bool {
	return e.Kind == KindFailed && e.Phase == PhaseMetadata
}

// MetadataDone reports whether the event ends the metadata phase: a
// completed or failed event of that phase, one the worker marked finished,
// or one at 100%.
func (e BuildEvent) MetadataDone() bool {
	return e.Phase == PhaseMetadata &&
		(e.Kind == KindCompleted || e.Kind == KindFailed || e.Finished || (e.HasProgress && e.Progress >= 1))
}

// EventRow is one row of the worker's project_build_events table, column by
// column (NULL as the zero value, or nil for the numbers). Sources that read
// the table fill one and call Event, so rows become the same BuildEvent
// whichever way they were read.
type EventRow struct {
	ID               int64
	BuildID          string
	EventType        string
	EventData        json.RawMessage
	UserID           string
	CreatedAt        time.Time
	EventPhase       string
	EventTitle       string
	EventDescription string
	OverallProgress  *float64
	Finished         bool
	PreviewURL       string
	ErrorCode        string
	ErrorParams      json.RawMessage
	UserErrorMessage string
	EventCode        string
	EventParams      json.RawMessage
	DurationSeconds  *float64
	VersionID        string
	VersionName      string
}

// Event turns the row into a BuildEvent: the clean columns first, a legacy
// row's event_data for whatever they leave empty, a phase derived from a
// legacy type, progress clamped to [0, 1].
func (r EventRow) Event() BuildEvent {
	ev := BuildEvent{
		ID:          r.ID,
		BuildID:     r.BuildID,
		UserID:      r.UserID,
		Type:        r.EventType,
		Kind:        kindOf(r.EventType),
		Phase:       Phase(strings.ToLower(strings.TrimSpace(r.EventPhase))),
		Title:       r.EventTitle,
		Description: r.EventDescription,
		Finished:    r.Finished,
		PreviewURL:  r.PreviewURL,
		Code:        r.EventCode,
		Params:      nonNullJSON(r.EventParams),
		VersionID:   r.VersionID,
		VersionName: r.VersionName,
		CreatedAt:   r.CreatedAt,
	}
	if r.OverallProgress != nil {
		ev.Progress, ev.HasProgress = clampProgress(*r.OverallProgress), true
	}
	if r.DurationSeconds != nil && *r.DurationSeconds > 0 {
		ev.Duration = time.Duration(*r.DurationSeconds * float64(time.Second))
	}
	if r.ErrorCode != "" || r.UserErrorMessage != "" || len(nonNullJSON(r.ErrorParams)) > 0 {
		ev.Error = &BuildEventError{Code: r.ErrorCode, Message: r.UserErrorMessage, Params: nonNullJSON(r.ErrorParams)}
	}
	if data := nonNullJSON(r.EventData); len(data) > 0 && !bytes.Equal(bytes.TrimSpace(data), []byte("{}")) {
		ev.Data = data
		var d legacyData
		if jsonx.DecodeLoosely(data, &d) {
			ev.fillLegacy(d)
		}
	}
	if ev.Phase == "" {
		ev.Phase = legacyPhase(r.EventType)
	}
	return ev
}

// fillLegacy fills what the clean columns left empty from event_data.
func (ev *BuildEvent) fillLegacy(d legacyData) {
	if ev.Title == "" {
		ev.Title = cmp.Or(d.Title, d.Message)
	}
	if ev.Description == "" {
		ev.Description = d.Description
	}
	if ev.Phase == "" {
		ev.Phase = Phase(strings.ToLower(strings.TrimSpace(d.Phase)))
	}
	if ev.PreviewURL == "" {
		ev.PreviewURL = cmp.Or(d.PreviewURL, d.PreviewURLSnake)
	}
	if !ev.HasProgress {
		if p := cmp.Or(d.OverallProgress, d.Progress); p.Valid {
			ev.Progress, ev.HasProgress = clampProgress(p.Float), true
		}
	}
	if !ev.Finished && d.Finished.Valid {
		ev.Finished = d.Finished.Bool
	}
	if ev.Error == nil {
		if e := decodeEventError(d.Error); e != nil {
			ev.Error = e
		} else if d.ErrorCode != "" {
			ev.Error = &BuildEventError{Code: d.ErrorCode, Message: d.Message}
		}
	}
	if ev.VersionID == "" {
		ev.VersionID = d.VersionID
	}
	if ev.VersionName == "" {
		ev.VersionName = d.VersionName
	}
	if ev.Duration == 0 && d.Duration.Valid && d.Duration.Float > 0 {
		ev.Duration = d.Duration.Seconds()
	}
}

// kindOf maps an event type, clean or legacy, to its kind.
func kindOf(eventType string) EventKind {
	t := strings.ToLower(strings.TrimSpace(eventType))
	switch t {
	case "started", "start":
		return KindStarted
	case "progress":
		return KindProgress
	case "completed", "complete":
		return KindCompleted
	case "failed", "failure", "error":
		return KindFailed
	}
	switch {
	case strings.HasSuffix(t, "_failed"):
		return KindFailed
	case strings.HasSuffix(t, "_completed"):
		return KindCompleted
	case strings.HasSuffix(t, "_started"):
		return KindStarted
	case strings.HasSuffix(t, "_progress"), strings.HasSuffix(t, "_generated"):
		return KindProgress
	}
	return KindOther
}

// legacyPhase derives a phase from a legacy event type's prefix.
func legacyPhase(eventType string) Phase {
	t := strings.ToLower(strings.TrimSpace(eventType))
	prefix, _, found := strings.Cut(t, "_")
	if !found {
		return ""
	}
	switch prefix {
	case "plan", "setup":
		return PhaseSetup
	case "ai", "task", "code", "development":
		return PhaseDevelopment
	case "install", "dependencies", "deps", "npm":
		return PhaseDependencies
	case "build":
		return PhaseBuild
	case "deploy", "deployment":
		return PhaseDeploy
	case "metadata", "recommendations", "documentation":
		return PhaseMetadata
	}
	return ""
}

// clampProgress reads a progress value into [0, 1]: values above 1 are
// percentages (60 is 0.6), and the result is clamped.
func clampProgress(p float64) float64 { return wire.ClampProgress(p) }

// BuildOutcome reads a build's events, in ascending id order, by the rules
// Follow and Wait apply (the first failure or deploy completion stands;
// after a deploy, the metadata phase is read until it ends), and says how
// the build ended, for readers that do not follow a build live (package
// pgevents' Feed): a *BuildResult when its deploy completed (MetadataDone
// false when the metadata phase had not ended by the last event), a
// *BuildFailedError when it failed, and ended false, with neither, when
// the events show no end yet.
func BuildOutcome(buildID string, events []BuildEvent) (result *BuildResult, ended bool, err error) {
	var o outcome
	for _, ev := range events {
		ev.Progress = clampProgress(ev.Progress)
		o.observe(ev)
		if o.ended() {
			break
		}
	}
	return o.result(buildID)
}

// outcome is what a build's events, read in id order, say about how it
// ended: Follow's and Wait's bookkeeping, and BuildOutcome's.
type outcome struct {
	count        int
	lastID       int64
	firstAt      time.Time // the first event's CreatedAt
	success      *BuildEvent
	failure      *BuildEvent
	metadataSeen bool
	metadataDone bool
	metadataErr  *BuildEventError
	previewURL   string
	versionID    string
	versionName  string
}

// observe takes the next event into account.
func (o *outcome) observe(ev BuildEvent) {
	o.count++
	o.lastID = ev.ID
	if o.count == 1 {
		o.firstAt = ev.CreatedAt
	}
	o.previewURL = cmp.Or(ev.PreviewURL, o.previewURL)
	o.versionID = cmp.Or(ev.VersionID, o.versionID)
	o.versionName = cmp.Or(ev.VersionName, o.versionName)
	o.metadataSeen = o.metadataSeen || ev.Phase == PhaseMetadata
	o.metadataDone = o.metadataDone || ev.MetadataDone()
	if ev.MetadataFailed() && o.metadataErr == nil {
		o.metadataErr = ev.Error
		if o.metadataErr == nil {
			o.metadataErr = &BuildEventError{Code: ev.Code, Message: cmp.Or(ev.Description, ev.Title, "metadata generation failed")}
		}
	}
	if o.success != nil || o.failure != nil {
		return // the first outcome stands
	}
	switch {
	case ev.DeploySucceeded():
		o.success = &ev
	case ev.BuildFailed():
		o.failure = &ev
	}
}

// ended reports whether the events so far settle the outcome: a failure,
// or a deploy whose metadata phase has ended.
func (o *outcome) ended() bool {
	return o.failure != nil || (o.success != nil && o.metadataDone)
}

// metadataWait is how long after the deploy a reader waits for the
// metadata phase: wait, or startWait when no metadata event has shown up.
func (o *outcome) metadataWait(wait, startWait time.Duration) time.Duration {
	if !o.metadataSeen {
		return min(wait, startWait)
	}
	return wait
}

// result is how the build of buildID ended as far as the events say (see
// BuildOutcome).
func (o *outcome) result(buildID string) (*BuildResult, bool, error) {
	switch {
	case o.failure != nil:
		return nil, true, newBuildFailedError(buildID, *o.failure)
	case o.success == nil:
		return nil, false, nil
	}
	s := o.success
	r := &BuildResult{
		ID:            cmp.Or(buildID, s.BuildID),
		PreviewURL:    cmp.Or(s.PreviewURL, o.previewURL),
		VersionID:     o.versionID,
		VersionName:   o.versionName,
		Final:         *s,
		LastEventID:   o.lastID,
		Events:        o.count,
		MetadataDone:  o.metadataDone,
		MetadataError: o.metadataErr,
		Duration:      s.Duration,
	}
	if r.Duration == 0 && !o.firstAt.IsZero() && s.CreatedAt.After(o.firstAt) {
		r.Duration = s.CreatedAt.Sub(o.firstAt)
	}
	return r, true, nil
}
