package sheen

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sheenapps/sheen-go/internal/jsonx"
)

// BuildsService starts builds, follows their events and manages versions.
// Get it from WorkerClient.Builds.
type BuildsService service

// ErrBuildNotQueued is matched (errors.Is) by the error a build call returns
// when the worker answered without a build id: the deployed worker can say
// success with an empty id when queueing failed, and such an answer is not
// a build that will ever run.
var ErrBuildNotQueued = errors.New("sheen: the worker did not queue the build")

// Frameworks create-preview accepts.
const (
	FrameworkReact  = "react"
	FrameworkNextJS = "nextjs"
	FrameworkVue    = "vue"
	FrameworkSvelte = "svelte"
)

// checkFramework refuses a framework the worker does not know; empty lets
// the worker choose.
func checkFramework(framework string) error {
	switch framework {
	case "", FrameworkReact, FrameworkNextJS, FrameworkVue, FrameworkSvelte:
		return nil
	}
	return &ValidationError{Field: "framework", Reason: fmt.Sprintf("%q is not one of react, nextjs, vue, svelte", framework)}
}

// CreatePreviewRequest starts a build of a new project from a prompt.
type CreatePreviewRequest struct {
	// UserID is the user the project belongs to; required.
	UserID string
	// ProjectID is optional: the worker makes one when it is empty.
	ProjectID string
	// Prompt says what to build; required.
	Prompt string
	// Framework is one of the Framework constants; empty lets the worker
	// choose (react).
	Framework string
	// TemplateFiles are starting files, path to content (v2.1; the deployed
	// worker ignores them). Their count sizes the pre-build check.
	TemplateFiles map[string]string
	// Metadata is free-form data kept with the project (v2.1; the deployed
	// worker ignores it).
	Metadata map[string]any
}

// UpdateProjectRequest starts a build that changes an existing project.
type UpdateProjectRequest struct {
	// UserID is the project's owner; required.
	UserID string
	// ProjectID is the project to change; required.
	ProjectID string
	// Prompt says what to change; required.
	Prompt string
	// Framework is one of the Framework constants; empty leaves it as it
	// is.
	Framework string
}

// Build is a build the worker accepted: follow it with Events or Wait.
type Build struct {
	// BuildID identifies the build and its events; never empty.
	BuildID string
	// JobID is the worker's queue job.
	JobID string
	// PlanID is the build's plan, when the worker says.
	PlanID string
	// ProjectID is the project built (made by the worker for a new project
	// without one).
	ProjectID string
	// VersionID is the version a rebuild rebuilds.
	VersionID string
	// BaseVersionID is the version an update starts from.
	BaseVersionID string
	// Status is the worker's status for the build ("queued").
	Status string
	// Message is the worker's message.
	Message string
	// EstimatedTime is the worker's estimate as it wrote it (for example
	// "60-90 seconds for new projects").
	EstimatedTime string
	// CorrelationID identifies the request for support.
	CorrelationID string
}

// RollbackRequest rolls a project back to an earlier version.
type RollbackRequest struct {
	// UserID is the project's owner; required.
	UserID string
	// ProjectID is the project; required.
	ProjectID string
	// TargetVersionID is the version to go back to; required.
	TargetVersionID string
	// IdempotencyKey is sent as the Idempotency-Key header; every attempt of
	// the call carries the same one, and the worker replays its answer for
	// 24 h. Empty means a fresh UUID per call; set it to retry a rollback
	// safely across calls (RollbackResult.IdempotencyKey is the key used).
	// At most 256 bytes, without control characters.
	IdempotencyKey string
}

// RollbackResult is the worker's answer to a rollback.
type RollbackResult struct {
	// RollbackVersionID is the new version the rollback creates.
	RollbackVersionID string
	// TargetVersionID is the version rolled back to.
	TargetVersionID string
	// PreviewURL is where the rolled-back project is served.
	PreviewURL string
	// Status is "rollingBack" or "deployed".
	Status string
	// JobID is the worker's job, when one was queued.
	JobID string
	// IdempotencyKey is the key the call sent.
	IdempotencyKey string
}

