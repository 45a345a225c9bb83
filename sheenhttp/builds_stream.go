package sheenhttp

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/wire"
)

// streamRetry is the reconnection delay a stream asks browsers to use.
const streamRetry = 2 * time.Second

// Defaults of a BuildStream.
const (
	// DefaultStreamHeartbeat is how often, by default, a BuildStream writes a
	// comment line to a stream that has had nothing to say: often enough that
	// proxies and load balancers (idle timeouts of 60 s and more) keep it open.
	DefaultStreamHeartbeat = 15 * time.Second

	// DefaultStreamWriteTimeout is how long, by default, a BuildStream lets one
	// write to a browser take before it drops that browser (which reconnects
	// and resumes from Last-Event-ID).
	DefaultStreamWriteTimeout = 10 * time.Second
)

// BuildStreamConfig configures NewBuildStream.
type BuildStreamConfig struct {
	// Authorize returns the signed-in user of a browser request, from your
	// session, as ProxyConfig.Authorize does (the same function serves
	// both). It is required. An error or an empty id answers 401. The id
	// must be a valid worker id.
	Authorize func(r *http.Request) (userID string, err error)

	// AuthorizeResource, when set, is asked whether userID may watch the
	// build (kind ResourceBuild) before anything is read: return nil when
	// it may. An error answers 403, or 404 when it matches ErrNotFound.
	// ProxyConfig.AuthorizeResource fits as is. Without it, the source's
	// own rule applies, as for the proxy's build routes: events are read
	// for the signed-in user only (the worker's endpoint answers 404 for
	// another user's build, which the stream answers too; pgevents reads
	// only that user's rows, so another user's build shows no events).
	AuthorizeResource func(r *http.Request, userID string, kind ResourceKind, id string) error

	// Follow shapes the upstream readers, as for Builds.Follow: Source (by
	// default the client's source, WithBuildEventSource, else the worker's
	// HTTP endpoint), PollInterval, MetadataWait, MetadataStartWait and
	// StallTimeout. A reader that gets no new event within StallTimeout
	// stops, as on any failure of the source: its browsers' streams end
	// without "end", and the browsers reconnect after 2 s and resume from
	// their Last-Event-ID under a new reader, whose StallTimeout starts
	// over (so a quiet build is followed for as long as a browser stays).
	// AfterEventID and OnEvent are refused: the stream resumes each browser
	// from its own Last-Event-ID. nil means every default.
	Follow *sheen.FollowOptions

	// Options are the CallOptions of the HTTP source's requests.
	// WithResponse is refused.
	Options []sheen.CallOption

	// Heartbeat is how often an idle stream gets a comment line (default
	// DefaultStreamHeartbeat). It must not be negative.
	Heartbeat time.Duration

	// WriteTimeout bounds each write to a browser (default
	// DefaultStreamWriteTimeout): a browser that takes longer to accept
	// what is due is dropped, and resumes from Last-Event-ID when it
	// reconnects. It is set on the connection before each write and
	// cleared after it, so it bounds writes only (a quiet stream is not
	// cut, over HTTP/1 or HTTP/2), and it works under an http.Server with
	// a WriteTimeout of its own. It needs a ResponseWriter that can set
	// write deadlines (see NewBuildStream); without one it cannot apply,
	// which is logged once at warn level. It must not be negative.
	WriteTimeout time.Duration
}

// BuildStream is an http.Handler that streams one build's events to a
// browser as Server-Sent Events (text/event-stream), made by
// NewBuildStream. It is safe for concurrent use. It needs a ResponseWriter
// that can flush, directly or through Unwrap (see NewBuildStream).
type BuildStream struct {
	client            *sheen.WorkerClient
	logger            *slog.Logger
	source            sheen.EventSource // where events are read: the options', the client's, or the worker's
	authorize         func(*http.Request) (string, error)
	authorizeResource func(*http.Request, string, ResourceKind, string) error
	follow            sheen.FollowOptions // Source and OnEvent are set per hub
	opts              []sheen.CallOption
	heartbeat         time.Duration
	writeTimeout      time.Duration

	hubs       hubs
	readers    sync.WaitGroup // the upstream readers' goroutines
	noFlush    sync.Once      // logs a ResponseWriter that cannot flush
	noDeadline sync.Once      // logs a ResponseWriter without write deadlines
	closing    chan struct{}
	closeOnce  sync.Once
}

