package sheentest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

type project struct {
	id       string
	userID   string
	versions []string // version ids, oldest first
	building string   // id of the build under way, if any
	rolling  bool
}

type version struct {
	id, projectID, userID string
	semver, name, prompt  string
	kind                  string
	createdAt             time.Time
	published             bool
	previewURL            string
	artifact              []byte // nil: the artifact is gone
	outputSize            int64
}

// event is one row of the build's event stream, in the HTTP shape.
type event struct {
	ID          int64          `json:"-"`
	IDString    string         `json:"id"`
	BuildID     string         `json:"build_id"`
	EventType   string         `json:"event_type"`
	Phase       string         `json:"phase"`
	Title       string         `json:"title"`
	Description string         `json:"description"`
	Progress    float64        `json:"overall_progress"`
	Finished    bool           `json:"finished"`
	PreviewURL  string         `json:"preview_url,omitempty"`
	EventCode   string         `json:"event_code,omitempty"`
	Error       map[string]any `json:"error,omitempty"`
	CreatedAt   string         `json:"created_at"`
	VersionID   string         `json:"versionId,omitempty"`
	VersionName string         `json:"versionName,omitempty"`
}

type build struct {
	id, userID, projectID, prompt, framework string
	kind                                     string // create, update, rebuild
	rebuildVersion                           string
	cost                                     time.Duration
	step                                     int
	events                                   []event
	failAt                                   int // step that fails; -1 none
	failCode, failMessage                    string
	metadataFails                            bool
	versionID                                string
	started                                  time.Time
	deployed                                 bool
	finished                                 bool
	failed                                   bool
	watchers                                 map[chan struct{}]struct{} // readers woken by each new event (client.go)
}

// steps are the phases a build walks through, one event each.
var steps = []struct {
	eventType, phase, title string
	progress                float64
}{
	{"started", "development", "Build started", 0.05},
	{"progress", "development", "Writing the code", 0.25},
	{"progress", "dependencies", "Installing dependencies", 0.45},
	{"progress", "build", "Building", 0.65},
	{"progress", "deploy", "Deploying", 0.85},
	{"completed", "deploy", "Deployed", 1},
	// The deployed worker reports metadata progress as 60 and 100.
	{"progress", "metadata", "Writing the project's metadata", 60},
	{"completed", "metadata", "Metadata ready", 100},
}

const (
	failStep   = 3 // a failing build fails while building
	deployStep = 5
)

// FailNextBuild makes the next build created fail in its build phase with
// the given error code and user-facing message.
func (s *Server) FailNextBuild(code, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = &failSpec{code: code, message: message}
}

// FailNextMetadata makes the next build created fail in its metadata phase,
// after a successful deploy.
func (s *Server) FailNextMetadata() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failMetadataNext = true
}

type failSpec struct{ code, message string }

// Step moves a build one event forward; it reports false when the build is
// unknown or over.
func (s *Server) Step(buildID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.builds[buildID]
	return b != nil && s.stepLocked(b)
}

// Finish runs a build to its end.
func (s *Server) Finish(buildID string) {
	for s.Step(buildID) {
	}
}

// BuildIDs returns the ids of every build, oldest first.
func (s *Server) BuildIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.order...)
}

// tick moves every unfinished build one step each interval (PaceTimed).
func (s *Server) tick() {
	defer s.ticker.Done()
	t := time.NewTicker(s.cfg.stepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.mu.Lock()
			for _, id := range s.order {
				s.stepLocked(s.builds[id])
			}
			s.mu.Unlock()
		}
	}
}

// stepLocked writes the build's next event and applies its effects.
func (s *Server) stepLocked(b *build) bool {
	if b.finished || b.step >= len(steps) {
		return false
	}
	st := steps[b.step]
	s.nextEvID++
	ev := event{
		ID: s.nextEvID, IDString: strconv.FormatInt(s.nextEvID, 10), BuildID: b.id,
		EventType: st.eventType, Phase: st.phase, Title: st.title, Description: st.title + ".",
		Progress: st.progress, CreatedAt: s.now().UTC().Format(time.RFC3339Nano),
		EventCode: "BUILD_" + st.phase,
	}
	switch {
	case b.step == b.failAt:
		ev.EventType, ev.Title, ev.Finished = "failed", "Build failed", true
		ev.Error = map[string]any{"code": b.failCode, "params": map[string]any{}, "message": b.failMessage}
		b.failed, b.finished = true, true
		s.projectDoneLocked(b)
	case b.step == deployStep:
		s.deployLocked(b)
		ev.Finished, ev.PreviewURL = true, s.previewURL(b)
		ev.VersionID, ev.VersionName = b.versionID, s.versions[b.versionID].name
	case b.step == len(steps)-1 && b.metadataFails:
		ev.EventType, ev.Title = "failed", "Metadata failed"
		ev.Error = map[string]any{"code": "METADATA_FAILED", "params": map[string]any{}, "message": "Could not write the project's metadata"}
		ev.Finished = true
		b.finished = true
	case b.step == len(steps)-1:
		ev.Finished = true
		b.finished = true
	}
	b.events = append(b.events, ev)
	b.step++
	wakeLocked(b)
	return true
}