// BuildStatus is the worker's summary of a build.
type BuildStatus struct {
	// BuildID is the build.
	BuildID string
	// Status is unknown, starting, developing, installing, building,
	// deploying, completed or failed.
	Status string
	// Progress is in [0, 1] (the worker sends 0..100).
	Progress float64
	// PreviewURL is set once the build is deployed.
	PreviewURL string
	// Error is the build's failure, if any.
	Error *BuildEventError
	// CurrentPhase is the phase of the latest event.
	CurrentPhase string
	// Finished reports whether the build is over.
	Finished bool
	// EventCount is how many events the build has written.
	EventCount int
	// LastUpdate is when the latest event was written (zero when unknown).
	LastUpdate time.Time
}

// ProjectVersion is one version of a project. (It is not named Version:
// that is the SDK's version constant.)
type ProjectVersion struct {
	ID          string
	Semver      string
	Name        string
	Description string
	// Type is the kind of change (for example "minor").
	Type        string
	CreatedAt   time.Time
	IsPublished bool
	PreviewURL  string
	// HasArtifact reports whether the built output is still stored (needed
	// to preview, roll back or download without a rebuild).
	HasArtifact bool
	// ArtifactSize is in bytes.
	ArtifactSize int64
	CanPreview   bool
	CanRollback  bool
	// Raw is the version as the worker sent it, for fields the SDK does
	// not read.
	Raw json.RawMessage
}

// VersionState filters Versions.
type VersionState string

// Version states.
const (
	VersionsAll         VersionState = "all"
	VersionsPublished   VersionState = "published"
	VersionsUnpublished VersionState = "unpublished"
)

// VersionsOption changes how Versions lists.
type VersionsOption func(*versionsConfig)

type versionsConfig struct {
	state    VersionState
	pageSize int
}

// WithVersionState lists only published or unpublished versions (the
// worker's default is all).
func WithVersionState(state VersionState) VersionsOption {
	return func(c *versionsConfig) { c.state = state }
}

// WithVersionsPageSize sets how many versions each request asks for, 1 to
// 100 (default 100, the fewest requests).
func WithVersionsPageSize(n int) VersionsOption {
	return func(c *versionsConfig) { c.pageSize = n }
}

// BuildOption changes one call that starts a build.
type BuildOption func(*buildCall)

type buildCall struct {
	preCheck bool
}

// WithPreCheck turns v2.1's pre-build balance check on or off for this
// call, whatever WithPreBuildCheck set for the client.
func WithPreCheck(on bool) BuildOption {
	return func(c *buildCall) { c.preCheck = on }
}

// WithPreBuildCheck makes CreatePreview ask the billing service whether the
// user can afford the build before starting it (v2.1's pre-build check);
// WithPreCheck overrides it per call. Off by default: the worker checks the
// balance itself and answers 402 when it is short.
func WithPreBuildCheck(on bool) Option {
	return func(c *config) error { c.builds.preCheck = on; return nil }
}

// WithBuildEventSource sets where Events and Wait read build events from
// (for example a pgevents.Source); the default is the worker's HTTP
// endpoint. WithEventSource overrides it per call.
func WithBuildEventSource(src EventSource) Option {
	return func(c *config) error {
		if src == nil {
			return errors.New("sheen: WithBuildEventSource: source is nil")
		}
		c.builds.source = src
		return nil
	}
}

// buildsConfig holds the Builds service's options.
type buildsConfig struct {
	source   EventSource
	preCheck bool
}

// buildsState is the Builds service's share of the client's core.
type buildsState struct {
	source   EventSource
	preCheck bool
}

func (s *buildsState) init(c *core, cfg buildsConfig) {
	s.source = cfg.source
	s.preCheck = cfg.preCheck
}

