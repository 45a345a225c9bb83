package sheen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// memStore is an object store in memory, for tests in a synctest bubble
// (where a real socket would keep fake time from moving). Like a real
// connection, its bodies fail once the request's context ends.
type memStore struct {
	content []byte
	// stallAfter: the body of request n (0-based) stops after this many
	// bytes and waits for the request's context to end.
	stallAfter map[int]int
	// stallHeaders: request n gets no response until its context ends.
	stallHeaders map[int]bool

	mu     sync.Mutex
	ranges []string
}

func (m *memStore) RoundTrip(r *http.Request) (*http.Response, error) {
	m.mu.Lock()
	n := len(m.ranges)
	m.ranges = append(m.ranges, r.Header.Get("Range"))
	m.mu.Unlock()
	if m.stallHeaders[n] {
		<-r.Context().Done()
		return nil, r.Context().Err()
	}
	start, status, h := 0, http.StatusOK, http.Header{"Etag": {`"mem"`}}
	if rh := r.Header.Get("Range"); rh != "" {
		start, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rh, "bytes="), "-"))
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(m.content)-1, len(m.content)))
	}
	stall, ok := m.stallAfter[n]
	if !ok {
		stall = -1
	}
	return &http.Response{StatusCode: status, Header: h, ContentLength: int64(len(m.content) - start), Request: r,
		Body: &memBody{ctx: r.Context(), data: m.content[start:], stallAt: stall}}, nil
}

func (m *memStore) requested() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.ranges...)
}

type memBody struct {
	ctx     context.Context
	data    []byte
	off     int
	stallAt int // -1: never
}

func (b *memBody) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	end := len(b.data)
	if b.stallAt >= 0 {
		if b.off >= b.stallAt {
			<-b.ctx.Done()
			return 0, b.ctx.Err()
		}
		end = min(end, b.stallAt)
	}
	if b.off >= end {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 16<<10)], b.data[b.off:end])
	b.off += n
	return n, nil
}

func (b *memBody) Close() error { return nil }

// memClient is a client whose downloads go to store, with retries paced by
// the default backoff (fake time in a bubble costs nothing).
func memClient(t *testing.T, store *memStore) *WorkerClient {
	t.Helper()
	c, err := NewWorkerClient(WithBaseURL("https://worker.test"), WithSecret(testSecret),
		WithDownloadHTTPClient(&http.Client{Transport: store}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sleepyWriter takes d over its first write.
type sleepyWriter struct {
	bytes.Buffer
	d     time.Duration
	slept bool
}

func (s *sleepyWriter) Write(b []byte) (int, error) {
	if !s.slept {
		s.slept = true
		time.Sleep(s.d)
	}
	return s.Buffer.Write(b)
}

// A slow writer is not a stalled connection: the watchdog times the network
// only. In the bubble, the writer's sleep moves time past the stall timeout
// at once, so a watchdog left running would fire every time.
func TestDownloadSlowWriterIsNotAStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		content := downloadContent(300_000)
		store := &memStore{content: content}
		c := memClient(t, store)
		w := &sleepyWriter{d: 300 * time.Millisecond}
		res, err := c.Exports.Download(context.Background(), linkTo("https://store.test/a.zip?sig=1"), plainWriter{w}, &DownloadOptions{StallTimeout: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if sum(w.Bytes()) != sum(content) || res.Attempts != 1 {
			t.Fatalf("result %+v", res)
		}
	})
}

// A body that stops mid-way is given up after the stall timeout and resumed
// from the last byte written.
func TestDownloadStalledBodyResumes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		content := downloadContent(500_000)
		store := &memStore{content: content, stallAfter: map[int]int{0: 123_456}}
		c := memClient(t, store)
		var buf bytes.Buffer
		start := time.Now()
		res, err := c.Exports.Download(context.Background(), linkTo("https://store.test/a.zip?sig=1"), &buf, &DownloadOptions{StallTimeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if sum(buf.Bytes()) != sum(content) || res.Resumes != 1 {
			t.Fatalf("result %+v", res)
		}
		if got := store.requested(); len(got) != 2 || got[1] != "bytes=123456-" {
			t.Errorf("requests %q", got)
		}
		// Fake time: the stall timeout, then one backoff step.
		if took := time.Since(start); took < time.Minute || took > time.Minute+DefaultDownloadBackoffBase {
			t.Errorf("the resume came after %s", took)
		}
	})
}

// A response whose headers never come is a stall too.
func TestDownloadStalledHeadersResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		content := downloadContent(100_000)
		store := &memStore{content: content, stallHeaders: map[int]bool{0: true}}
		c := memClient(t, store)
		var buf bytes.Buffer
		res, err := c.Exports.Download(context.Background(), linkTo("https://store.test/a.zip?sig=1"), &buf, &DownloadOptions{StallTimeout: time.Second})
		if err != nil || sum(buf.Bytes()) != sum(content) || res.Attempts != 2 {
			t.Fatalf("got %+v, %v", res, err)
		}
	})
}

// A stall that outlasts the budget is a truncated download, and says it
// stalled.
func TestDownloadStallIsTruncation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &memStore{content: downloadContent(100_000), stallAfter: map[int]int{0: 1000}}
		c := memClient(t, store)
		_, err := c.Exports.Download(context.Background(), linkTo("https://store.test/a.zip?sig=1"), io.Discard, &DownloadOptions{StallTimeout: time.Second, Retries: -1})
		var de *DownloadError
		if !errors.As(err, &de) || !errors.Is(err, ErrTruncated) || !errors.Is(err, errStalled) || de.Written != 1000 {
			t.Fatalf("got %v", err)
		}
	})
}

// WithCallTimeout bounds a whole download, stalls and resumes included;
// without a stall timeout, only it ends a download that hangs.
func TestDownloadCallTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &memStore{content: downloadContent(100_000), stallHeaders: map[int]bool{0: true}}
		c := memClient(t, store)
		start := time.Now()
		res, err := c.Exports.Download(context.Background(), linkTo("https://store.test/a.zip?sig=1"), io.Discard, &DownloadOptions{StallTimeout: -1}, WithCallTimeout(time.Hour))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want the call's deadline", err)
		}
		if d := time.Since(start); d != time.Hour {
			t.Errorf("gave up after %s, want the call timeout of 1h", d)
		}
		if res == nil || res.Attempts != 1 {
			t.Errorf("result %+v", res)
		}
	})
}

// A store (or a CDN in front of it) that answers 200 with a page of HTML
// has not sent the archive: the download fails as an unusable answer after
// its retries, and nothing is written.
func TestDownloadRefusesAnHTMLPage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<html>down for maintenance</html>")
	}))
	defer srv.Close()
	c := newTestClient(t, http.DefaultTransport, WithDownloadBackoff(time.Millisecond, time.Millisecond))
	var buf bytes.Buffer
	_, err := c.Exports.Download(context.Background(), linkTo(srv.URL+"/exports/p1.zip?"+exportsSecretQuery), &buf, &DownloadOptions{Retries: 2})
	var de *DownloadError
	if !errors.As(err, &de) || !errors.Is(err, ErrInvalidResponse) || buf.Len() != 0 {
		t.Fatalf("err %v, %d bytes written; want a *DownloadError matching ErrInvalidResponse and nothing written", err, buf.Len())
	}
}