// NewBuildStream returns a handler that streams a build's events to a
// browser's EventSource, from the client's event source or the one in
// cfg.Options: the worker's HTTP endpoint (signed and rate limited by the
// client) or Postgres through package pgevents.
//
// Mount it on a pattern with a {buildId} wildcard, such as
//
//	mux.Handle("GET /app/builds/{buildId}/events", stream)
//
// (without one, the build id is read from the buildId query parameter) and
// open it from the page with new EventSource("/app/builds/" + id +
// "/events"). Each request is checked like the proxy's: Authorize must name
// a user (else 401), AuthorizeResource when set must allow the build (else
// 403 or 404), and the build's events are read for that user only. Refusals
// are JSON, {"error": message, "code": code}: UNAUTHORIZED (401), FORBIDDEN
// (403), NOT_FOUND (404, also when the worker does not know the build for
// that user), BAD_REQUEST (400, a bad build id or Last-Event-ID),
// METHOD_NOT_ALLOWED (405, not GET), client_rate_limited (429),
// EVENTS_UNAVAILABLE (502, the source failed before it answered once),
// SERVICE_UNAVAILABLE (503, after Close) and INTERNAL_ERROR (500, an
// Authorize that returns an invalid id).
//
// The stream (200, text/event-stream) has:
//
//   - one message per build event, in id order, with "id:" the event's id
//     and "data:" a JSON object (id, buildId, type, kind, phase, title,
//     description, progress as a fraction in [0, 1] when the event has one,
//     finished, previewUrl, code, params, error {code, message, params},
//     versionId, versionName, durationSeconds, createdAt). EventSource's
//     onmessage receives them. A browser that reconnects sends the last id
//     it received as Last-Event-ID and gets the events after it, none
//     twice and none missed; a first connection may pass the same as the
//     lastEventId query parameter.
//   - a comment line every Heartbeat while nothing else is sent.
//   - when the build is over, by Builds.Wait's rules (a failure, or the
//     deploy followed by its metadata phase), one "end" event whose data
//     is how it ended: {"status": "deployed", buildId, previewUrl,
//     versionId, versionName, durationSeconds, metadataDone,
//     metadataError, lastEventId} or {"status": "failed", buildId, error
//     {code, message, params}, phase, lastEventId}; then the server ends
//     the response. Close the EventSource on "end" (a browser reconnects
//     to an ended response by itself, and would be sent the end again).
//
// If the source fails for good after the stream started, the response ends
// without "end" and the browser reconnects (after 2 s, as the stream's
// "retry:" asks) and resumes.
//
// All browsers that watch the same build as the same user share one
// upstream reader, started by the first and stopped when the last leaves;
// the reader keeps the build's latest 1,024 events in memory, encoded once,
// and each browser reads them at its own pace, holding no queue of its own.
// A slow browser delays nobody else and not the reader; one that cannot take
// a write within WriteTimeout is dropped and resumes when it reconnects.
// Events older than what the reader holds (a build with more than 1,024
// events) are read from the source for the browser that needs them.
//
// The stream needs a ResponseWriter that can flush: net/http's own, or a
// middleware's wrapper that implements http.Flusher or has an Unwrap()
// http.ResponseWriter method (as http.ResponseController expects). Behind
// one that cannot, every request is answered 500 INTERNAL_ERROR (rather
// than a stream that ends at once and a browser that reconnects every 2 s),
// and the first is logged at error level. A wrapper should also pass on
// SetWriteDeadline (or Unwrap), or WriteTimeout cannot apply.
//
// Nothing the stream sends or logs holds the secret or a signed URL: the
// events are the worker's user-facing build events.
func NewBuildStream(client *sheen.WorkerClient, cfg BuildStreamConfig) (*BuildStream, error) {
	c := hooks.Core(client)
	if c == nil {
		return nil, errors.New("sheenhttp: NewBuildStream: client is nil")
	}
	if cfg.Authorize == nil {
		return nil, errors.New("sheenhttp: NewBuildStream: BuildStreamConfig.Authorize is required")
	}
	if cfg.Heartbeat < 0 || cfg.WriteTimeout < 0 {
		return nil, errors.New("sheenhttp: NewBuildStream: Heartbeat and WriteTimeout must not be negative")
	}
	var follow sheen.FollowOptions
	if cfg.Follow != nil {
		follow = *cfg.Follow
	}
	if follow.AfterEventID != 0 || follow.OnEvent != nil {
		return nil, errors.New("sheenhttp: NewBuildStream: FollowOptions.AfterEventID and OnEvent do not apply to a stream")
	}
	src, err := hooks.StreamSource(client, follow.Source, cfg.Options)
	if err != nil {
		return nil, fmt.Errorf("sheenhttp: NewBuildStream: %w", err)
	}
	return &BuildStream{
		client:            client,
		logger:            c.Logger,
		source:            src,
		authorize:         cfg.Authorize,
		authorizeResource: cfg.AuthorizeResource,
		follow:            follow,
		opts:              slices.Clone(cfg.Options),
		heartbeat:         cmp.Or(cfg.Heartbeat, DefaultStreamHeartbeat),
		writeTimeout:      cmp.Or(cfg.WriteTimeout, DefaultStreamWriteTimeout),
		closing:           make(chan struct{}),
	}, nil
}

