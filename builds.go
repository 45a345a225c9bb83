package sheen

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/google/uuid"
)

// BuildsService starts builds, follows their events and manages versions.
// Get it from WorkerClient.Builds.
type BuildsService service

// WithPreBuildCheck makes CreatePreview ask the billing service whether the
// user can afford the build before starting it (v2.1's pre-build check).
// Off by default: the worker checks the balance itself and answers 402 when
// it is short.
func WithPreBuildCheck(on bool) Option {
	return func(c *config) error { c.builds.preCheck = on; return nil }
}

// WithBuildEventSource sets where Follow and Wait read build events from
// (for example a pgevents.Source); the default is the worker's HTTP
// endpoint. FollowOptions.Source overrides it per call.
func WithBuildEventSource(src EventSource) Option {
	return func(c *config) error {
		if src == nil {
			return errors.New("sheen: WithBuildEventSource: source is nil")
		}
		c.builds.source = src
		return nil
	}
}

// buildsConfig is the Builds service's settings, from the client's
// options; the client keeps it (WorkerClient.builds).
type buildsConfig struct {
	source   EventSource
	preCheck bool
}

// CreatePreview starts the build of a new project (POST
// /v1/create-preview-for-new-project) and returns it once queued; follow it
// with Wait or Follow. opts apply to that request.
//
// With WithPreBuildCheck, it first asks the billing service whether the
// user can afford a main build of the project's size (EstimateProjectSize
// of the template file count), and when the balance is short it returns an
// *InsufficientBalanceError without starting anything; when the check
// answered 200 with sufficient:false the error is made from that answer,
// with status 402 as the build would have had. The worker's own 402 gives
// the same error type.
//
// An answer without a build id is an error matching ErrBuildNotQueued, not a
// success. Once a build starts, the user's cached balance and the project's
// cached export link are dropped.
func (s *BuildsService) CreatePreview(ctx context.Context, req CreatePreviewRequest, opts ...CallOption) (*Build, error) {
	if err := cmp.Or(ready((*service)(s)), req.validate()); err != nil {
		return nil, err
	}
	if s.client.builds.preCheck {
		if err := s.preCheck(ctx, req.UserID, EstimateProjectSize(len(req.TemplateFiles))); err != nil {
			return nil, err
		}
	}
	return s.start(ctx, call{route: RouteCreatePreview, in: createPreviewBody(req), userID: req.UserID}, req.ProjectID, opts)
}

// UpdateProject starts a build that changes an existing project (POST
// /v1/update-project). An answer without a build id is an error matching
// ErrBuildNotQueued. Once a build starts, the user's cached balance and the
// project's cached export link are dropped.
func (s *BuildsService) UpdateProject(ctx context.Context, req UpdateProjectRequest, opts ...CallOption) (*Build, error) {
	if err := cmp.Or(ready((*service)(s)), req.validate()); err != nil {
		return nil, err
	}
	return s.start(ctx, call{route: RouteUpdateProject, in: updateProjectBody(req), userID: req.UserID}, req.ProjectID, opts)
}

// start sends a call that starts a build of projectID ("" when the worker
// makes the project). A build that started, or may have, makes the user's
// cached balance and the project's cached export link stale (a 402 drops
// the balance in send).
func (s *BuildsService) start(ctx context.Context, c call, projectID string, opts []CallOption) (*Build, error) {
	var w buildWire
	c.out = &w
	resp, opts := withResponse(opts)
	err := (*service)(s).send(ctx, c, opts)
	if err != nil && !errors.Is(err, ErrOutcomeUnknown) {
		return nil, err
	}
	s.started(cmp.Or(w.ProjectID.Text, projectID), c.userID)
	if err != nil {
		return nil, err
	}
	return w.build(resp.CorrelationID), nil
}

// started drops what a build, rollback or rebuild of projectID for userID
// makes stale: the user's cached balance and the project's export link.
func (s *BuildsService) started(projectID, userID string) {
	s.client.Billing.InvalidateBalance(userID)
	if projectID != "" {
		s.client.Exports.forgetProject(projectID, userID)
	}
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
		method, path, _ := expandRoute(RouteCheckSufficient)
		ib.APIError = &APIError{
			StatusCode: http.StatusPaymentRequired,
			Code:       CodeInsufficientAITime,
			Message:    insufficientFallbackMessage + " (pre-build check)",
			Method:     method,
			Path:       s.client.core.basePath + path,
		}
	}
	return ib
}

