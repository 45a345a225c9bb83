package sheen

import (
	"cmp"
	"fmt"
	"strings"
	"time"
)

// Framework is the framework a project is built with.
type Framework string

// Frameworks create-preview and update-project accept.
const (
	FrameworkReact  Framework = "react"
	FrameworkNextJS Framework = "nextjs"
	FrameworkVue    Framework = "vue"
	FrameworkSvelte Framework = "svelte"
)

// check refuses a framework the worker does not know; empty lets the
// worker choose (or, for an update, leaves it as it is).
func (f Framework) check() error {
	switch f {
	case "", FrameworkReact, FrameworkNextJS, FrameworkVue, FrameworkSvelte:
		return nil
	}
	return &ValidationError{Field: "framework", Reason: fmt.Sprintf("%q is not one of react, nextjs, vue, svelte", string(f))}
}

// Phase is a stage of a build, as the worker reports it (BuildEvent.Phase,
// BuildStatus.CurrentPhase). Legacy rows carry no phase; the SDK derives one
// from their event type.
type Phase string

// Build phases, in the order a build goes through them.
const (
	PhaseSetup        Phase = "setup"
	PhaseDevelopment  Phase = "development"
	PhaseDependencies Phase = "dependencies"
	PhaseBuild        Phase = "build"
	PhaseDeploy       Phase = "deploy"
	PhaseMetadata     Phase = "metadata"
)

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
	Framework Framework
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
	Framework Framework
}

// Build is a build the worker accepted: follow it with Follow or Wait.
type Build struct {
	// ID identifies the build and its events; never empty.
	ID string
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
	// ID is the build.
	ID string
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
	CurrentPhase Phase
	// Finished reports whether the build is over.
	Finished bool
	// EventCount is how many events the build has written.
	EventCount int
	// LastUpdate is when the latest event was written (zero when unknown).
	LastUpdate time.Time
}

// validate refuses a request the worker would refuse, before sending it.
func (r CreatePreviewRequest) validate() error {
	var project error
	if r.ProjectID != "" {
		project = checkID("projectId", r.ProjectID)
	}
	return cmp.Or(checkID("userId", r.UserID), project, checkPrompt(r.Prompt), r.Framework.check())
}

// validate refuses a request the worker would refuse, before sending it.
func (r UpdateProjectRequest) validate() error {
	return cmp.Or(checkID("userId", r.UserID), checkID("projectId", r.ProjectID), checkPrompt(r.Prompt), r.Framework.check())
}

// validate refuses a request the worker would refuse, before sending it.
func (r RollbackRequest) validate() error {
	var key error
	if len(r.IdempotencyKey) > 256 || strings.ContainsFunc(r.IdempotencyKey, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
		key = &ValidationError{Field: "idempotencyKey", Reason: "must be at most 256 bytes without control characters"}
	}
	return cmp.Or(checkID("userId", r.UserID), checkID("projectId", r.ProjectID), checkID("targetVersionId", r.TargetVersionID), key)
}

func checkPrompt(prompt string) error {
	if strings.TrimSpace(prompt) == "" {
		return &ValidationError{Field: "prompt", Reason: "is empty"}
	}
	return nil
}

// checkID refuses an id sent in a body or a query that the worker could
// not use in a path either (see escapeID: empty, a path of its own, control
// characters, too long once escaped).
func checkID(name, id string) error {
	_, err := escapeID(name, id)
	return err
}