// Close ends every stream (browsers reconnect, to another instance of your
// service during a deploy) and refuses new ones with 503, then waits for
// the upstream readers to stop. Register it with
// http.Server.RegisterOnShutdown: Shutdown does not end streams by itself.
func (s *BuildStream) Close() {
	s.closeOnce.Do(func() { close(s.closing) })
	s.hubs.close()
	s.readers.Wait()
}

// Codes of the stream's own refusals, besides the proxy's.
const (
	streamCodeMethod      sheen.ErrorCode = "METHOD_NOT_ALLOWED"
	streamCodeUnavailable sheen.ErrorCode = "EVENTS_UNAVAILABLE"
	streamCodeClosed      sheen.ErrorCode = "SERVICE_UNAVAILABLE"
)

// ServeHTTP implements http.Handler.
func (s *BuildStream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key, cursor, no := s.check(r)
	if no != nil {
		s.refuse(w, r, no)
		return
	}
	h, created := s.hubs.join(key, func() *hub { return s.newHub(key) })
	if h == nil {
		s.refuse(w, r, &proxyRefusal{http.StatusServiceUnavailable, streamCodeClosed, "The build stream is shutting down"})
		return
	}
	defer s.hubs.leave(h)
	if created {
		go s.read(h)
	}
	if no := s.awaitReady(r.Context(), h); no != nil {
		s.refuse(w, r, no)
		return
	}
	s.stream(w, r, h, cursor)
}