// Wire types.

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
		BuildID:       w.BuildID.Text,
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
	if b.BuildID == "" && jobIsBuild {
		b.BuildID = b.JobID
	}
	if b.BuildID == "" {
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

// CreatePreview starts the build of a new project (POST
// /v1/create-preview-for-new-project) and returns it once queued; follow it
// with Wait or Events.
//
// With the pre-build check on (WithPreCheck, WithPreBuildCheck), it first
// asks the billing service whether the user can afford a main build of the
// project's size (EstimateProjectSize of the template file count), and when
// the balance is short it returns an *InsufficientBalanceError without
// starting anything; when the check answered 200 with sufficient:false the
// error is made from that answer, with status 402 as the build would have
// had. The worker's own 402 gives the same error type.
//
// An answer without a build id is an error matching ErrBuildNotQueued, not a
// success. Once a build starts, the user's cached balance is dropped.
func (s *BuildsService) CreatePreview(ctx context.Context, req CreatePreviewRequest, opts ...BuildOption) (*Build, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	if _, err := escapeID("userId", req.UserID); err != nil {
		return nil, err
	}
	if req.ProjectID != "" {
		if _, err := escapeID("projectId", req.ProjectID); err != nil {
			return nil, err
		}
	}
	if strings.TrimSpace(req.Prompt) == "" {
		return nil, &ValidationError{Field: "prompt", Reason: "is empty"}
	}
	if err := checkFramework(req.Framework); err != nil {
		return nil, err
	}
	call := buildCall{preCheck: s.client.core.builds.preCheck}
	for _, o := range opts {
		o(&call)
	}
	if call.preCheck {
		if err := s.preCheck(ctx, req.UserID, EstimateProjectSize(len(req.TemplateFiles))); err != nil {
			return nil, err
		}
	}
	// The wire type has the request's fields, in the spec's order.
	return s.startBuild(ctx, "/v1/create-preview-for-new-project", createPreviewBody(req), req.UserID)
}

// preCheck runs v2.1's pre-build check: nil when the user can afford a main
// build of the given size, an *InsufficientBalanceError when not.
func (s *BuildsService) preCheck(ctx context.Context, userID string, size ProjectSize) error {
	check, ib, err := s.client.Billing.checkSufficient(ctx, CheckSufficientRequest{
		UserID: userID, OperationType: OperationMainBuild, ProjectSize: size,
	})
	if err != nil || check.Sufficient {
		return err
	}
	if ib.APIError == nil { // a 200 with sufficient:false: the 402 the build would have had
		ib.APIError = &APIError{
			StatusCode: http.StatusPaymentRequired,
			Code:       CodeInsufficientAITime,
			Message:    insufficientFallbackMessage + " (pre-build check)",
			Method:     http.MethodPost,
			Path:       s.client.core.basePath + "/v1/billing/check-sufficient",
		}
	}
	return ib
}

// UpdateProject starts a build that changes an existing project (POST
// /v1/update-project). An answer without a build id is an error matching
// ErrBuildNotQueued. Once a build starts, the user's cached balance is
// dropped.
func (s *BuildsService) UpdateProject(ctx context.Context, req UpdateProjectRequest) (*Build, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	if _, err := escapeID("userId", req.UserID); err != nil {
		return nil, err
	}
	if _, err := escapeID("projectId", req.ProjectID); err != nil {
		return nil, err
	}
	if strings.TrimSpace(req.Prompt) == "" {
		return nil, &ValidationError{Field: "prompt", Reason: "is empty"}
	}
	if err := checkFramework(req.Framework); err != nil {
		return nil, err
	}
	return s.startBuild(ctx, "/v1/update-project", updateProjectBody(req), req.UserID)
}

func (s *BuildsService) startBuild(ctx context.Context, target string, body any, userID string) (*Build, error) {
	c := s.client.core
	correlationID := uuid.NewString()
	var w buildWire
	err := c.do(ctx, http.MethodPost, target, body, &w, callConfig{correlationID: correlationID})
	var b *Build
	if err == nil {
		b, err = w.toBuild(c, http.MethodPost, target, correlationID, false)
	}
	if b != nil || errors.Is(err, ErrInsufficientBalance) || errors.Is(err, ErrOutcomeUnknown) {
		// A build started (or may have), or the worker said the balance is
		// short: the cached balance is stale either way.
		s.client.Billing.InvalidateBalance(userID)
	}
	return b, err
}

// Rebuild rebuilds a version whose artifact is gone (POST
// /v1/versions/{versionId}/rebuild, no body), for example after an export
// answered 404 with canRebuild. The deployed worker answers only a job id;
// Build.BuildID is then that job id, to follow with Wait or Events.
func (s *BuildsService) Rebuild(ctx context.Context, versionID string) (*Build, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	id, err := escapeID("versionId", versionID)
	if err != nil {
		return nil, err
	}
	c := s.client.core
	target := "/v1/versions/" + id + "/rebuild"
	correlationID := uuid.NewString()
	var w buildWire
	if err := c.do(ctx, http.MethodPost, target, nil, &w, callConfig{correlationID: correlationID}); err != nil {
		return nil, err
	}
	b, err := w.toBuild(c, http.MethodPost, target, correlationID, true)
	if err != nil {
		return nil, err
	}
	if b.VersionID == "" {
		b.VersionID = versionID
	}
	return b, nil
}

// Rollback rolls a project back to an earlier version (POST
// /v1/versions/rollback). The call carries an Idempotency-Key, made once
// per call (or taken from req) and sent unchanged by every retry, so a
// retried rollback never runs twice; that also makes the call safe for the
// client to retry after an ambiguous failure. A rollback already running
// gives a 409 matching ErrConflict (code rollback_in_progress).
func (s *BuildsService) Rollback(ctx context.Context, req RollbackRequest) (*RollbackResult, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	if _, err := escapeID("userId", req.UserID); err != nil {
		return nil, err
	}
	if _, err := escapeID("projectId", req.ProjectID); err != nil {
		return nil, err
	}
	if _, err := escapeID("targetVersionId", req.TargetVersionID); err != nil {
		return nil, err
	}
	key := req.IdempotencyKey
	if key == "" {
		key = uuid.NewString()
	} else if len(key) > 256 || strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, &ValidationError{Field: "idempotencyKey", Reason: "must be at most 256 bytes without control characters"}
	}
	const target = "/v1/versions/rollback"
	c := s.client.core
	body := rollbackBody{ProjectID: req.ProjectID, TargetVersionID: req.TargetVersionID, UserID: req.UserID}
	var w rollbackWire
	if err := c.do(ctx, http.MethodPost, target, body, &w, callConfig{idempotencyKey: key}); err != nil {
		return nil, err
	}
	if err := w.refused(c, http.MethodPost, target); err != nil {
		return nil, err
	}
	return &RollbackResult{
		RollbackVersionID: w.RollbackVersionID.Text,
		TargetVersionID:   cmp.Or(w.TargetVersionID.Text, req.TargetVersionID),
		PreviewURL:        w.PreviewURL,
		Status:            w.Status,
		JobID:             w.JobID.Text,
		IdempotencyKey:    key,
	}, nil
}

