package sheentest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path"
	"strings"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/jsonx"
)

// DefaultGenerateBudget is the deployed worker's budget of /generate calls:
// 800 an hour for the whole worker.
const DefaultGenerateBudget = 800

// generateSettings are the options of the fake /generate.
type generateSettings struct {
	delay     time.Duration
	heartbeat time.Duration
	budget    int
	budgetSet bool
	generator func(context.Context, sheen.GenerateRequest) (string, error)
	folders   map[string]bool // userId/projectId
}

// generateState is the hourly budget's window.
type generateState struct {
	start time.Time
	used  int
}

// WithGenerateDelay sets how long the fake model runs before /generate
// sends its document (default none). The heartbeat space is sent at once.
func WithGenerateDelay(d time.Duration) Option { return func(s *settings) { s.generate.delay = d } }

// WithGenerateHeartbeat makes /generate send a space every interval while
// the model runs. By default it sends one at once and nothing more until
// the document, as the deployed worker does.
func WithGenerateHeartbeat(interval time.Duration) Option {
	return func(s *settings) { s.generate.heartbeat = interval }
}

// WithGenerateBudget sets how many /generate calls an hour the server
// accepts, for all clients together, before it answers 429 {"error":"Rate
// limit exceeded"} with no Retry-After and no rate-limit headers, as the
// deployed worker does (default DefaultGenerateBudget). Zero or less
// removes the budget. Calls refused for their signature do not count.
func WithGenerateBudget(perHour int) Option {
	return func(s *settings) { s.generate.budget, s.generate.budgetSet = perHour, true }
}

// WithGenerator sets the fake model: its string is the output of
// {"success":true,"output":...}; its error the message of
// {"success":false,"error":...}. An output over sheen.MaxGenerateOutput is
// answered {"success":false,"error":"Output buffer exceeded"}. ctx ends when
// the client goes away. The default answers "Done: " and the prompt.
func WithGenerator(fn func(ctx context.Context, req sheen.GenerateRequest) (string, error)) Option {
	return func(s *settings) { s.generate.generator = fn }
}

// WithProjectFolder gives a user's project a working folder on the fake
// worker, so /generate runs on it: without one it answers 404 {"error":
// "Project directory not found"}. Projects created by a build have one.
func WithProjectFolder(userID, projectID string) Option {
	return func(s *settings) {
		if s.generate.folders == nil {
			s.generate.folders = map[string]bool{}
		}
		s.generate.folders[userID+"/"+projectID] = true
	}
}

// handleGenerate is the deployed worker's /generate: its body-only
// signature (body + path under v2.1), the hourly budget, the checks of the
// request, then a 200 that streams a heartbeat at once and one JSON
// document when the model ends.
func (s *Server) handleGenerate(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil || !s.generateSigned(w, r, body) || !s.generateBudget(w) {
		return
	}
	var req sheen.GenerateRequest
	_ = json.Unmarshal(body, &req) // the worker's parser leaves an unreadable body empty
	switch {
	case req.UserID == "" || req.ProjectID == "":
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "userId and projectId are required"})
		return
	case req.Prompt == "":
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "Prompt is required"})
		return
	case !insideProjects(req.UserID, req.ProjectID):
		writeJSON(w, http.StatusForbidden, map[string]any{"error": "Invalid project path"})
		return
	case !s.hasFolder(req.UserID, req.ProjectID):
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "Project directory not found"})
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if !heartbeat(w) || !s.runModel(r.Context(), w) {
		return
	}
	out, err := s.generator()(r.Context(), req)
	doc := generateDoc{Success: true, Output: &out}
	switch {
	case err != nil:
		doc = generateDoc{Error: err.Error()}
	case len(out) > sheen.MaxGenerateOutput:
		doc = generateDoc{Error: "Output buffer exceeded"}
	}
	b, _ := jsonx.Marshal(doc)
	_, _ = w.Write(b)
}