// check authorises a request and reads which build it watches, from which
// event on.
func (s *BuildStream) check(r *http.Request) (key hubKey, cursor int64, no *proxyRefusal) {
	if r.Method != http.MethodGet {
		return key, 0, &proxyRefusal{http.StatusMethodNotAllowed, streamCodeMethod, "Build streams answer GET only"}
	}
	select {
	case <-s.closing:
		return key, 0, &proxyRefusal{http.StatusServiceUnavailable, streamCodeClosed, "The build stream is shutting down"}
	default:
	}
	key.buildID = r.PathValue("buildId")
	if key.buildID == "" {
		key.buildID = r.URL.Query().Get("buildId")
	}
	if checkID("buildId", key.buildID) != nil {
		return key, 0, &proxyRefusal{http.StatusBadRequest, codeBadRequest, "The build id is missing or invalid"}
	}
	userID, err := s.authorize(r)
	if err != nil || userID == "" {
		return key, 0, &proxyRefusal{http.StatusUnauthorized, proxyCodeUnauthorized, "Sign in to continue"}
	}
	if checkID("userId", userID) != nil {
		return key, 0, &proxyRefusal{http.StatusInternalServerError, codeInternal, "The signed-in user has an invalid id"}
	}
	key.userID = userID
	if s.authorizeResource != nil {
		if err := s.authorizeResource(r, userID, ResourceBuild, key.buildID); err != nil {
			if errors.Is(err, sheen.ErrNotFound) {
				return key, 0, &proxyRefusal{http.StatusNotFound, proxyCodeNotFound, "No such build"}
			}
			return key, 0, &proxyRefusal{http.StatusForbidden, proxyCodeForbidden, "This build is not yours"}
		}
	}
	cursor, ok := lastEventID(r)
	if !ok {
		return key, 0, &proxyRefusal{http.StatusBadRequest, codeBadRequest, "Last-Event-ID must be a non-negative event id"}
	}
	return key, cursor, nil
}

// lastEventID reads where a browser resumes: its Last-Event-ID header, or
// the lastEventId query parameter; 0 when neither is given.
func lastEventID(r *http.Request) (int64, bool) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("lastEventId")
	}
	if v == "" {
		return 0, true
	}
	id, err := strconv.ParseInt(v, 10, 64)
	return id, err == nil && id >= 0
}

// refuse answers a request the stream will not serve.
func (s *BuildStream) refuse(w http.ResponseWriter, r *http.Request, no *proxyRefusal) {
	logger := s.logger
	if logger.Enabled(r.Context(), slog.LevelDebug) {
		logger.LogAttrs(r.Context(), slog.LevelDebug, "sheenhttp: build stream refused a request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", no.status), slog.String("code", string(no.code)))
	}
	if no.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodGet)
	}
	writeError(w, no.status, no.code, no.message)
}

// newHub makes the hub of key, with its reader ready to start.
func (s *BuildStream) newHub(key hubKey) *hub {
	s.readers.Add(1) // under the hubs' lock, so never after Close's Wait began
	ctx, cancel := context.WithCancel(context.Background())
	return &hub{key: key, ctx: ctx, cancel: cancel, changed: make(chan struct{}), source: s.source}
}

// read runs a hub's upstream reader, Builds.Wait with the stream's options:
// its events go to the hub's log, and its outcome is the final frame. It
// reads through the hub's source, which tells the hub when the source first
// answered.
func (s *BuildStream) read(h *hub) {
	defer s.readers.Done()
	defer h.cancel()
	var lastID int64
	follow := s.follow
	follow.Source = wrapHubSource(h.source, h)
	follow.OnEvent = func(ev sheen.BuildEvent) {
		lastID = ev.ID
		h.append(frame{id: ev.ID, data: encodeEventFrame(ev)})
	}
	res, err := s.client.Builds.Wait(h.ctx, h.key.buildID, h.key.userID, &follow, s.opts...)
	var failed *sheen.BuildFailedError
	switch {
	case h.ctx.Err() != nil: // the last browser left, or Close
		h.finish(nil, h.ctx.Err())
	case res != nil || errors.As(err, &failed):
		h.finish(encodeEndFrame(h.key.buildID, lastID, res, err), nil)
	default: // the source failed for good: the outcome is unknown
		s.logger.LogAttrs(context.Background(), slog.LevelWarn, "sheenhttp: build stream: reading the build's events failed",
			slog.String("build_id", h.key.buildID), slog.String("error", wire.RedactedError(err)))
		s.hubs.forget(h)
		h.finish(nil, err)
	}
}