// Rebuild rebuilds a version whose artifact is gone (POST
// /v1/versions/{versionId}/rebuild, no body), for example after an export
// answered 404 with canRebuild. The deployed worker answers only a job id;
// Build.ID is then that job id, to follow with Wait or Follow.
//
// The request names only the version, not its user or project, so Rebuild
// cannot tell whose cached balance or which cached links the rebuild makes
// stale, and drops none. Exports.RebuildMissing, which knows the user from
// the failed link request, drops them; after calling Rebuild directly, call
// Billing.InvalidateBalance for the version's user and Exports.Invalidate
// for links you still hold.
func (s *BuildsService) Rebuild(ctx context.Context, versionID string, opts ...CallOption) (*Build, error) {
	return s.rebuild(ctx, versionID, nil, opts)
}

// rebuild sends the rebuild of versionID. Once the rebuild started, or may
// have (ErrOutcomeUnknown), it calls stale (when not nil) to drop what the
// caller knows the rebuild makes stale.
func (s *BuildsService) rebuild(ctx context.Context, versionID string, stale func(), opts []CallOption) (*Build, error) {
	var w rebuildWire
	resp, opts := withResponse(opts)
	err := (*service)(s).send(ctx, call{route: RouteRebuild, params: []string{versionID}, out: &w}, opts)
	if err != nil && !errors.Is(err, ErrOutcomeUnknown) {
		return nil, err
	}
	if stale != nil {
		stale()
	}
	if err != nil {
		return nil, err
	}
	b := w.build(resp.CorrelationID)
	b.VersionID = cmp.Or(b.VersionID, versionID)
	return b, nil
}

// Rollback rolls a project back to an earlier version (POST
// /v1/versions/rollback). The call carries an Idempotency-Key (see
// RollbackRequest.IdempotencyKey), sent unchanged by every retry, so a
// retried rollback never runs twice; that also makes the call safe for the
// client to retry after an ambiguous failure. A rollback already running
// gives a 409 matching ErrConflict (code rollback_in_progress). Once it
// starts, the project's cached export link is dropped.
func (s *BuildsService) Rollback(ctx context.Context, req RollbackRequest, opts ...CallOption) (*RollbackResult, error) {
	if err := cmp.Or(ready((*service)(s)), req.validate()); err != nil {
		return nil, err
	}
	key := cmp.Or(req.IdempotencyKey, idempotencyKey(opts), uuid.NewString())
	body := rollbackBody{ProjectID: req.ProjectID, TargetVersionID: req.TargetVersionID, UserID: req.UserID}
	var w rollbackWire
	err := (*service)(s).send(ctx, call{route: RouteRollback, in: body, out: &w, userID: req.UserID}, append(opts[:len(opts):len(opts)], WithIdempotencyKey(key)))
	if err == nil || errors.Is(err, ErrOutcomeUnknown) {
		s.client.Exports.forgetProject(req.ProjectID, req.UserID)
	}
	if err != nil {
		return nil, err
	}
	return w.result(req, key), nil
}

// Status returns the worker's summary of a build (GET
// /v1/builds/{buildId}/status). To follow a build to its end, use Wait or
// Follow instead of polling this.
func (s *BuildsService) Status(ctx context.Context, buildID, userID string, opts ...CallOption) (*BuildStatus, error) {
	if err := cmp.Or(ready((*service)(s)), checkID("userId", userID)); err != nil {
		return nil, err
	}
	var w statusWire
	c := call{route: RouteBuildStatus, params: []string{buildID}, query: url.Values{"userId": {userID}}, out: &w}
	if err := (*service)(s).send(ctx, c, opts); err != nil {
		return nil, err
	}
	return w.status(buildID), nil
}

// withResponse returns opts with a Response that the call fills, to read
// its correlation id from: the caller's own when opts has WithResponse,
// else a new one added at the end.
func withResponse(opts []CallOption) (*Response, []CallOption) {
	if cc, err := newCallConfig(opts); err == nil && cc.response != nil {
		return cc.response, opts
	}
	r := new(Response)
	return r, append(opts[:len(opts):len(opts)], WithResponse(r))
}

// idempotencyKey is the key opts set with WithIdempotencyKey, "" for none.
func idempotencyKey(opts []CallOption) string {
	cc, _ := newCallConfig(opts)
	return cc.idempotencyKey
}
