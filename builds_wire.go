package sheen

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sheenapps/sheen-go/internal/jsonx"
)

// Request bodies, their fields in the spec's order.

type createPreviewBody struct {
	UserID        string            `json:"userId"`
	ProjectID     string            `json:"projectId,omitempty"`
	Prompt        string            `json:"prompt"`
	Framework     Framework         `json:"framework,omitempty"`
	TemplateFiles map[string]string `json:"templateFiles,omitempty"`
	Metadata      map[string]any    `json:"metadata,omitempty"`
}

type updateProjectBody struct {
	UserID    string    `json:"userId"`
	ProjectID string    `json:"projectId"`
	Prompt    string    `json:"prompt"`
	Framework Framework `json:"framework,omitempty"`
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

// refusal is the *APIError of a 2xx answer that says success:false, nil
// for any other; the core adds the status and the call.
func (w *answerWire) refusal() error {
	if !w.Success.Valid || w.Success.Bool {
		return nil
	}
	e := &APIError{Code: ErrorCode(w.Code), Message: w.Message, CorrelationID: w.CorrelationID}
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

// buildFields is a build answer: create-preview, update-project, rebuild.
type buildFields struct {
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

// decode reads a build answer loosely, so that a queued build is not taken
// for a failure (and started again by a caller who retries) because a field
// it does not need came with an odd type, and checks it: success:false is
// the worker's refusal, and an answer without a build id (or, when
// jobIsBuild, a job id) is no build that will ever run.
func (w *buildFields) decode(b []byte, jobIsBuild bool) error {
	if !jsonx.DecodeLoosely(b, w) {
		return errors.New("not a JSON object")
	}
	if err := w.refusal(); err != nil {
		return err
	}
	if jobIsBuild && !w.BuildID.Valid {
		w.BuildID = w.JobID
	}
	if w.BuildID.Valid {
		return nil
	}
	what := "build id"
	if jobIsBuild {
		what = "build id or job id"
	}
	err := fmt.Errorf("%w: the answer has no %s", ErrBuildNotQueued, what)
	if w.Message != "" {
		err = fmt.Errorf("%w (worker said %q)", err, w.Message)
	}
	return err
}

// build is the answer as a Build; correlationID is the call's, for an
// answer that names none.
func (w *buildFields) build(correlationID string) *Build {
	return &Build{
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
}

// buildWire is the answer to create-preview and update-project.
type buildWire struct{ buildFields }

// UnmarshalJSON reads and checks the answer (see buildFields.decode).
func (w *buildWire) UnmarshalJSON(b []byte) error { return w.decode(b, false) }

// rebuildWire is the answer to a rebuild: the deployed worker names only a
// job, which is the build to follow.
type rebuildWire struct{ buildFields }

// UnmarshalJSON reads and checks the answer (see buildFields.decode).
func (w *rebuildWire) UnmarshalJSON(b []byte) error { return w.decode(b, true) }

type rollbackWire struct {
	answerWire
	RollbackVersionID jsonx.LooseID `json:"rollbackVersionId"`
	TargetVersionID   jsonx.LooseID `json:"targetVersionId"`
	PreviewURL        string        `json:"previewUrl"`
	Status            string        `json:"status"`
	JobID             jsonx.LooseID `json:"jobId"`
}

// UnmarshalJSON reads the answer loosely, as buildWire does, and refuses
// a success:false.
func (w *rollbackWire) UnmarshalJSON(b []byte) error {
	type plain rollbackWire
	if !jsonx.DecodeLoosely(b, (*plain)(w)) {
		return errors.New("not a JSON object")
	}
	return w.refusal()
}

// result is the answer as a RollbackResult of req, sent with key.
func (w *rollbackWire) result(req RollbackRequest, key string) *RollbackResult {
	return &RollbackResult{
		RollbackVersionID: w.RollbackVersionID.Text,
		TargetVersionID:   cmp.Or(w.TargetVersionID.Text, req.TargetVersionID),
		PreviewURL:        w.PreviewURL,
		Status:            w.Status,
		JobID:             w.JobID.Text,
		IdempotencyKey:    key,
	}
}

type statusWire struct {
	BuildID      jsonx.LooseID   `json:"buildId"`
	Status       string          `json:"status"`
	Progress     jsonx.Number    `json:"progress"`
	PreviewURL   string          `json:"previewUrl"`
	Error        json.RawMessage `json:"error"`
	CurrentPhase Phase           `json:"currentPhase"`
	Finished     jsonx.LooseBool `json:"finished"`
	EventCount   jsonx.Number    `json:"eventCount"`
	LastUpdate   jsonx.LooseTime `json:"lastUpdate"`
}

// status is the answer as the BuildStatus of build buildID.
func (w *statusWire) status(buildID string) *BuildStatus {
	st := &BuildStatus{
		ID:           cmp.Or(w.BuildID.Text, buildID),
		Status:       w.Status,
		PreviewURL:   w.PreviewURL,
		Error:        decodeEventError(w.Error),
		CurrentPhase: w.CurrentPhase,
		Finished:     w.Finished.Bool,
		EventCount:   int(w.EventCount.Int()),
		LastUpdate:   w.LastUpdate.Time,
	}
	if w.Progress.Valid {
		st.Progress = min(max(w.Progress.Float/100, 0), 1)
	}
	return st
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

// versionsWire is one page of a project's versions, read by
// unmarshalAnswer.
type versionsWire struct {
	versions []ProjectVersion
	total    jsonx.Number
	hasMore  jsonx.LooseBool
}

type paginationWire struct {
	Total   jsonx.Number    `json:"total"`
	HasMore jsonx.LooseBool `json:"hasMore"`
}

// unmarshalAnswer reads a page of versions, decoding each version once and
// keeping its bytes as its Raw. A page as the worker writes it takes the
// fast way (see decodeFast); anything else (ids as numbers, sizes as
// strings, times in other layouts) takes the loose way.
func (w *versionsWire) unmarshalAnswer(b []byte) error {
	answer, err := w.decodeFast(b)
	if err != nil {
		*w = versionsWire{}
		return w.unmarshalLoosely(b)
	}
	return answer.refusal()
}

// decodeFast reads a page in one pass: each version decoded with plain
// types straight from the stream, its bytes located by the decoder's
// offsets, the other fields gathered and decoded together at the end. Any
// surprise is an error, and the page is read the loose way instead.
func (w *versionsWire) decodeFast(b []byte) (answerWire, error) {
	var head struct {
		answerWire
		Pagination paginationWire `json:"pagination"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return head.answerWire, errors.New("not an object")
	}
	rest := []byte{'{'}
	for dec.More() {
		t, err := dec.Token()
		key, _ := t.(string)
		switch {
		case err != nil:
			return head.answerWire, err
		case strings.EqualFold(key, "versions"): // as encoding/json matches a field
			err = w.decodeVersions(dec, b)
		default:
			var v json.RawMessage
			err = dec.Decode(&v)
			if len(rest) > 1 {
				rest = append(rest, ',')
			}
			rest = append(append(jsonx.AppendString(rest, key), ':'), v...)
		}
		if err != nil {
			return head.answerWire, err
		}
	}
	if _, err := dec.Token(); err != nil {
		return head.answerWire, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return head.answerWire, errors.New("data after the page")
	}
	if err := json.Unmarshal(append(rest, '}'), &head); err != nil {
		return head.answerWire, err
	}
	w.total, w.hasMore = head.Pagination.Total, head.Pagination.HasMore
	return head.answerWire, nil
}

// decodeVersions reads the versions array from dec, which reads b.
func (w *versionsWire) decodeVersions(dec *json.Decoder, b []byte) error {
	t, err := dec.Token()
	switch {
	case err != nil:
		return err
	case t == nil:
		w.versions = nil
		return nil
	case t != json.Delim('['):
		return errors.New("versions is not an array")
	}
	// Room for the page's versions at a guess (a version is a few hundred
	// bytes), so a full page is not regrown and a short one not oversized.
	w.versions = make([]ProjectVersion, 0, min(versionsPageSize, len(b)/256+1))
	for dec.More() {
		start := dec.InputOffset()
		w.versions = append(w.versions, ProjectVersion{})
		v := &w.versions[len(w.versions)-1]
		if err := dec.Decode((*fastVersionWire)(v)); err != nil {
			return err
		}
		v.ID = strings.TrimSpace(v.ID) // as a LooseID reads it
		v.CreatedAt = v.CreatedAt.UTC()
		v.Raw = bytes.TrimLeft(b[start:dec.InputOffset()], ", \t\r\n")
	}
	_, err = dec.Token()
	return err
}

// unmarshalLoosely reads a page whose fields came with other types than
// the worker's own.
func (w *versionsWire) unmarshalLoosely(b []byte) error {
	var page struct {
		answerWire
		Versions   []json.RawMessage `json:"versions"`
		Pagination paginationWire    `json:"pagination"`
	}
	if err := json.Unmarshal(b, &page); err != nil {
		return err
	}
	if err := page.refusal(); err != nil {
		return err
	}
	w.versions = make([]ProjectVersion, len(page.Versions))
	for i, raw := range page.Versions {
		var v versionWire
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("decoding version %d of the page: %w", i+1, err)
		}
		w.versions[i] = v.version(bytes.TrimSpace(raw))
	}
	w.total, w.hasMore = page.Pagination.Total, page.Pagination.HasMore
	return nil
}

// fastVersionWire is ProjectVersion as the worker writes it: the same
// fields, so that a *ProjectVersion converts to a *fastVersionWire and a
// version is decoded in place (a change to ProjectVersion's fields stops
// the build here, rather than decoding differently).
type fastVersionWire struct {
	ID           string          `json:"id"`
	Semver       string          `json:"semver"`
	Name         string          `json:"name"`
	Description  string          `json:"description"`
	Type         string          `json:"type"`
	CreatedAt    time.Time       `json:"createdAt"`
	IsPublished  bool            `json:"isPublished"`
	PreviewURL   string          `json:"previewUrl"`
	HasArtifact  bool            `json:"hasArtifact"`
	ArtifactSize int64           `json:"artifactSize"`
	CanPreview   bool            `json:"canPreview"`
	CanRollback  bool            `json:"canRollback"`
	Raw          json.RawMessage `json:"-"`
}

// versionWire is a version read loosely.
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

func (v *versionWire) version(raw json.RawMessage) ProjectVersion {
	return ProjectVersion{
		ID:           v.ID.Text,
		Semver:       v.Semver,
		Name:         v.Name,
		Description:  v.Description,
		Type:         v.Type,
		CreatedAt:    v.CreatedAt.Time,
		IsPublished:  v.IsPublished.Bool,
		PreviewURL:   v.PreviewURL,
		HasArtifact:  v.HasArtifact.Bool,
		ArtifactSize: v.ArtifactSize.Int(),
		CanPreview:   v.CanPreview.Bool,
		CanRollback:  v.CanRollback.Bool,
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

// buildEventsWire is a batch of events from the worker's endpoint. An event
// without a usable id is left out (and counted, for the log), not the
// batch: refusing the batch could hide the build's end.
type buildEventsWire struct {
	events  []BuildEvent
	skipped int
}

// UnmarshalJSON reads the batch.
func (w *buildEventsWire) UnmarshalJSON(b []byte) error {
	var batch struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(b, &batch); err != nil {
		return err
	}
	w.events = make([]BuildEvent, 0, len(batch.Events))
	for _, raw := range batch.Events {
		ev, ok := decodeEvent(raw)
		if !ok {
			w.skipped++
			continue
		}
		w.events = append(w.events, ev)
	}
	return nil
}
