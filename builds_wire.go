package sheen

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/sheenapps/sheen-go/internal/jsonx"
)

type createPreviewBody struct {
	UserID        string            `json:"userId"`
	ProjectID     string            `json:"projectId,omitempty"`
	Prompt        string            `json:"prompt"`
	Framework     string            `json:"framework,omitempty"`
	TemplateFiles map[string]string `json:"templateFiles,omitempty"`
	Metadata      map[string]any    `json:"metadata,omitempty"`
}

type updateProjectBody struct {
	UserID    string `json:"userId"`
	ProjectID string `json:"projectId"`
	Prompt    string `json:"prompt"`
	Framework string `json:"framework,omitempty"`
}

type rollbackBody struct {
	ProjectID       string `json:"projectId"`
	TargetVersionID string `json:"targetVersionId"`
	UserID          string `json:"userId"`
}

// answerWire is what every build answer carries besides its data.
type answerWire struct {
	Success       jsonx.LooseBool `json:"success"`
	Code          string          `json:"code"`
	Error         json.RawMessage `json:"error"`
	Message       string          `json:"message"`
	CorrelationID string          `json:"correlationId"`
}

type buildWire struct {
	answerWire
	BuildID       jsonx.LooseID   `json:"buildId"`
	JobID         jsonx.LooseID   `json:"jobId"`
	PlanID        jsonx.LooseID   `json:"planId"`
	ProjectID     jsonx.LooseID   `json:"projectId"`
	VersionID     jsonx.LooseID   `json:"versionId"`
	BaseVersionID jsonx.LooseID   `json:"baseVersionId"`
	Status        string          `json:"status"`
	EstimatedTime json.RawMessage `json:"estimatedTime"`
}

// UnmarshalJSON reads the answer loosely: a queued build must not be taken
// for a failure (and started again by a caller who retries) because one
// field it does not need came with an odd type.
func (w *buildWire) UnmarshalJSON(b []byte) error {
	type plain buildWire
	if !jsonx.DecodeLoosely(b, (*plain)(w)) {
		return errors.New("not a JSON object")
	}
	return nil
}

type rollbackWire struct {
	answerWire
	RollbackVersionID jsonx.LooseID `json:"rollbackVersionId"`
	TargetVersionID   jsonx.LooseID `json:"targetVersionId"`
	PreviewURL        string        `json:"previewUrl"`
	Status            string        `json:"status"`
	JobID             jsonx.LooseID `json:"jobId"`
}

// UnmarshalJSON reads the answer loosely, as buildWire does.
func (w *rollbackWire) UnmarshalJSON(b []byte) error {
	type plain rollbackWire
	if !jsonx.DecodeLoosely(b, (*plain)(w)) {
		return errors.New("not a JSON object")
	}
	return nil
}

type statusWire struct {
	BuildID      jsonx.LooseID   `json:"buildId"`
	Status       string          `json:"status"`
	Progress     jsonx.Number    `json:"progress"`
	PreviewURL   string          `json:"previewUrl"`
	Error        json.RawMessage `json:"error"`
	CurrentPhase string          `json:"currentPhase"`
	Finished     jsonx.LooseBool `json:"finished"`
	EventCount   jsonx.Number    `json:"eventCount"`
	LastUpdate   jsonx.LooseTime `json:"lastUpdate"`
}

type versionWire struct {
	ID           jsonx.LooseID   `json:"id"`
	Semver       string          `json:"semver"`
	Name         string          `json:"name"`
	Description  string          `json:"description"`
	Type         string          `json:"type"`
	CreatedAt    jsonx.LooseTime `json:"createdAt"`
	IsPublished  jsonx.LooseBool `json:"isPublished"`
	PreviewURL   string          `json:"previewUrl"`
	HasArtifact  jsonx.LooseBool `json:"hasArtifact"`
	ArtifactSize jsonx.Number    `json:"artifactSize"`
	CanPreview   jsonx.LooseBool `json:"canPreview"`
	CanRollback  jsonx.LooseBool `json:"canRollback"`
}

type versionsWire struct {
	answerWire
	Versions   []json.RawMessage `json:"versions"`
	Pagination struct {
		Total   jsonx.Number    `json:"total"`
		HasMore jsonx.LooseBool `json:"hasMore"`
	} `json:"pagination"`
}

// refused turns a 2xx answer with success:false into an *APIError; nil when
// the answer did not say success:false.
func (w *answerWire) refused(c *core, method, target string) error {
	if !w.Success.Valid || w.Success.Bool {
		return nil
	}
	path, _, _ := strings.Cut(target, "?")
	e := &APIError{StatusCode: http.StatusOK, Code: ErrorCode(w.Code), Message: w.Message, CorrelationID: w.CorrelationID, Method: method, Path: c.basePath + path}
	var s string
	if json.Unmarshal(w.Error, &s) == nil && s != "" {
		if e.Code == "" && codeShaped.MatchString(s) {
			e.Code = ErrorCode(s)
		} else if e.Message == "" {
			e.Message = s
		}
	}
	e.Code = cmp.Or(e.Code, "unsuccessful")
	e.Message = cmp.Or(e.Message, "the worker answered success:false")
	return e
}

// toBuild reads a build answer; an answer without a build id (or, for a
// rebuild, a job id) is an error wrapping ErrBuildNotQueued.
func (w *buildWire) toBuild(c *core, method, target, correlationID string, jobIsBuild bool) (*Build, error) {
	if err := w.refused(c, method, target); err != nil {
		return nil, err
	}
	b := &Build{
		ID:            w.BuildID.Text,
		JobID:         w.JobID.Text,
		PlanID:        w.PlanID.Text,
		ProjectID:     w.ProjectID.Text,
		VersionID:     w.VersionID.Text,
		BaseVersionID: w.BaseVersionID.Text,
		Status:        w.Status,
		Message:       w.Message,
		EstimatedTime: rawText(w.EstimatedTime),
		CorrelationID: cmp.Or(w.CorrelationID, correlationID),
	}
	if b.ID == "" && jobIsBuild {
		b.ID = b.JobID
	}
	if b.ID == "" {
		path, _, _ := strings.Cut(target, "?")
		what := "a build id"
		if jobIsBuild {
			what = "a build id or a job id"
		}
		reason := fmt.Errorf("%w: the answer has no %s", ErrBuildNotQueued, what)
		if b.Message != "" {
			reason = fmt.Errorf("%w (worker said %q)", reason, b.Message)
		}
		return nil, &ResponseError{StatusCode: http.StatusOK, CorrelationID: b.CorrelationID, Method: method, Path: c.basePath + path, Err: reason}
	}
	return b, nil
}

// rawText is a JSON string's text, or a number's digits; "" otherwise.
func rawText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

func (w *versionWire) toVersion(raw json.RawMessage) ProjectVersion {
	return ProjectVersion{
		ID:           w.ID.Text,
		Semver:       w.Semver,
		Name:         w.Name,
		Description:  w.Description,
		Type:         w.Type,
		CreatedAt:    w.CreatedAt.Time,
		IsPublished:  w.IsPublished.Bool,
		PreviewURL:   w.PreviewURL,
		HasArtifact:  w.HasArtifact.Bool,
		ArtifactSize: w.ArtifactSize.Int(),
		CanPreview:   w.CanPreview.Bool,
		CanRollback:  w.CanRollback.Bool,
		Raw:          raw,
	}
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

type eventsResponseWire struct {
	Events []json.RawMessage `json:"events"`
}