func (s *Server) previewURL(b *build) string {
	return fmt.Sprintf("%s/preview/%s/%s/", s.URL, b.projectID, b.versionID)
}

// deployLocked ends a successful build: charges its AI time and creates (or
// restores) its version with an artifact.
func (s *Server) deployLocked(b *build) {
	b.deployed = true
	s.userLocked(b.userID).charge(b.cost, map[bool]string{true: "update", false: "build"}[b.kind == "update"], "build "+b.id, s.now())
	p := s.projects[b.projectID]
	if b.kind == "rebuild" {
		if v := s.versions[b.rebuildVersion]; v != nil {
			v.artifact, v.outputSize = makeArtifact(v.projectID, v.prompt, s.cfg.artifactPadding)
			b.versionID = v.id
		}
	} else {
		v := &version{
			id: s.newID("ver"), projectID: p.id, userID: b.userID, prompt: b.prompt, kind: b.kind,
			semver: fmt.Sprintf("1.0.%d", len(p.versions)), createdAt: s.now().UTC(), published: true,
		}
		v.name = "v" + v.semver
		v.artifact, v.outputSize = makeArtifact(p.id, b.prompt, s.cfg.artifactPadding)
		s.versions[v.id] = v
		p.versions = append(p.versions, v.id)
		b.versionID = v.id
		v.previewURL = s.previewURL(b)
	}
	s.projectDoneLocked(b)
}

func (s *Server) projectDoneLocked(b *build) {
	if p := s.projects[b.projectID]; p != nil && p.building == b.id {
		p.building = ""
	}
}

// startBuildLocked creates a build and, at PaceInstant, runs it to its end.
func (s *Server) startBuildLocked(b *build) {
	b.id = s.newID("bld")
	b.started = s.now()
	b.failAt = -1
	if s.failNext != nil {
		b.failAt, b.failCode, b.failMessage = failStep, s.failNext.code, s.failNext.message
		s.failNext = nil
	}
	b.metadataFails, s.failMetadataNext = s.failMetadataNext, false
	s.builds[b.id] = b
	s.order = append(s.order, b.id)
	if p := s.projects[b.projectID]; p != nil {
		p.building = b.id
	}
	if s.cfg.pace == PaceInstant {
		for s.stepLocked(b) {
		}
	}
}

// projectSize applies v2.1's rule to the number of template files.
func projectSize(files int) string {
	switch {
	case files < 10:
		return "small"
	case files < 50:
		return "medium"
	}
	return "large"
}

func (s *Server) insufficientForBuild(w http.ResponseWriter, u *user, need time.Duration) {
	writeJSON(w, http.StatusPaymentRequired, map[string]any{
		"success": false, "error": "insufficient_ai_time", "message": "Insufficient AI time balance to start build",
		"balance": s.v21Balance(u), "estimate": estimateBody(need), "required": secs(need),
	})
}

func (s *Server) handleCreatePreview(w http.ResponseWriter, r *http.Request) {
	var in struct {
		UserID        string          `json:"userId"`
		ProjectID     string          `json:"projectId"`
		Prompt        string          `json:"prompt"`
		Framework     string          `json:"framework"`
		TemplateFiles json.RawMessage `json:"templateFiles"` // anything in deployed mode (validate.go)
	}
	if !decodeBody(w, r, &in) { // checked against its schema (validate.go)
		return
	}
	var files map[string]json.RawMessage
	_ = json.Unmarshal(in.TemplateFiles, &files) // not an object: no files
	need := estimate("main_build", projectSize(len(files)), false)
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userLocked(in.UserID)
	if in.ProjectID == "" {
		in.ProjectID = s.newID("proj")
	}
	p := s.projects[in.ProjectID]
	switch {
	case p != nil && p.userID != in.UserID:
		writeJSON(w, http.StatusForbidden, map[string]any{"success": false, "error": "forbidden", "message": "Project belongs to another user"})
		return
	case p != nil && p.building != "":
		writeJSON(w, http.StatusConflict, map[string]any{"success": false, "error": "project_creation_in_progress", "message": "A build for this project is already running"})
		return
	case u.total() < need:
		s.insufficientForBuild(w, u, need)
		return
	}
	if p == nil {
		p = &project{id: in.ProjectID, userID: in.UserID}
		s.projects[p.id] = p
	}
	b := &build{userID: in.UserID, projectID: p.id, prompt: in.Prompt, framework: in.Framework, kind: "create", cost: need}
	s.startBuildLocked(b)
	writeJSON(w, http.StatusOK, map[string]any{
		"success": true, "jobId": b.id, "buildId": b.id, "planId": "plan_" + b.id, "projectId": p.id,
		"status": "queued", "message": "Build queued", "estimatedTime": secs(need), "correlationId": w.Header().Get("X-Correlation-Id"),
	})
}

