package sheen

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/uuid"
)

// BuildsService starts builds, follows their events and manages versions.
// Get it from WorkerClient.Builds.
type BuildsService service

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
	return st, nil
}
