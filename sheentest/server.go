package sheentest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheenhttp"
)

// maxBody is the deployed worker's request body limit.
const maxBody = 1 << 20

// Server is an in-process fake of the Worker API on a loopback port. It is
// safe for concurrent use.
type Server struct {
	// URL is the base URL of the fake worker, for sheen.WithBaseURL.
	URL string
	// Secret is the shared secret requests must be signed with.
	Secret string

	cfg      settings
	http     *httptest.Server
	verifier *sheenhttp.Verifier
	mux      *http.ServeMux

	mu       sync.Mutex
	users    map[string]*user
	builds   map[string]*build
	order    []string // build ids in creation order
	projects map[string]*project
	versions map[string]*version
	links    map[string]*link // object-store key -> link
	idem     map[string]idemEntry
	windows  map[string]*rateWindow
	faults   []*faultRule
	calls    map[string]int // route pattern -> calls so far
	log      []Request
	nextID   int
	nextEvID int64

	gen generateState

	failNext         *failSpec
	failMetadataNext bool

	stop     chan struct{}
	stopOnce sync.Once
	ticker   sync.WaitGroup
}

// NewServer starts a fake worker on loopback. Close it when done (with
// WithTest it closes itself at the end of the test).
func NewServer(opts ...Option) *Server {
	cfg := defaultSettings()
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.secret == "" {
		var b [24]byte
		_, _ = rand.Read(b[:])
		cfg.secret = "sheentest-" + hex.EncodeToString(b[:])
	}
	s := &Server{
		Secret:   cfg.secret,
		cfg:      cfg,
		users:    map[string]*user{},
		builds:   map[string]*build{},
		projects: map[string]*project{},
		versions: map[string]*version{},
		links:    map[string]*link{},
		idem:     map[string]idemEntry{},
		windows:  map[string]*rateWindow{},
		calls:    map[string]int{},
		stop:     make(chan struct{}),
	}
	s.verifier = &sheenhttp.Verifier{Secret: cfg.secret, SecretV2: cfg.secretV2, Scheme: cfg.signing, AcceptV1: cfg.signing == sheen.SigningDual, Now: s.now}
	for id, paid := range cfg.users {
		s.users[id] = &user{id: id, paid: paid}
	}
	s.mux = http.NewServeMux()
	s.routes()
	// The URL is set before the first request can arrive: handlers read it.
	s.http = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.URL = "http://" + s.http.Listener.Addr().String()
	s.http.Start()
	if cfg.pace == PaceTimed {
		s.ticker.Add(1)
		go s.tick()
	}
	if cfg.tb != nil {
		cfg.tb.Cleanup(s.Close)
	}
	return s
}

// Close shuts the server down and stops its build ticker.
func (s *Server) Close() {
	s.stopOnce.Do(func() {
		close(s.stop)
		s.ticker.Wait()
		s.http.CloseClientConnections()
		s.http.Close()
	})
}

// now is the server's clock, skewed as configured.
func (s *Server) now() time.Time { return time.Now().Add(s.cfg.skew) }

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /v1/billing/balance/{userId}", s.handleBalance)
	m.HandleFunc("GET /v1/billing/legacy-balance/{userId}", s.handleLegacyBalance)
	m.HandleFunc("POST /v1/billing/check-sufficient", s.handleCheckSufficient)
	m.HandleFunc("POST /v1/billing/check-sufficient-batch", s.handleCheckBatch)
	m.HandleFunc("GET /v1/billing/usage/{userId}", s.handleUsage)
	m.HandleFunc("GET /v1/billing/events/{userId}", s.handleBillingEvents)
	m.HandleFunc("POST /v1/create-preview-for-new-project", s.handleCreatePreview)
	m.HandleFunc("POST /v1/update-project", s.handleUpdateProject)
	m.HandleFunc("POST /v1/versions/rollback", s.handleRollback)
	m.HandleFunc("POST /v1/versions/{versionId}/rebuild", s.handleRebuild)
	m.HandleFunc("GET /v1/projects/{projectId}/versions", s.handleVersions)
	m.HandleFunc("GET /v1/builds/{buildId}/events", s.handleBuildEvents)
	m.HandleFunc("GET /v1/builds/{buildId}/status", s.handleBuildStatus)
	m.HandleFunc("GET /v1/projects/{projectId}/export", s.handleExportProject)
	m.HandleFunc("GET /v1/versions/{versionId}/download", s.handleDownloadVersion)
	m.HandleFunc("GET /_store/{key}", s.handleStore)
	m.HandleFunc(sheen.RouteGenerate, s.handleGenerate) // checks its own signature
}