// generateDoc is the document that ends the answer, its keys in the
// worker's order.
type generateDoc struct {
	Success bool    `json:"success"`
	Output  *string `json:"output,omitempty"`
	Error   string  `json:"error,omitempty"`
}

// generateSigned checks the signature as the worker's /generate does: the
// HMAC of the raw body alone under the deployed schemes (401 {"error":
// "Invalid signature"}), body + path like every route under v2.1.
func (s *Server) generateSigned(w http.ResponseWriter, r *http.Request, body []byte) bool {
	if !s.deployedMode() {
		target := r.RequestURI
		if !strings.HasPrefix(target, "/") {
			target = r.URL.RequestURI()
		}
		err := s.verifier.Verify(r.Method, target, r.Header, body)
		var ae *sheen.AuthError
		if errors.As(err, &ae) {
			writeJSON(w, ae.StatusCode, map[string]any{"error": ae.Message, "code": ae.Code, "serverTime": s.now().Unix()})
		} else if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]any{"error": err.Error()})
		}
		return err == nil
	}
	mac := hmac.New(sha256.New, []byte(s.Secret))
	mac.Write(body)
	got, err := hex.DecodeString(r.Header.Get(sheen.HeaderSignature))
	if err != nil || !hmac.Equal(got, mac.Sum(nil)) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "Invalid signature"})
		return false
	}
	return true
}

// generateBudget counts the call against the hourly budget, or answers 429
// as the deployed worker does when it is spent.
func (s *Server) generateBudget(w http.ResponseWriter) bool {
	budget := DefaultGenerateBudget
	if s.cfg.generate.budgetSet {
		budget = s.cfg.generate.budget
	}
	if budget <= 0 {
		return true
	}
	now := s.now()
	s.mu.Lock()
	if now.Sub(s.gen.start) >= time.Hour {
		s.gen = generateState{start: now}
	}
	ok := s.gen.used < budget
	if ok {
		s.gen.used++
	}
	s.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"error": "Rate limit exceeded"})
	}
	return ok
}

// insideProjects reports whether the ids name a folder inside the
// worker's projects folder.
func insideProjects(userID, projectID string) bool {
	const root = "/projects"
	dir := path.Join(root, userID, projectID)
	return strings.HasPrefix(dir, root+"/") && !strings.ContainsAny(userID+projectID, "\x00")
}

// hasFolder reports whether the user's project has a working folder: seeded
// with WithProjectFolder or created by a build.
func (s *Server) hasFolder(userID, projectID string) bool {
	if s.cfg.generate.folders[userID+"/"+projectID] {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projects[projectID]
	return p != nil && p.userID == userID
}

// runModel waits out the model's run, sending a heartbeat every interval
// when asked to. It reports false when the client went away or the server
// closed.
func (s *Server) runModel(ctx context.Context, w http.ResponseWriter) bool {
	cfg := s.cfg.generate
	done := time.NewTimer(cfg.delay)
	defer done.Stop()
	var beat <-chan time.Time
	if cfg.heartbeat > 0 {
		t := time.NewTicker(cfg.heartbeat)
		defer t.Stop()
		beat = t.C
	}
	for {
		select {
		case <-done.C:
			return true
		case <-beat:
			if !heartbeat(w) {
				return false
			}
		case <-ctx.Done():
			return false
		case <-s.stop:
			return false
		}
	}
}

// heartbeat sends one space and flushes it.
func heartbeat(w http.ResponseWriter) bool {
	if _, err := w.Write([]byte(" ")); err != nil {
		return false
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	return true
}

func (s *Server) generator() func(context.Context, sheen.GenerateRequest) (string, error) {
	if s.cfg.generate.generator != nil {
		return s.cfg.generate.generator
	}
	return func(_ context.Context, req sheen.GenerateRequest) (string, error) { return "Done: " + req.Prompt, nil }
}