func (s *Server) handleUpdateProject(w http.ResponseWriter, r *http.Request) {
	var in struct {
		UserID    string `json:"userId"`
		ProjectID string `json:"projectId"`
		Prompt    string `json:"prompt"`
		Framework string `json:"framework"`
	}
	if !decodeBody(w, r, &in) { // checked against its schema (validate.go)
		return
	}
	need := estimate("update", "medium", true)
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projects[in.ProjectID]
	if p == nil || p.userID != in.UserID {
		writeJSON(w, http.StatusNotFound, map[string]any{"success": false, "error": "project_not_found", "message": "Project not found"})
		return
	}
	if p.building != "" {
		writeJSON(w, http.StatusConflict, map[string]any{"success": false, "error": "project_creation_in_progress", "message": "A build for this project is already running"})
		return
	}
	u := s.userLocked(in.UserID)
	if u.total() < need {
		s.insufficientForBuild(w, u, need)
		return
	}
	base := ""
	if n := len(p.versions); n > 0 {
		base = p.versions[n-1]
	}
	b := &build{userID: in.UserID, projectID: p.id, prompt: in.Prompt, framework: in.Framework, kind: "update", cost: need}
	s.startBuildLocked(b)
	writeJSON(w, http.StatusOK, map[string]any{
		"success": true, "buildId": b.id, "jobId": b.id, "projectId": p.id, "message": "Update queued",
		"baseVersionId": base, "estimatedTime": secs(need),
	})
}

type idemEntry struct {
	status int
	body   map[string]any
	at     time.Time
}

func (s *Server) handleRollback(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ProjectID       string `json:"projectId"`
		TargetVersionID string `json:"targetVersionId"`
		UserID          string `json:"userId"`
	}
	if !decodeBody(w, r, &in) { // checked against its schema (validate.go)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	s.mu.Lock()
	defer s.mu.Unlock()
	// Replays are kept per user: one user's key never replays another's answer.
	idemKey := in.UserID + "\x00" + key
	if e, ok := s.idem[idemKey]; key != "" && ok && s.now().Sub(e.at) < 24*time.Hour {
		w.Header().Set("Idempotent-Replayed", "true")
		writeJSON(w, e.status, e.body)
		return
	}
	p := s.projects[in.ProjectID]
	target := s.versions[in.TargetVersionID]
	if p == nil || p.userID != in.UserID || target == nil || target.projectID != p.id {
		writeJSON(w, http.StatusNotFound, map[string]any{"success": false, "error": "version_not_found", "message": "Version not found"})
		return
	}
	if p.rolling {
		writeJSON(w, http.StatusConflict, map[string]any{"success": false, "error": "rollback_in_progress", "message": "A rollback is already running"})
		return
	}
	v := &version{
		id: s.newID("ver"), projectID: p.id, userID: p.userID, prompt: target.prompt, kind: "rollback",
		semver: fmt.Sprintf("1.0.%d", len(p.versions)), createdAt: s.now().UTC(), published: true,
		artifact: target.artifact, outputSize: target.outputSize,
	}
	v.name = "v" + v.semver
	v.previewURL = fmt.Sprintf("%s/preview/%s/%s/", s.URL, p.id, v.id)
	s.versions[v.id] = v
	p.versions = append(p.versions, v.id)
	body := map[string]any{
		"success": true, "rollbackVersionId": v.id, "targetVersionId": target.id,
		"previewUrl": v.previewURL, "status": "deployed",
	}
	if key != "" {
		s.idem[idemKey] = idemEntry{status: http.StatusOK, body: body, at: s.now()}
	}
	writeJSON(w, http.StatusOK, body)
}