// awaitReady waits until the hub's source has answered once, and turns a
// failure before that into a refusal.
func (s *BuildStream) awaitReady(ctx context.Context, h *hub) *proxyRefusal {
	for {
		v := h.view(0)
		switch {
		case v.ready:
			return nil
		case v.done:
			return sourceRefusal(v.err)
		}
		select {
		case <-v.changed:
		case <-ctx.Done():
			return &proxyRefusal{http.StatusServiceUnavailable, streamCodeClosed, "The request ended"}
		case <-s.closing:
			return &proxyRefusal{http.StatusServiceUnavailable, streamCodeClosed, "The build stream is shutting down"}
		}
	}
}

// sourceRefusal is the answer to a source that failed before answering.
func sourceRefusal(err error) *proxyRefusal {
	switch {
	case errors.Is(err, sheen.ErrNotFound):
		return &proxyRefusal{http.StatusNotFound, proxyCodeNotFound, "No such build"}
	case errors.Is(err, sheen.ErrRateLimited):
		return &proxyRefusal{http.StatusTooManyRequests, proxyCodeRateLimited, "Too many requests; try again shortly"}
	}
	return &proxyRefusal{http.StatusBadGateway, streamCodeUnavailable, "The build's events cannot be read right now"}
}

// stream writes the hub's events after cursor to one browser, as they come,
// until the build ends, the browser leaves or a write fails.
func (s *BuildStream) stream(w http.ResponseWriter, r *http.Request, h *hub, cursor int64) {
	rc := http.NewResponseController(w)
	if !s.start(r.Context(), rc, w) {
		return
	}
	heartbeat := time.NewTimer(s.heartbeat)
	defer heartbeat.Stop()
	for {
		v := h.view(cursor)
		if v.missed > 0 {
			var ok bool
			if cursor, ok = s.catchUp(r.Context(), rc, w, h, cursor, v.missed); !ok {
				return
			}
			continue
		}
		if len(v.frames) > 0 {
			if !s.write(r.Context(), rc, w, framesData(v.frames)...) {
				return
			}
			cursor = v.frames[len(v.frames)-1].id
			heartbeat.Reset(s.heartbeat)
			continue
		}
		if v.done {
			if v.end != nil {
				s.write(r.Context(), rc, w, v.end)
			}
			return
		}
		select {
		case <-v.changed:
		case <-heartbeat.C:
			if !s.write(r.Context(), rc, w, heartbeatFrame) {
				return
			}
			heartbeat.Reset(s.heartbeat)
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		}
	}
}

var (
	retryFrame     = []byte("retry: " + strconv.FormatInt(streamRetry.Milliseconds(), 10) + "\n\n")
	heartbeatFrame = []byte(": heartbeat\n\n")
)

func framesData(frames []frame) [][]byte {
	out := make([][]byte, len(frames))
	for i, f := range frames {
		out[i] = f.data
	}
	return out
}

// start answers 200 with the stream's headers and its "retry:" line. A
// ResponseWriter that cannot flush (a middleware's wrapper without Flush or
// Unwrap) would hold every event back and end the stream at once, so the
// browser would reconnect every 2 s: it is answered 500 INTERNAL_ERROR
// instead, which EventSource does not retry, and the first time logged at
// error level. false means the stream must not go on.
func (s *BuildStream) start(ctx context.Context, rc *http.ResponseController, w http.ResponseWriter) bool {
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	hd.Set("X-Content-Type-Options", "nosniff")
	armed := s.armWriteDeadline(ctx, rc)
	// Flush before anything is written: it sends the status and headers
	// when it can, and writes nothing when it cannot.
	err := rc.Flush()
	if armed {
		_ = rc.SetWriteDeadline(time.Time{})
	}
	if errors.Is(err, http.ErrNotSupported) {
		s.noFlush.Do(func() {
			s.logger.LogAttrs(ctx, slog.LevelError, "sheenhttp: build stream: the ResponseWriter cannot flush, so no stream can be served (answered 500); "+
				"a middleware that wraps the ResponseWriter must implement http.Flusher or Unwrap() http.ResponseWriter")
		})
		hd.Del("X-Accel-Buffering")
		writeError(w, http.StatusInternalServerError, codeInternal, "The build stream cannot be served here")
		return false
	}
	if err != nil {
		return false // the browser is gone
	}
	return s.write(ctx, rc, w, retryFrame)
}