// Status returns the worker's summary of a build (GET
// /v1/builds/{buildId}/status). To follow a build to its end, use Wait or
// Events instead of polling this.
func (s *BuildsService) Status(ctx context.Context, buildID, userID string) (*BuildStatus, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	id, err := escapeID("buildId", buildID)
	if err != nil {
		return nil, err
	}
	if _, err := escapeID("userId", userID); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Set("userId", userID)
	var w statusWire
	if err := s.client.core.do(ctx, http.MethodGet, "/v1/builds/"+id+"/status?"+q.Encode(), nil, &w, callConfig{}); err != nil {
		return nil, err
	}
	st := &BuildStatus{
		BuildID:      cmp.Or(w.BuildID.Text, buildID),
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
	return st, nil
}

// Versions lists a project's versions (GET
// /v1/projects/{projectId}/versions), newest first as the worker orders
// them, walking every page; a version is yielded once even when a version
// published meanwhile shifts the pages. It yields an error, once, only when
// it has to stop (also when a page brings nothing new: the worker is not
// paging); breaking out of the loop stops it without further requests.
func (s *BuildsService) Versions(ctx context.Context, projectID string, opts ...VersionsOption) iter.Seq2[ProjectVersion, error] {
	return func(yield func(ProjectVersion, error) bool) {
		if err := ready((*service)(s)); err != nil {
			yield(ProjectVersion{}, err)
			return
		}
		id, err := escapeID("projectId", projectID)
		if err != nil {
			yield(ProjectVersion{}, err)
			return
		}
		cfg := versionsConfig{pageSize: 100}
		for _, o := range opts {
			o(&cfg)
		}
		if cfg.pageSize < 1 || cfg.pageSize > 100 {
			yield(ProjectVersion{}, &ValidationError{Field: "page size", Reason: fmt.Sprintf("%d is not between 1 and 100", cfg.pageSize)})
			return
		}
		switch cfg.state {
		case "", VersionsAll, VersionsPublished, VersionsUnpublished:
		default:
			yield(ProjectVersion{}, &ValidationError{Field: "state", Reason: fmt.Sprintf("%q is not one of published, unpublished, all", cfg.state)})
			return
		}
		c := s.client.core
		// Offsets move when versions are published meanwhile: a version seen
		// on an earlier page is not yielded again, and a page that brings
		// nothing new means the worker is not paging at all.
		seen := make(map[string]struct{})
		for offset := 0; ; {
			q := url.Values{}
			q.Set("limit", strconv.Itoa(cfg.pageSize))
			q.Set("offset", strconv.Itoa(offset))
			if cfg.state != "" {
				q.Set("state", string(cfg.state))
			}
			target := "/v1/projects/" + id + "/versions?" + q.Encode()
			var w versionsWire
			if err := c.do(ctx, http.MethodGet, target, nil, &w, callConfig{}); err != nil {
				yield(ProjectVersion{}, err)
				return
			}
			if err := w.refused(c, http.MethodGet, target); err != nil {
				yield(ProjectVersion{}, err)
				return
			}
			fresh := 0
			for _, raw := range w.Versions {
				var vw versionWire
				if err := json.Unmarshal(raw, &vw); err != nil {
					yield(ProjectVersion{}, versionsResponseError(c, target, fmt.Errorf("decoding a version: %w", err)))
					return
				}
				if vw.ID.Text != "" {
					if _, ok := seen[vw.ID.Text]; ok {
						continue
					}
					seen[vw.ID.Text] = struct{}{}
				}
				fresh++
				if !yield(vw.toVersion(raw), nil) {
					return
				}
			}
			if len(w.Versions) > 0 && fresh == 0 {
				yield(ProjectVersion{}, versionsResponseError(c, target, fmt.Errorf("the page at offset %d repeats versions listed already", offset)))
				return
			}
			offset += len(w.Versions)
			more := len(w.Versions) == cfg.pageSize
			if w.Pagination.HasMore.Valid {
				more = w.Pagination.HasMore.Bool
			}
			if w.Pagination.Total.Valid && int64(offset) >= w.Pagination.Total.Int() {
				more = false
			}
			if !more || len(w.Versions) == 0 {
				return
			}
		}
	}
}

// versionsResponseError is a versions page the SDK cannot use.
func versionsResponseError(c *core, target string, err error) error {
	path, _, _ := strings.Cut(target, "?")
	return &ResponseError{StatusCode: http.StatusOK, Method: http.MethodGet, Path: c.basePath + path, Err: err}
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