// RollbackInProgress marks a project as rolling back (rollbacks then answer
// 409 rollback_in_progress) or not.
func (s *Server) RollbackInProgress(projectID string, rolling bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.projects[projectID]; p != nil {
		p.rolling = rolling
	}
}

func (s *Server) handleRebuild(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.versions[r.PathValue("versionId")]
	if v == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"success": false, "error": "version_not_found", "message": "Version not found"})
		return
	}
	b := &build{userID: v.userID, projectID: v.projectID, prompt: v.prompt, kind: "rebuild", rebuildVersion: v.id, cost: estimate("main_build", "small", false)}
	s.startBuildLocked(b)
	// As the deployed worker answers (worker-api.md 5): no buildId; the job
	// is the build to follow.
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "jobId": b.id, "versionId": v.id})
}

func (s *Server) handleVersions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, offset := 20, 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			validationError(w, "querystring/limit must be <= 100 and >= 1")
			return
		}
		limit = n
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			validationError(w, "querystring/offset must be >= 0")
			return
		}
		offset = n
	}
	state := q.Get("state")
	if state == "" {
		state = "all"
	}
	if state != "all" && state != "published" && state != "unpublished" {
		validationError(w, "querystring/state must be equal to one of the allowed values")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projects[r.PathValue("projectId")]
	if p == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"success": false, "error": "project_not_found", "message": "Project not found"})
		return
	}
	var all []map[string]any
	for i := len(p.versions) - 1; i >= 0; i-- { // newest first
		v := s.versions[p.versions[i]]
		if state == "published" && !v.published || state == "unpublished" && v.published {
			continue
		}
		all = append(all, map[string]any{
			"id": v.id, "semver": v.semver, "name": v.name, "description": v.prompt, "type": v.kind,
			"createdAt": v.createdAt.Format(time.RFC3339), "isPublished": v.published, "previewUrl": v.previewURL,
			"hasArtifact": v.artifact != nil, "artifactSize": len(v.artifact), "canPreview": true, "canRollback": v.artifact != nil,
		})
	}
	page := []map[string]any{}
	if offset < len(all) {
		page = all[offset:min(offset+limit, len(all))]
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"success": true, "versions": page,
		"pagination": map[string]any{"total": len(all), "limit": limit, "offset": offset, "hasMore": offset+len(page) < len(all)},
	})
}

// buildFor returns the build if userID may see it. Called with s.mu held.
func (s *Server) buildFor(w http.ResponseWriter, r *http.Request) *build {
	userID := r.URL.Query().Get("userId")
	if userID == "" {
		validationError(w, "querystring must have required property 'userId'")
		return nil
	}
	b := s.builds[r.PathValue("buildId")]
	if b == nil || b.userID != userID {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "Build not found"})
		return nil
	}
	return b
}

func (s *Server) handleBuildEvents(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.Query().Get("lastEventId")
	after := int64(0)
	if raw != "" {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n < 0 {
			validationError(w, "querystring/lastEventId must be a non-negative integer")
			return
		}
		after = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buildFor(w, r)
	if b == nil {
		return
	}
	evs := []event{}
	for _, e := range b.events {
		if e.ID > after {
			evs = append(evs, e)
		}
	}
	var last any = raw // nothing new: the deployed worker echoes the query, as a string
	if raw == "" {
		last = 0
	}
	if len(evs) > 0 {
		last = evs[len(evs)-1].ID
	}
	writeJSON(w, http.StatusOK, map[string]any{"buildId": b.id, "events": evs, "lastEventId": last})
}

func (s *Server) handleBuildStatus(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buildFor(w, r)
	if b == nil {
		return
	}
	status, progress, phase, preview := "starting", 0.0, "", ""
	var errMsg any
	var last string
	for _, e := range b.events {
		last, phase = e.CreatedAt, e.Phase
		if e.Phase != "metadata" {
			progress = e.Progress
		}
		if e.PreviewURL != "" {
			preview = e.PreviewURL
		}
	}
	switch {
	case b.failed:
		status, errMsg = "failed", b.failMessage
	case b.deployed:
		status = "completed"
	case phase == "development":
		status = "developing"
	case phase == "dependencies":
		status = "installing"
	case phase == "build":
		status = "building"
	case phase == "deploy":
		status = "deploying"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"buildId": b.id, "status": status, "progress": int(progress * 100), "previewUrl": preview, "error": errMsg,
		"currentPhase": phase, "finished": b.finished || b.deployed, "eventCount": len(b.events), "lastUpdate": last,
	})
}
