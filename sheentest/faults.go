package sheentest

import (
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Fault is a misbehaviour the server plays instead of (or on top of) its
// normal answer, for the calls of a route it names.
type Fault struct {
	// Route is the route pattern it applies to: a sheen.Route* constant
	// such as sheen.RouteBalance ("GET /v1/billing/balance/{userId}"), or
	// RouteStore for downloads; empty means every route.
	Route string
	// Calls are the 1-based call numbers of the route it applies to
	// (counted from when the fault was added); empty means every call.
	Calls []int

	// Delay waits before answering (or before the other misbehaviour).
	Delay time.Duration
	// Status, when set, is answered instead of the route, with Body (sent
	// as-is: HTML, empty, any JSON) and Header.
	Status int
	Body   string
	Header http.Header
	// ResetBeforeResponse drops the connection without answering.
	ResetBeforeResponse bool
	// ResetAfterBytes, when positive, lets the normal answer start and drops
	// the connection after that many body bytes (downloads included).
	ResetAfterBytes int64
	// TruncateAfterBytes, when positive, ends the normal answer cleanly
	// after that many body bytes although Content-Length promised more.
	TruncateAfterBytes int64
}

type faultRule struct {
	Fault
	seen int // calls of the route seen since the fault was added
}

// AddFault installs a fault. Faults are checked in the order added; the
// first that applies to a call wins.
func (s *Server) AddFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &faultRule{Fault: f})
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// matchFault counts the call against every fault of its route and returns
// the first that applies.
func (s *Server) matchFault(pattern string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	var hit *Fault
	for _, f := range s.faults {
		if f.Route != "" && f.Route != pattern {
			continue
		}
		f.seen++
		if hit == nil && (len(f.Calls) == 0 || slices.Contains(f.Calls, f.seen)) {
			hit = &f.Fault
		}
	}
	return hit
}

// applyFault plays the fault for this call, if any. It returns true when
// the fault answered the request (the pipeline stops); byte-level faults
// wrap w and return false.
func (s *Server) applyFault(w *recorder, r *http.Request, pattern string) bool {
	f := s.matchFault(pattern)
	if f == nil {
		return false
	}
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return true
		case <-s.stop:
			return true
		}
	}
	if f.ResetBeforeResponse {
		panic(http.ErrAbortHandler)
	}
	if f.Status != 0 {
		for k, vs := range f.Header {
			w.Header()[k] = vs
		}
		if w.Header().Get("Content-Type") == "" && f.Body != "" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(f.Body)))
		w.WriteHeader(f.Status)
		_, _ = w.Write([]byte(f.Body))
		return true
	}
	if f.ResetAfterBytes > 0 {
		w.ResponseWriter = &cutWriter{ResponseWriter: w.ResponseWriter, left: f.ResetAfterBytes, reset: true}
	} else if f.TruncateAfterBytes > 0 {
		w.ResponseWriter = &cutWriter{ResponseWriter: w.ResponseWriter, left: f.TruncateAfterBytes}
	}
	return false
}

// cutWriter stops a response body after a number of bytes: by dropping the
// connection (reset) or by writing nothing more (a short body that the
// server then closes, since Content-Length promised more).
type cutWriter struct {
	http.ResponseWriter
	left  int64
	reset bool
	cut   bool
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if c.cut {
		return len(p), nil
	}
	if int64(len(p)) <= c.left {
		c.left -= int64(len(p))
		return c.ResponseWriter.Write(p)
	}
	n, err := c.ResponseWriter.Write(p[:c.left])
	c.left = 0
	c.cut = true
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	if c.reset {
		panic(http.ErrAbortHandler)
	}
	if err != nil {
		return n, err
	}
	return len(p), nil
}

func (c *cutWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