// serve is the pipeline every request goes through: log, injected faults,
// body cap, signature, rate limit, the body's schema (validate.go), then the
// route.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	_, pattern := s.mux.Handler(r)
	corr := r.Header.Get("X-Correlation-Id")
	if corr == "" {
		corr = newHex(16)
	}
	w.Header().Set("X-Correlation-Id", corr)
	w.Header().Set("Date", s.now().UTC().Format(http.TimeFormat))
	rec := &recorder{ResponseWriter: w, status: 200}
	entry := s.record(r, pattern)
	defer func() { s.finishRecord(entry, rec.status) }()

	if s.applyFault(rec, r, pattern) {
		return
	}
	if strings.HasPrefix(r.URL.Path, "/_store/") {
		s.mux.ServeHTTP(rec, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return
	}
	if len(body) > maxBody {
		writeJSON(rec, http.StatusRequestEntityTooLarge, map[string]any{
			"statusCode": 413, "code": "FST_ERR_CTP_BODY_TOO_LARGE", "error": "Payload Too Large", "message": "Request body is too large",
		})
		return
	}
	if pattern != "" && paramTooLong(pattern, r.URL.EscapedPath()) {
		writeJSON(rec, http.StatusNotFound, map[string]any{"error": "Not Found", "message": "Route " + r.Method + ":" + r.URL.Path + " not found", "statusCode": 404})
		return
	}
	if pattern == sheen.RouteGenerate {
		r.Body = io.NopCloser(bytes.NewReader(body))
		s.mux.ServeHTTP(rec, r)
		return
	}
	// As on the deployed worker: the target exactly as it came on the wire,
	// and GET and DELETE signed over an empty body whatever was sent.
	target := r.RequestURI
	if !strings.HasPrefix(target, "/") {
		target = r.URL.RequestURI()
	}
	signed := body
	if r.Method == http.MethodGet || r.Method == http.MethodDelete {
		signed = nil
	}
	inline, hasInline := inlineChecks[pattern]
	hasInline = hasInline && s.deployedMode()
	if !hasInline || inline.middleware {
		if err := s.verifier.Verify(r.Method, target, r.Header, signed); err != nil {
			var ae *sheen.AuthError
			if !errors.As(err, &ae) {
				writeJSON(rec, http.StatusInternalServerError, map[string]any{"error": err.Error()})
				return
			}
			if s.deployedMode() {
				s.middlewareError(rec, ae)
			} else {
				writeJSON(rec, ae.StatusCode, map[string]any{"error": ae.Message, "code": ae.Code, "serverTime": s.now().Unix()})
			}
			return
		}
	}
	if hasInline && !s.checkInline(rec, r, inline, body) {
		return
	}
	if !s.allow(rec, r) {
		return
	}
	if pattern == "" {
		writeJSON(rec, http.StatusNotFound, map[string]any{"error": "Not Found", "message": "Route " + r.Method + ":" + r.URL.Path + " not found", "statusCode": 404})
		return
	}
	if !s.checkBody(rec, pattern, body) {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	s.mux.ServeHTTP(rec, r)
}

// recorder remembers the status written.
type recorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Request is one request the server received, for assertions. Signature
// headers are redacted, and so are download links' signed queries.
type Request struct {
	Method string
	// Path is the request target (escaped path and query).
	Path string
	// Route is the matched route pattern, such as
	// "GET /v1/billing/balance/{userId}"; empty when none matched.
	Route  string
	Header http.Header
	Status int
	At     time.Time
}

func (s *Server) record(r *http.Request, pattern string) int {
	h := r.Header.Clone()
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "x-sheen-") && !strings.EqualFold(k, sheen.HeaderTimestamp) {
			h[k] = []string{"[redacted]"}
		}
	}
	target := r.URL.RequestURI()
	if strings.HasPrefix(r.URL.Path, "/_store/") {
		target = r.URL.Path + "?[redacted]"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, Request{Method: r.Method, Path: target, Route: pattern, Header: h, At: time.Now()})
	return len(s.log) - 1
}

func (s *Server) finishRecord(i, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log[i].Status = status
}

// Requests returns every request received so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.log...)
}

// Calls counts the requests received for a route pattern, such as
// "POST /v1/create-preview-for-new-project".
func (s *Server) Calls(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.log {
		if r.Route == route {
			n++
		}
	}
	return n
}

// rateWindow is one client's fixed window.
type rateWindow struct {
	start time.Time
	used  int
}

// allow applies the per-client fixed window and sets the rate-limit
// headers; it answers 429 itself when the window is used up.
func (s *Server) allow(w http.ResponseWriter, r *http.Request) bool {
	h := w.Header()
	now := s.now()
	if s.cfg.deployedHeaders {
		h.Set("X-Ratelimit-Remaining", "45")
		h.Set("X-Ratelimit-Reset", strconv.FormatInt(now.Add(time.Hour).Unix(), 10))
		return true
	}
	limit := s.cfg.ratePerMinute
	if limit <= 0 {
		return true
	}
	client, _, _ := net.SplitHostPort(r.RemoteAddr)
	s.mu.Lock()
	win := s.windows[client]
	if win == nil || now.Sub(win.start) >= time.Minute {
		win = &rateWindow{start: now}
		s.windows[client] = win
	}
	allowed := win.used < limit
	if allowed {
		win.used++
	}
	remaining := limit - win.used
	reset := win.start.Add(time.Minute)
	s.mu.Unlock()
	secs := int64(reset.Sub(now).Seconds() + 0.999)
	h.Set("X-Ratelimit-Limit", strconv.Itoa(limit))
	h.Set("X-Ratelimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-Ratelimit-Reset", strconv.FormatInt(secs, 10))
	if !allowed {
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"error": "Rate limit exceeded", "retryAfter": secs})
	}
	return allowed
}

// writeJSON answers with a JSON body, the server's Date and a correlation
// id (the client's if it sent one).
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// validationError answers like the worker's web framework does for a
// schema violation.
func validationError(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, map[string]any{
		"statusCode": 400, "code": "FST_ERR_VALIDATION", "error": "Bad Request", "message": msg,
	})
}

// decodeBody reads a JSON body into v, answering 400 when it is not JSON.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		validationError(w, "body is not valid JSON")
		return false
	}
	return true
}

// newHex returns n random bytes as hex.
func newHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Server) newID(prefix string) string {
	s.nextID++
	return fmt.Sprintf("%s_%04d", prefix, s.nextID)
}