// armWriteDeadline sets the write deadline of the next write; false means
// none was set. A ResponseWriter without SetWriteDeadline (nor Unwrap) is
// logged once at warn level: the write timeout cannot apply through it.
func (s *BuildStream) armWriteDeadline(ctx context.Context, rc *http.ResponseController) bool {
	err := rc.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	if errors.Is(err, http.ErrNotSupported) {
		s.noDeadline.Do(func() {
			s.logger.LogAttrs(ctx, slog.LevelWarn, "sheenhttp: build stream: the ResponseWriter cannot set write deadlines, so WriteTimeout cannot apply and a stalled browser holds its stream until it leaves; "+
				"a middleware that wraps the ResponseWriter must implement SetWriteDeadline or Unwrap() http.ResponseWriter")
		})
	}
	return err == nil
}

// write sends chunks to the browser and flushes them, within the write
// timeout; false means the browser is gone or too slow, and dropped. The
// deadline is cleared once the write is done, so it bounds writes only: an
// armed deadline that passes while the stream is quiet would end it (an
// HTTP/2 server resets the stream even with nothing being written).
func (s *BuildStream) write(ctx context.Context, rc *http.ResponseController, w http.ResponseWriter, chunks ...[]byte) bool {
	if s.armWriteDeadline(ctx, rc) {
		defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	}
	for _, c := range chunks {
		if _, err := w.Write(c); err != nil {
			return false
		}
	}
	return rc.Flush() == nil
}

// catchUp sends a browser the events after cursor, up to through, that the
// hub no longer holds, read from the source; it returns the new cursor.
func (s *BuildStream) catchUp(ctx context.Context, rc *http.ResponseController, w http.ResponseWriter, h *hub, cursor, through int64) (int64, bool) {
	for cursor < through {
		events, _, err := h.source.FetchEvents(ctx, h.key.buildID, h.key.userID, cursor)
		if err != nil {
			if ctx.Err() == nil {
				s.logger.LogAttrs(ctx, slog.LevelWarn, "sheenhttp: build stream: reading missed events failed",
					slog.String("build_id", h.key.buildID), slog.String("error", wire.RedactedError(err)))
			}
			return cursor, false
		}
		slices.SortStableFunc(events, func(a, b sheen.BuildEvent) int { return cmp.Compare(a.ID, b.ID) })
		var chunks [][]byte
		next := cursor
		for _, ev := range events {
			if ev.ID <= next || ev.ID > through {
				continue
			}
			ev.Progress = wire.ClampProgress(ev.Progress)
			chunks = append(chunks, encodeEventFrame(ev))
			next = ev.ID
		}
		if next == cursor { // the source no longer has them
			return through, true
		}
		if !s.write(ctx, rc, w, chunks...) {
			return cursor, false
		}
		cursor = next
	}
	return cursor, true
}

// streamEvent is a build event as a stream's message carries it.
type streamEvent struct {
	ID              int64           `json:"id"`
	BuildID         string          `json:"buildId"`
	Type            string          `json:"type"`
	Kind            sheen.EventKind `json:"kind"`
	Phase           sheen.Phase     `json:"phase,omitempty"`
	Title           string          `json:"title,omitempty"`
	Description     string          `json:"description,omitempty"`
	Progress        *float64        `json:"progress,omitempty"`
	Finished        bool            `json:"finished,omitempty"`
	PreviewURL      string          `json:"previewUrl,omitempty"`
	Code            string          `json:"code,omitempty"`
	Params          json.RawMessage `json:"params,omitempty"`
	Error           *streamError    `json:"error,omitempty"`
	VersionID       string          `json:"versionId,omitempty"`
	VersionName     string          `json:"versionName,omitempty"`
	DurationSeconds float64         `json:"durationSeconds,omitempty"`
	CreatedAt       *time.Time      `json:"createdAt,omitempty"`
}

