package sheen

import (
	"bytes"
	"cmp"
	"encoding/json"
	"strings"
	"time"

	"github.com/sheenapps/sheen-go/internal/jsonx"
)

// Build phases the worker reports (BuildEvent.Phase). Legacy rows carry no
// phase; the SDK derives one from their event type.
const (
	PhaseSetup        = "setup"
	PhaseDevelopment  = "development"
	PhaseDependencies = "dependencies"
	PhaseBuild        = "build"
	PhaseDeploy       = "deploy"
	PhaseMetadata     = "metadata"
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
	Phase string
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

// metadataDone reports whether the event ends the metadata phase.
func (e BuildEvent) metadataDone() bool {
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

// legacyData is what legacy rows keep in event_data.
type legacyData struct {
	Message         string            `json:"message"`
	Title           string            `json:"title"`
	Description     string            `json:"description"`
	Phase           string            `json:"phase"`
	PreviewURL      string            `json:"previewUrl"`
	PreviewURLSnake string            `json:"preview_url"`
	Progress        jsonx.LooseNumber `json:"progress"`
	OverallProgress jsonx.LooseNumber `json:"overall_progress"`
	Finished        jsonx.LooseBool   `json:"finished"`
	Error           json.RawMessage   `json:"error"`
	ErrorCode       string            `json:"errorCode"`
	VersionID       string            `json:"versionId"`
	VersionName     string            `json:"versionName"`
	Duration        jsonx.LooseNumber `json:"duration_seconds"`
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
		Phase:       strings.ToLower(strings.TrimSpace(r.EventPhase)),
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
		ev.Phase = strings.ToLower(strings.TrimSpace(d.Phase))
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
func legacyPhase(eventType string) string {
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
func clampProgress(p float64) float64 {
	switch {
	case p != p: // NaN
		return 0
	case p > 1:
		p /= 100
	}
	return min(max(p, 0), 1)
}

// eventErrorWire is an event's error object.
type eventErrorWire struct {
	Code        string          `json:"code"`
	Message     string          `json:"message"`
	UserMessage string          `json:"userMessage"`
	Params      json.RawMessage `json:"params"`
}

// decodeEventError reads an error given as an object or a string; nil for
// null, absent or empty.
func decodeEventError(raw json.RawMessage) *BuildEventError {
	raw = nonNullJSON(raw)
	if len(raw) == 0 {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "" {
			return nil
		}
		if codeShaped.MatchString(s) {
			return &BuildEventError{Code: s}
		}
		return &BuildEventError{Message: s}
	}
	var w eventErrorWire
	if json.Unmarshal(raw, &w) != nil {
		return nil
	}
	e := &BuildEventError{Code: w.Code, Message: cmp.Or(w.UserMessage, w.Message), Params: nonNullJSON(w.Params)}
	if e.Code == "" && e.Message == "" && len(e.Params) == 0 {
		return nil
	}
	return e
}

// nonNull returns raw, or nil when it is empty or JSON null.
func nonNullJSON(raw json.RawMessage) json.RawMessage {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil
	}
	return raw
}

// eventWire is an event as the worker's HTTP endpoint sends it. The table's
// column names are accepted beside the endpoint's, and camelCase beside
// snake_case, so a route that sends raw rows is read as well.
type eventWire struct {
	ID               jsonx.LooseID     `json:"id"`
	BuildID          string            `json:"build_id"`
	BuildIDCamel     string            `json:"buildId"`
	UserID           string            `json:"user_id"`
	EventType        string            `json:"event_type"`
	EventTypeCamel   string            `json:"eventType"`
	Phase            string            `json:"phase"`
	EventPhase       string            `json:"event_phase"`
	Title            string            `json:"title"`
	EventTitle       string            `json:"event_title"`
	Description      string            `json:"description"`
	EventDescription string            `json:"event_description"`
	OverallProgress  jsonx.LooseNumber `json:"overall_progress"`
	ProgressCamel    jsonx.LooseNumber `json:"overallProgress"`
	Finished         jsonx.LooseBool   `json:"finished"`
	PreviewURL       string            `json:"preview_url"`
	PreviewURLCamel  string            `json:"previewUrl"`
	EventCode        string            `json:"event_code"`
	EventParams      json.RawMessage   `json:"event_params"`
	Error            json.RawMessage   `json:"error"`
	ErrorCode        string            `json:"error_code"`
	ErrorParams      json.RawMessage   `json:"error_params"`
	UserErrorMessage string            `json:"user_error_message"`
	EventData        json.RawMessage   `json:"event_data"`
	CreatedAt        jsonx.LooseTime   `json:"created_at"`
	CreatedAtCamel   jsonx.LooseTime   `json:"createdAt"`
	VersionID        string            `json:"versionId"`
	VersionIDSnake   string            `json:"version_id"`
	VersionName      string            `json:"versionName"`
	VersionNameSnake string            `json:"version_name"`
	DurationSeconds  jsonx.LooseNumber `json:"duration_seconds"`
}

// decodeEvent reads one event of the HTTP endpoint; ok is false when it is
// not an object or has no usable id. A field of an unexpected type is left
// out rather than the event: dropping it could drop the build's end.
func decodeEvent(raw json.RawMessage) (BuildEvent, bool) {
	var w eventWire
	if !jsonx.DecodeLoosely(raw, &w) {
		return BuildEvent{}, false
	}
	id, ok := w.ID.Int64()
	if !ok {
		return BuildEvent{}, false
	}
	row := EventRow{
		ID:               id,
		BuildID:          cmp.Or(w.BuildID, w.BuildIDCamel),
		EventType:        cmp.Or(w.EventType, w.EventTypeCamel),
		EventData:        w.EventData,
		UserID:           w.UserID,
		CreatedAt:        w.CreatedAt.Time,
		EventPhase:       cmp.Or(w.Phase, w.EventPhase),
		EventTitle:       cmp.Or(w.Title, w.EventTitle),
		EventDescription: cmp.Or(w.Description, w.EventDescription),
		Finished:         w.Finished.Bool,
		PreviewURL:       cmp.Or(w.PreviewURL, w.PreviewURLCamel),
		ErrorCode:        w.ErrorCode,
		ErrorParams:      w.ErrorParams,
		UserErrorMessage: w.UserErrorMessage,
		EventCode:        w.EventCode,
		EventParams:      w.EventParams,
		VersionID:        cmp.Or(w.VersionID, w.VersionIDSnake),
		VersionName:      cmp.Or(w.VersionName, w.VersionNameSnake),
	}
	if row.CreatedAt.IsZero() {
		row.CreatedAt = w.CreatedAtCamel.Time
	}
	if p := cmp.Or(w.OverallProgress, w.ProgressCamel); p.Valid {
		f := p.Float
		row.OverallProgress = &f
	}
	if w.DurationSeconds.Valid {
		f := w.DurationSeconds.Float
		row.DurationSeconds = &f
	}
	ev := row.Event()
	if e := decodeEventError(w.Error); e != nil {
		if ev.Error == nil {
			ev.Error = e
		} else {
			ev.Error.Code = cmp.Or(ev.Error.Code, e.Code)
			ev.Error.Message = cmp.Or(ev.Error.Message, e.Message)
			if ev.Error.Params == nil {
				ev.Error.Params = e.Params
			}
		}
	}
	return ev, true
}
