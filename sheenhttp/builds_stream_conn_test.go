package sheenhttp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sheenapps/sheen-go"
)

// pipeListener is an in-memory net.Listener whose connections are
// net.Pipe pairs, so a real http.Server (HTTP/1 or HTTP/2) runs inside a
// synctest bubble, on its fake clock.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial connects a client to the listener.
func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// serveInBubble serves h over an in-memory connection, with HTTP/2 (h2c,
// the same server code as over TLS) or HTTP/1, and returns a client for
// it. Everything is closed when the test ends.
func serveInBubble(t *testing.T, h http.Handler, h2 bool) *http.Client {
	t.Helper()
	var protos http.Protocols
	if h2 {
		protos.SetUnencryptedHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	ln := newPipeListener()
	srv := &http.Server{Handler: h, Protocols: &protos}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	tr := &http.Transport{DialContext: ln.dial, Protocols: &protos}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		_ = srv.Close()
		<-served
	})
	return &http.Client{Transport: tr}
}

// A stream with nothing to say for longer than WriteTimeout (10 s, less
// than the 15 s heartbeat) stays open and gets its heartbeats, over HTTP/1
// and over HTTP/2, whose server resets a stream when an armed write
// deadline passes even though nothing is being written.
func TestBuildStreamQuietOutlivesWriteTimeout(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "http1", true: "http2"}[h2], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				src := newMemSource()
				src.build("b1", alice)
				src.add("b1", evStarted)
				s := newTestStream(t, src, BuildStreamConfig{}) // the defaults: WriteTimeout 10 s, Heartbeat 15 s
				defer s.Close()
				client := serveInBubble(t, s, h2)
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://stream.test/?buildId=b1", nil)
				req.Header.Set("X-User", alice)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if wantMajor := map[bool]int{false: 1, true: 2}[h2]; resp.ProtoMajor != wantMajor || resp.StatusCode != http.StatusOK {
					t.Fatalf("got %s %d, want HTTP/%d 200", resp.Proto, resp.StatusCode, wantMajor)
				}
				start := time.Now()
				sc := bufio.NewScanner(resp.Body)
				heartbeats := 0
				for heartbeats < 2 && sc.Scan() {
					if sc.Text() == ": heartbeat" {
						heartbeats++
					}
				}
				if heartbeats < 2 {
					t.Fatalf("the stream broke after %v with %d heartbeats: %v", time.Since(start), heartbeats, sc.Err())
				}
				if got := time.Since(start); got != 2*DefaultStreamHeartbeat {
					t.Errorf("second heartbeat after %v, want %v", got, 2*DefaultStreamHeartbeat)
				}
			})
		})
	}
}

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// at returns the messages logged at level that contain substr.
func (l *logRecorder) at(level slog.Level, substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.records {
		if r.Level == level && strings.Contains(r.Message, substr) {
			out = append(out, r.Message)
		}
	}
	return out
}

// bareWriter is a logging middleware's ResponseWriter: no Flush, no
// SetWriteDeadline, no Unwrap.
type bareWriter struct{ http.ResponseWriter }

// flushOnlyWriter can flush (through to the server's writer) but not set
// write deadlines.
type flushOnlyWriter struct{ http.ResponseWriter }

func (w flushOnlyWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

// Behind a wrapper that cannot flush, the stream would end at once after
// "retry:" and the browser reconnect every 2 s; it answers 500 instead
// (which EventSource does not retry) and says why in the log, once.
func TestBuildStreamRefusesWriterWithoutFlush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newMemSource()
		src.build("b1", alice)
		src.add("b1", evStarted)
		logs := &logRecorder{}
		s := newTestStream(t, src, BuildStreamConfig{}, sheen.WithLogger(slog.New(logs)))
		defer s.Close()
		wrapped := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.ServeHTTP(bareWriter{w}, r) })
		for i := range 2 {
			w := open(wrapped, alice, "b1", "", newRecorder())
			<-w.done
			w.cancel()
			if got := w.rec.code(); got != http.StatusInternalServerError {
				t.Fatalf("request %d: status %d, want 500; body %q", i, got, w.rec.body())
			}
			var body struct{ Error, Code string }
			if err := json.Unmarshal([]byte(w.rec.body()), &body); err != nil || body.Code != string(codeInternal) {
				t.Errorf("request %d: body %q (%v), want a JSON INTERNAL_ERROR", i, w.rec.body(), err)
			}
			if ct := w.rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("request %d: Content-Type %q", i, ct)
			}
		}
		if got := logs.at(slog.LevelError, "Flush"); len(got) != 1 {
			t.Errorf("error logs about Flush: %q, want one", got)
		}
	})
}

// Behind a wrapper that flushes but cannot set write deadlines, the
// stream works, and the log says once that WriteTimeout cannot apply.
func TestBuildStreamWarnsWithoutWriteDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newMemSource()
		src.build("b1", alice)
		src.add("b1", evStarted)
		logs := &logRecorder{}
		s := newTestStream(t, src, BuildStreamConfig{}, sheen.WithLogger(slog.New(logs)))
		defer s.Close()
		wrapped := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.ServeHTTP(flushOnlyWriter{w}, r) })
		w := open(wrapped, alice, "b1", "", newRecorder())
		synctest.Wait()
		src.add("b1", evCode)
		synctest.Wait()
		if got := messageIDs(w.frames()); !slices.Equal(got, ids(1, 2)) || w.rec.code() != http.StatusOK {
			t.Errorf("status %d, events %v; want 200 and 1, 2", w.rec.code(), got)
		}
		w.cancel()
		<-w.done
		if got := logs.at(slog.LevelWarn, "WriteTimeout"); len(got) != 1 {
			t.Errorf("warn logs about WriteTimeout: %q, want one", got)
		}
		if got := logs.at(slog.LevelError, ""); len(got) != 0 {
			t.Errorf("error logs: %q", got)
		}
	})
}

// all returns every record as text: message and attributes.
func (l *logRecorder) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, r := range l.records {
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool {
			b.WriteString(" " + a.String())
			return true
		})
		b.WriteString("\n")
	}
	return b.String()
}

// A source that fails with a transport error carrying its URL (a signed
// one, for the worker's endpoint) is logged without the URL.
func TestBuildStreamLogsSourceErrorsRedacted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newMemSource()
		src.build("b1", alice)
		src.add("b1", evStarted)
		logs := &logRecorder{}
		s := newTestStream(t, src, BuildStreamConfig{}, sheen.WithLogger(slog.New(logs)))
		defer s.Close()
		w := open(s, alice, "b1", "", newRecorder())
		synctest.Wait()
		src.fail(&url.Error{Op: "Get", URL: "https://worker.test/v1/builds/b1/events?userId=" + alice + "&sig=SIGNED-QUERY", Err: errors.New("connection reset")})
		src.add("b1", evCode)
		synctest.Wait()
		if !w.ended() {
			t.Fatal("the stream stayed open after its source failed")
		}
		got := logs.all()
		if !strings.Contains(got, "connection reset") {
			t.Errorf("the failure is not logged: %q", got)
		}
		if strings.Contains(got, "SIGNED-QUERY") || strings.Contains(got, "worker.test") {
			t.Errorf("the log holds the source's URL: %q", got)
		}
	})
}