// streamError is an event's or a build's failure as a stream carries it.
type streamError struct {
	Code    string          `json:"code,omitempty"`
	Message string          `json:"message"`
	Params  json.RawMessage `json:"params,omitempty"`
}

// streamEnd is the data of a stream's "end" event.
type streamEnd struct {
	Status          string       `json:"status"` // deployed or failed
	BuildID         string       `json:"buildId"`
	PreviewURL      string       `json:"previewUrl,omitempty"`
	VersionID       string       `json:"versionId,omitempty"`
	VersionName     string       `json:"versionName,omitempty"`
	DurationSeconds float64      `json:"durationSeconds,omitempty"`
	MetadataDone    *bool        `json:"metadataDone,omitempty"`
	MetadataError   *streamError `json:"metadataError,omitempty"`
	Error           *streamError `json:"error,omitempty"`
	Phase           sheen.Phase  `json:"phase,omitempty"`
	LastEventID     int64        `json:"lastEventId"`
}

func newStreamError(e *sheen.BuildEventError) *streamError {
	if e == nil {
		return nil
	}
	return &streamError{Code: e.Code, Message: e.Message, Params: e.Params}
}

// encodeEventFrame encodes an event as a message: "id: N\ndata: {json}\n\n".
func encodeEventFrame(ev sheen.BuildEvent) []byte {
	se := streamEvent{
		ID: ev.ID, BuildID: ev.BuildID, Type: ev.Type, Kind: ev.Kind, Phase: ev.Phase,
		Title: ev.Title, Description: ev.Description, Finished: ev.Finished, PreviewURL: ev.PreviewURL,
		Code: ev.Code, Params: ev.Params, Error: newStreamError(ev.Error),
		VersionID: ev.VersionID, VersionName: ev.VersionName, DurationSeconds: ev.Duration.Seconds(),
	}
	if ev.HasProgress {
		p := ev.Progress
		se.Progress = &p
	}
	if !ev.CreatedAt.IsZero() {
		t := ev.CreatedAt.UTC()
		se.CreatedAt = &t
	}
	data, err := json.Marshal(se)
	if err != nil { // parameters that are not JSON after all: leave them out
		se.Params = nil
		if se.Error != nil {
			se.Error.Params = nil
		}
		data, _ = json.Marshal(se)
	}
	b := make([]byte, 0, len(data)+32)
	b = append(b, "id: "...)
	b = strconv.AppendInt(b, ev.ID, 10)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// encodeEndFrame encodes how the build ended as the "end" event.
func encodeEndFrame(buildID string, lastID int64, res *sheen.BuildResult, err error) []byte {
	end := streamEnd{BuildID: buildID, LastEventID: lastID}
	var failed *sheen.BuildFailedError
	switch {
	case res != nil:
		done := res.MetadataDone
		end.Status, end.PreviewURL, end.VersionID, end.VersionName = "deployed", res.PreviewURL, res.VersionID, res.VersionName
		end.DurationSeconds, end.MetadataDone, end.MetadataError = res.Duration.Seconds(), &done, newStreamError(res.MetadataError)
	case errors.As(err, &failed):
		end.Status, end.Phase = "failed", failed.Phase
		end.Error = &streamError{Code: failed.Code, Message: failed.Message, Params: failed.Params}
	default: // not reached: an ended build has a result or a failure
		end.Status = "failed"
		end.Error = &streamError{Message: "the build ended"}
	}
	data, mErr := json.Marshal(end)
	if mErr != nil && end.Error != nil {
		end.Error.Params = nil
		data, _ = json.Marshal(end)
	}
	b := make([]byte, 0, len(data)+24)
	b = append(b, "event: end\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}
