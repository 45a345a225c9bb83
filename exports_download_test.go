package sheen

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
)

// downloadStore is an httptest object store serving one archive. Links
// carry ?token=...; tokens not in valid get 403. Every request is checked
// for anything of the worker's (x-sheen-* headers, the secret).
type downloadStore struct {
	t       *testing.T
	content []byte
	srv     *httptest.Server

	mu    sync.Mutex
	valid map[string]bool
	reqs  []storeReq
	// cut says, per request (0-based), after how many body bytes the
	// connection breaks; missing or negative: never.
	cut map[int]int64
	// truncateAt: every response stops at this absolute offset (with the
	// full Content-Length announced); 0: never.
	truncateAt int64
	// ignoreRange: always answer 200 with the whole archive.
	ignoreRange bool
	// stallFirst: the first response stops sending after this many bytes
	// and waits until the client goes away; 0: never.
	stallFirst int64
	// status, when set, answers every request with it.
	status int
	// chunked: no Content-Length.
	chunked bool
	// dropEvery: every response breaks after this many body bytes; 0: never.
	dropEvery int64
	// goneAfter: requests from this index on (0-based) answer 410 Gone, a
	// final failure: a bound for tests of downloads that should end on
	// their own; 0: never.
	goneAfter int
}

type storeReq struct {
	rangeHdr, ifRange, token string
}

func newDownloadStore(t *testing.T, content []byte) *downloadStore {
	s := &downloadStore{t: t, content: content, valid: map[string]bool{"tok1": true}, cut: map[int]int64{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// url is a link for token, with a query that must never show in errors.
func (s *downloadStore) url(token string) string {
	return s.srv.URL + "/exports/p1.zip?token=" + token + "&" + exportsSecretQuery
}

func (s *downloadStore) requests() []storeReq {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]storeReq(nil), s.reqs...)
}

func (s *downloadStore) serve(w http.ResponseWriter, r *http.Request) {
	for k, vs := range r.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-sheen-") {
			s.t.Errorf("object store got header %s", k)
		}
		for _, v := range vs {
			if strings.Contains(v, testSecret) {
				s.t.Errorf("object store got the secret in %s", k)
			}
		}
	}
	token := r.URL.Query().Get("token")
	s.mu.Lock()
	n := len(s.reqs)
	s.reqs = append(s.reqs, storeReq{r.Header.Get("Range"), r.Header.Get("If-Range"), token})
	valid, cut, hasCut := s.valid[token], s.cut[n], false
	if _, ok := s.cut[n]; ok && cut >= 0 {
		hasCut = true
	}
	s.mu.Unlock()
	if s.goneAfter > 0 && n >= s.goneAfter {
		http.Error(w, "gone", http.StatusGone)
		return
	}
	if s.status != 0 {
		w.Header().Set("Retry-After", "0")
		http.Error(w, "nope", s.status)
		return
	}
	if !valid {
		http.Error(w, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>", http.StatusForbidden)
		return
	}
	size := int64(len(s.content))
	start := int64(0)
	status := http.StatusOK
	if rh := r.Header.Get("Range"); rh != "" && !s.ignoreRange {
		v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(rh, "bytes="), "-"), 10, 64)
		if err != nil || v >= size {
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		start, status = v, http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, size-1, size))
	}
	w.Header().Set("ETag", `"v1-etag"`)
	if !s.chunked {
		w.Header().Set("Content-Length", strconv.FormatInt(size-start, 10))
	}
	w.WriteHeader(status)
	end := size
	if s.truncateAt > 0 && s.truncateAt < end {
		end = max(s.truncateAt, start)
	}
	if hasCut {
		end = min(end, start+cut)
	}
	if s.dropEvery > 0 {
		end = min(end, start+s.dropEvery)
	}
	stall := n == 0 && s.stallFirst > 0
	if stall {
		end = min(end, s.stallFirst)
	}
	w.Write(s.content[start:end])
	if end == size {
		return
	}
	w.(http.Flusher).Flush()
	if stall {
		<-r.Context().Done()
	}
	panic(http.ErrAbortHandler) // break the connection mid-body
}

// downloadWorker makes a client whose worker (httpmock) hands out links to
// store with tokens tok1, tok2, ... and counts the requests. Downloads use
// a plain client to the store, and back off for a millisecond or two
// between attempts.
func downloadWorker(t *testing.T, store *downloadStore, opts ...Option) (*WorkerClient, *atomic.Int32) {
	t.Helper()
	base := []Option{WithDownloadHTTPClient(&http.Client{}), WithDownloadBackoff(time.Millisecond, 2*time.Millisecond)}
	c, mock := newMockClient(t, append(base, opts...)...)
	var calls atomic.Int32
	mock.RegisterResponder("GET", exportsProjectURL, func(r *http.Request) (*http.Response, error) {
		n := calls.Add(1)
		return httpmock.NewStringResponse(200, fmt.Sprintf(`{"success":true,"downloadUrl":%q,"expiresAt":%q,"filename":"p1-latest.zip","size":1}`,
			store.url(fmt.Sprintf("tok%d", n)), iso(time.Now().Add(24*time.Hour)))), nil
	})
	return c, &calls
}

// downloadContent is n deterministic pseudo-random bytes.
func downloadContent(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sum(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

// resettableBuffer is a bytes.Buffer (it has Reset) that counts resets.
type resettableBuffer struct {
	bytes.Buffer
	resets int
}

func (b *resettableBuffer) Reset() { b.resets++; b.Buffer.Reset() }

// plainWriter hides everything but Write, so it cannot be reset.
type plainWriter struct{ w io.Writer }

func (p plainWriter) Write(b []byte) (int, error) { return p.w.Write(b) }

func downloadLinkFor(t *testing.T, c *WorkerClient) DownloadLink {
	t.Helper()
	l, err := c.Exports.ProjectLink(context.Background(), "p1", "u1")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func checkNoQuery(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range []string{"token=", "tok1", "X-Amz-Signature", "deadbeef"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error shows the link's query (%q): %v", s, err)
		}
	}
}

func TestDownloadWholeArchive(t *testing.T) {
	content := downloadContent(1<<20 + 17)
	store := newDownloadStore(t, content)
	c, _ := downloadWorker(t, store)
	var buf bytes.Buffer
	var seen []int64
	var totals []int64
	res, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), &buf, &DownloadOptions{Progress: func(n, total int64) {
		seen = append(seen, n)
		totals = append(totals, total)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if sum(buf.Bytes()) != sum(content) || res.Written != int64(len(content)) || res.Total != int64(len(content)) {
		t.Fatalf("wrote %d bytes (total %d), sha256 match %v", res.Written, res.Total, sum(buf.Bytes()) == sum(content))
	}
	if res.Attempts != 1 || res.Resumes != 0 || res.Restarts != 0 || res.LinkRefreshed {
		t.Errorf("result %+v", res)
	}
	if seen[0] != 0 || seen[len(seen)-1] != int64(len(content)) || totals[len(totals)-1] != int64(len(content)) {
		t.Errorf("progress from %d to %d of %d", seen[0], seen[len(seen)-1], totals[len(totals)-1])
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Fatalf("progress went back: %v", seen)
		}
	}
	if res.Format != FormatUnknown {
		t.Errorf("random bytes detected as %s", res.Format)
	}
	n, err := written(c.Exports.Download(context.Background(), downloadLinkFor(t, c), io.Discard, nil))
	if err != nil || n != int64(len(content)) {
		t.Errorf("Download: %d, %v", n, err)
	}
}

func TestDownloadResumesAfterBreak(t *testing.T) {
	content := downloadContent(3<<20 + 5)
	store := newDownloadStore(t, content)
	store.cut[0] = 1<<20 + 3
	store.cut[1] = 100_000
	c, workerCalls := downloadWorker(t, store)
	var buf bytes.Buffer
	res, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), plainWriter{&buf}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum(buf.Bytes()) != sum(content) {
		t.Fatalf("sha256 differs: wrote %d of %d bytes", buf.Len(), len(content))
	}
	reqs := store.requests()
	want := []string{"", "bytes=1048579-", "bytes=1148579-"}
	if len(reqs) != 3 {
		t.Fatalf("requests %+v", reqs)
	}
	for i, r := range reqs {
		if r.rangeHdr != want[i] {
			t.Errorf("request %d Range %q, want %q", i, r.rangeHdr, want[i])
		}
		if i > 0 && r.ifRange != `"v1-etag"` {
			t.Errorf("request %d If-Range %q", i, r.ifRange)
		}
	}
	if res.Resumes != 2 || res.Restarts != 0 || workerCalls.Load() != 1 {
		t.Errorf("result %+v, worker calls %d", res, workerCalls.Load())
	}
}

func TestDownloadChunkedBreakResumes(t *testing.T) {
	content := downloadContent(600_000)
	store := newDownloadStore(t, content)
	store.chunked = true
	store.cut[0] = 250_000
	c, _ := downloadWorker(t, store)
	var buf bytes.Buffer
	res, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), &buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum(buf.Bytes()) != sum(content) || res.Resumes != 1 {
		t.Fatalf("wrote %d of %d bytes, result %+v", buf.Len(), len(content), res)
	}
}

func TestDownloadRangeIgnored(t *testing.T) {
	content := downloadContent(2<<20 + 9)
	setup := func(t *testing.T) (*WorkerClient, DownloadLink, *downloadStore) {
		store := newDownloadStore(t, content)
		store.ignoreRange = true
		store.cut[0] = 700_001
		c, _ := downloadWorker(t, store)
		return c, downloadLinkFor(t, c), store
	}

	t.Run("resettable buffer restarts", func(t *testing.T) {
		c, link, _ := setup(t)
		var buf resettableBuffer
		res, err := c.Exports.Download(context.Background(), link, &buf, nil)
		if err != nil {
			t.Fatal(err)
		}
		if sum(buf.Bytes()) != sum(content) || buf.resets != 1 || res.Restarts != 1 || res.Written != int64(len(content)) {
			t.Fatalf("wrote %d bytes, %d resets, result %+v", buf.Len(), buf.resets, res)
		}
	})

	t.Run("hash restarts", func(t *testing.T) {
		c, link, _ := setup(t)
		h := sha256.New()
		if _, err := c.Exports.Download(context.Background(), link, h, nil); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprintf("%x", h.Sum(nil)) != sum(content) {
			t.Fatal("sha256 of the download differs")
		}
	})

	t.Run("file restarts from where it stood", func(t *testing.T) {
		c, link, _ := setup(t)
		f, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		f.WriteString("HEADER")
		if _, err := c.Exports.Download(context.Background(), link, f, nil); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(f.Name())
		if string(got[:6]) != "HEADER" || sum(got[6:]) != sum(content) {
			t.Fatalf("file is %d bytes; header kept %v", len(got), string(got[:6]) == "HEADER")
		}
	})

	t.Run("plain writer fails", func(t *testing.T) {
		c, link, _ := setup(t)
		var buf bytes.Buffer
		n, err := written(c.Exports.Download(context.Background(), link, plainWriter{&buf}, nil))
		if !errors.Is(err, ErrRangeIgnored) {
			t.Fatalf("got %v, want ErrRangeIgnored", err)
		}
		var de *DownloadError
		if !errors.As(err, &de) || de.Written != 700_001 || n != 700_001 || de.Expected != int64(len(content)) {
			t.Errorf("error %+v, n %d", de, n)
		}
		if !bytes.Equal(buf.Bytes(), content[:700_001]) {
			t.Error("what was written is not the archive's start")
		}
		checkNoQuery(t, err)
	})
}

func TestDownloadExpiredLinkRefreshesOnce(t *testing.T) {
	content := downloadContent(1<<20 + 1)

	t.Run("expired before the start", func(t *testing.T) {
		store := newDownloadStore(t, content)
		c, workerCalls := downloadWorker(t, store)
		link := downloadLinkFor(t, c)
		store.mu.Lock()
		store.valid = map[string]bool{"tok2": true}
		store.mu.Unlock()
		var buf bytes.Buffer
		var resp Response
		res, err := c.Exports.Download(context.Background(), link, &buf, nil, WithResponse(&resp), WithCorrelationID("dl-1"))
		if err != nil {
			t.Fatal(err)
		}
		if sum(buf.Bytes()) != sum(content) || !res.LinkRefreshed || !strings.Contains(res.Link.SignedURL(), "token=tok2") {
			t.Fatalf("result %+v", res)
		}
		// The call options went to the worker call that refreshed the link.
		if resp.StatusCode != 200 || resp.Attempts != 1 || resp.CorrelationID != "dl-1" || resp.Cached {
			t.Errorf("Response of the refresh: %+v", resp)
		}
		if workerCalls.Load() != 2 {
			t.Errorf("worker saw %d requests, want 2", workerCalls.Load())
		}
		// The fresh link replaced the stale one in the cache.
		if l := downloadLinkFor(t, c); !strings.Contains(l.SignedURL(), "token=tok2") || workerCalls.Load() != 2 {
			t.Errorf("cache holds %s after %d requests", l, workerCalls.Load())
		}
	})

	t.Run("expired mid-way", func(t *testing.T) {
		store := newDownloadStore(t, content)
		store.cut[0] = 300_000
		c, _ := downloadWorker(t, store)
		var buf bytes.Buffer
		link := downloadLinkFor(t, c)
		res, err := c.Exports.Download(context.Background(), link, plainWriter{&buf}, &DownloadOptions{Progress: func(n, _ int64) {
			if n == 300_000 { // the link expires as the connection breaks
				store.mu.Lock()
				store.valid = map[string]bool{"tok2": true}
				store.mu.Unlock()
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		reqs := store.requests()
		if sum(buf.Bytes()) != sum(content) || len(reqs) != 3 || reqs[2].token != "tok2" || reqs[2].rangeHdr != "bytes=300000-" {
			t.Fatalf("requests %+v, result %+v", reqs, res)
		}
		if link.SignedURL() != store.url("tok1") {
			t.Error("the caller's link was changed")
		}
	})

	t.Run("still refused after a refresh", func(t *testing.T) {
		store := newDownloadStore(t, content)
		store.valid = map[string]bool{}
		c, workerCalls := downloadWorker(t, store)
		var buf bytes.Buffer
		_, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), &buf, nil)
		var de *DownloadError
		if !errors.Is(err, ErrLinkExpired) || !errors.As(err, &de) || de.StatusCode != 403 {
			t.Fatalf("got %v", err)
		}
		if workerCalls.Load() != 2 || len(store.requests()) != 2 || buf.Len() != 0 {
			t.Errorf("worker %d, store %d requests, %d bytes written", workerCalls.Load(), len(store.requests()), buf.Len())
		}
		checkNoQuery(t, err)
	})

	t.Run("a caller's own link is not refreshed", func(t *testing.T) {
		store := newDownloadStore(t, content)
		c, workerCalls := downloadWorker(t, store)
		_, err := c.Exports.Download(context.Background(), linkTo(store.url("nope")), io.Discard, nil)
		if !errors.Is(err, ErrLinkExpired) || workerCalls.Load() != 0 {
			t.Fatalf("got %v after %d worker calls", err, workerCalls.Load())
		}
	})

	t.Run("refresh fails with the worker's error", func(t *testing.T) {
		store := newDownloadStore(t, content)
		store.valid = map[string]bool{}
		c, mock := newMockClient(t, WithDownloadHTTPClient(&http.Client{}))
		var n atomic.Int32
		mock.RegisterResponder("GET", exportsProjectURL, func(r *http.Request) (*http.Response, error) {
			if n.Add(1) == 1 {
				return httpmock.NewStringResponse(200, fmt.Sprintf(`{"success":true,"downloadUrl":%q,"expiresAt":%q}`, store.url("tok1"), iso(time.Now().Add(time.Hour*24)))), nil
			}
			return httpmock.NewStringResponse(404, `{"error":"gone","canRebuild":true,"rebuildUrl":"/v1/versions/v9/rebuild"}`), nil
		})
		_, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), io.Discard, nil)
		var am *ArtifactMissingError
		var de *DownloadError
		if !errors.As(err, &am) || !errors.As(err, &de) || !am.CanRebuild {
			t.Fatalf("got %T %v", err, err)
		}
	})
}

func TestDownloadTruncated(t *testing.T) {
	content := downloadContent(1 << 20)

	t.Run("every response stops at the same byte", func(t *testing.T) {
		store := newDownloadStore(t, content)
		store.truncateAt = 400_000
		c, _ := downloadWorker(t, store)
		var buf bytes.Buffer
		n, err := written(c.Exports.Download(context.Background(), downloadLinkFor(t, c), &buf, &DownloadOptions{Retries: 3}))
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("got %v, want ErrTruncated", err)
		}
		// The first attempt brings 400000 bytes; then 1 + 3 attempts in a
		// row bring nothing.
		var de *DownloadError
		if !errors.As(err, &de) || de.Written != 400_000 || de.Expected != 1<<20 || de.Attempts != 5 || n != 400_000 {
			t.Errorf("error %+v, n %d", de, n)
		}
		if sum(buf.Bytes()) != sum(content[:400_000]) {
			t.Error("written bytes are not the archive's start")
		}
		checkNoQuery(t, err)
	})

	t.Run("retries off", func(t *testing.T) {
		store := newDownloadStore(t, content)
		store.cut[0] = 10
		c, _ := downloadWorker(t, store)
		_, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), io.Discard, &DownloadOptions{Retries: -1})
		if !errors.Is(err, ErrTruncated) || len(store.requests()) != 1 {
			t.Fatalf("got %v after %d requests", err, len(store.requests()))
		}
	})

	t.Run("to a file leaves nothing behind", func(t *testing.T) {
		store := newDownloadStore(t, content)
		store.truncateAt = 1000
		c, _ := downloadWorker(t, store)
		dir := t.TempDir()
		_, err := c.Exports.DownloadToFile(context.Background(), downloadLinkFor(t, c), filepath.Join(dir, "p1.zip"), &DownloadOptions{Retries: 1})
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("got %v", err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("left %v in the directory", entries)
		}
	})
}

// Over a real connection: the store sends part of the archive and then
// nothing; the download resumes after the stall timeout. (Under load the
// stall may be seen before every byte sent arrived, so the resume offset is
// not fixed here; TestDownloadStalledBodyResumes checks it in a bubble.)
func TestDownloadStallResumes(t *testing.T) {
	content := downloadContent(500_000)
	store := newDownloadStore(t, content)
	store.stallFirst = 123_456
	c, _ := downloadWorker(t, store)
	var buf bytes.Buffer
	res, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), &buf, &DownloadOptions{StallTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if sum(buf.Bytes()) != sum(content) || res.Resumes < 1 || store.requests()[1].rangeHdr == "" {
		t.Fatalf("result %+v, requests %+v", res, store.requests())
	}
}

func TestDownloadMaxSize(t *testing.T) {
	content := downloadContent(100_000)
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			store := newDownloadStore(t, content)
			store.chunked = chunked
			c, _ := downloadWorker(t, store)
			var buf bytes.Buffer
			n, err := written(c.Exports.Download(context.Background(), downloadLinkFor(t, c), &buf, &DownloadOptions{MaxSize: 50_000}))
			if !errors.Is(err, ErrPayloadTooLarge) {
				t.Fatalf("got %v", err)
			}
			if n > 50_000 || int64(buf.Len()) != n || (!chunked && n != 0) {
				t.Errorf("wrote %d bytes", n)
			}
			if len(store.requests()) != 1 {
				t.Errorf("%d requests: an oversized archive was retried", len(store.requests()))
			}
		})
	}
	store := newDownloadStore(t, content)
	c, _ := downloadWorker(t, store)
	if n, err := written(c.Exports.Download(context.Background(), downloadLinkFor(t, c), io.Discard, &DownloadOptions{MaxSize: 100_000})); err != nil || n != 100_000 {
		t.Errorf("an archive of exactly the limit: %d, %v", n, err)
	}
}

func TestDownloadStoreErrors(t *testing.T) {
	content := downloadContent(1000)
	t.Run("404", func(t *testing.T) {
		store := newDownloadStore(t, content)
		store.status = 404
		c, _ := downloadWorker(t, store)
		_, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), io.Discard, nil)
		var de *DownloadError
		if !errors.Is(err, ErrNotFound) || !errors.As(err, &de) || de.StatusCode != 404 || len(store.requests()) != 1 {
			t.Fatalf("got %v after %d requests", err, len(store.requests()))
		}
	})
	t.Run("503 retried then given up", func(t *testing.T) {
		store := newDownloadStore(t, content)
		store.status = 503
		c, _ := downloadWorker(t, store)
		_, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), io.Discard, &DownloadOptions{Retries: 2})
		var de *DownloadError
		if !errors.As(err, &de) || de.StatusCode != 503 || len(store.requests()) != 3 {
			t.Fatalf("got %v after %d requests", err, len(store.requests()))
		}
	})
	t.Run("nothing listening", func(t *testing.T) {
		store := newDownloadStore(t, content)
		c, _ := downloadWorker(t, store)
		link := downloadLinkFor(t, c)
		store.srv.Close()
		_, err := c.Exports.Download(context.Background(), link, io.Discard, &DownloadOptions{Retries: 1})
		var de *DownloadError
		if !errors.As(err, &de) || de.Attempts != 2 {
			t.Fatalf("got %v", err)
		}
		checkNoQuery(t, err)
	})
	t.Run("write error is final", func(t *testing.T) {
		store := newDownloadStore(t, content)
		c, _ := downloadWorker(t, store)
		boom := errors.New("disk full")
		_, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), failingWriter{boom}, nil)
		if !errors.Is(err, boom) || len(store.requests()) != 1 {
			t.Fatalf("got %v after %d requests", err, len(store.requests()))
		}
	})
}

type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }

func TestDownloadCancelled(t *testing.T) {
	content := downloadContent(4 << 20)
	store := newDownloadStore(t, content)
	c, _ := downloadWorker(t, store)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, err := written(c.Exports.Download(ctx, downloadLinkFor(t, c), io.Discard, &DownloadOptions{Progress: func(n, _ int64) {
		if n > 1<<20 {
			cancel()
		}
	}}))
	if !errors.Is(err, context.Canceled) || n >= int64(len(content)) {
		t.Fatalf("got %d, %v", n, err)
	}
	if len(store.requests()) != 1 {
		t.Errorf("a cancelled download was resumed: %d requests", len(store.requests()))
	}
}

func TestDownloadArgumentErrors(t *testing.T) {
	c, _ := newMockClient(t)
	var ve *ValidationError
	for name, call := range map[string]func() error{
		"zero link": func() error {
			_, err := c.Exports.Download(context.Background(), DownloadLink{}, io.Discard, nil)
			return err
		},
		"zero link to a file": func() error {
			_, err := c.Exports.DownloadToFile(context.Background(), DownloadLink{}, filepath.Join(t.TempDir(), "a.zip"), nil)
			return err
		},
		"zero link but a filename": func() error {
			_, err := c.Exports.Download(context.Background(), DownloadLink{Filename: "a.zip", Size: 3}, io.Discard, nil)
			return err
		},
		"nil writer": func() error {
			_, err := c.Exports.Download(context.Background(), linkTo("https://s.test/a"), nil, nil)
			return err
		},
		"nil context": func() error {
			var nilCtx context.Context
			_, err := c.Exports.Download(nilCtx, linkTo("https://s.test/a"), io.Discard, nil)
			return err
		},
		"bad url": func() error {
			_, err := c.Exports.Download(context.Background(), linkTo("ftp://s.test/a?sig=s3cr3t"), io.Discard, nil)
			return err
		},
		"empty path": func() error {
			_, err := c.Exports.DownloadToFile(context.Background(), linkTo("https://s.test/a"), "", nil)
			return err
		},
	} {
		err := call()
		if !errors.As(err, &ve) {
			t.Errorf("%s: got %v", name, err)
		} else if strings.HasPrefix(name, "zero link") && ve.Field != "link" {
			t.Errorf("%s: refused for %q, want the link", name, ve.Field)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: error shows the query: %v", name, err)
		}
	}
}

// The default download client is the caller's transport without the
// signer: the store's request carries nothing of the worker's.
func TestDownloadDefaultClientIsPlain(t *testing.T) {
	c, mock := newMockClient(t)
	mock.RegisterResponder("GET", exportsProjectURL, httpmock.NewStringResponder(200,
		`{"success":true,"downloadUrl":"https://store.test/a.zip?sig=s3cr3t","expiresAt":"2099-01-01T00:00:00Z"}`))
	var storeHeader http.Header
	mock.RegisterResponder("GET", "https://store.test/a.zip", func(r *http.Request) (*http.Response, error) {
		storeHeader = r.Header.Clone()
		return httpmock.NewStringResponse(200, "PK\x03\x04rest-of-zip"), nil
	})
	var logged bytes.Buffer
	c.core.logger = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))
	res, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Format != FormatZip {
		t.Errorf("format %s", res.Format)
	}
	for k := range storeHeader {
		if strings.HasPrefix(strings.ToLower(k), "x-sheen-") || strings.EqualFold(k, "Idempotency-Key") {
			t.Errorf("store got %s", k)
		}
	}
	if storeHeader.Get("Accept-Encoding") != "identity" {
		t.Errorf("Accept-Encoding %q", storeHeader.Get("Accept-Encoding"))
	}
	if !strings.Contains(logged.String(), "sheen: download attempt") || strings.Contains(logged.String(), "s3cr3t") {
		t.Errorf("log: %s", logged.String())
	}
}

func TestDownloadParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 10-99/100", 10, 100, true},
		{"bytes 0-0/1", 0, 1, true},
		{"bytes 10-99/*", 10, -1, true},
		{"bytes 10-99/99", 0, 0, false},
		{"bytes 10-9/100", 0, 0, false},
		{"bytes */100", 0, 0, false},
		{"items 1-2/3", 0, 0, false},
		{"bytes -1-5/10", 0, 0, false},
		{"", 0, 0, false},
	} {
		start, total, ok := parseContentRange(tc.in)
		if ok != tc.ok || (ok && (start != tc.start || total != tc.total)) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v", tc.in, start, total, ok)
		}
	}
}

func FuzzDownloadParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 10-99/100", "bytes 0-0/*", "bytes 5-1/2", "bytes 1-2/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, total, ok := parseContentRange(s)
		if ok && (start < 0 || (total != -1 && total <= start)) {
			t.Errorf("%q gave start %d total %d", s, start, total)
		}
	})
}

// An object store may redirect a download to another host (a regional
// endpoint, a CDN). That host must not learn the signed link: Go's client
// would send it whole, query included, as the Referer.
func TestDownloadRedirectDoesNotLeakTheLink(t *testing.T) {
	content := downloadContent(4096)
	var referers []string
	var mu sync.Mutex
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		referers = append(referers, r.Header.Get("Referer"))
		mu.Unlock()
		w.Write(content)
	}))
	t.Cleanup(other.Close)
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/elsewhere/a.zip", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(store.Close)
	link := linkTo(store.URL + "/exports/p1.zip?" + exportsSecretQuery)

	for name, opts := range map[string][]Option{
		"default client":         {WithHTTPClient(&http.Client{})},
		"WithDownloadHTTPClient": {WithDownloadHTTPClient(&http.Client{})},
	} {
		t.Run(name, func(t *testing.T) {
			mu.Lock()
			referers = nil
			mu.Unlock()
			c, err := NewWorkerClient(append([]Option{WithBaseURL("https://worker.test"), WithSecret(testSecret)}, opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if _, err := c.Exports.Download(context.Background(), link, &buf, nil); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), content) {
				t.Fatal("the redirected download brought other bytes")
			}
			mu.Lock()
			defer mu.Unlock()
			if len(referers) != 1 {
				t.Fatalf("the other host got %d requests", len(referers))
			}
			for _, ref := range referers {
				if strings.Contains(ref, "X-Amz-Signature") || strings.Contains(ref, "deadbeef") {
					t.Fatalf("the other host got the signed link as Referer: %s", ref)
				}
			}
		})
	}
}

// written is how many bytes a download wrote, for tests that look at
// nothing else of its result.
func written(res *DownloadResult, err error) (int64, error) {
	if res == nil {
		return 0, err
	}
	return res.Written, err
}

// A bad DownloadOptions value is a *ValidationError naming the field,
// before anything is asked of the object store.
func TestDownloadOptionValues(t *testing.T) {
	store := newDownloadStore(t, downloadContent(1000))
	c, workerCalls := downloadWorker(t, store)
	link := downloadLinkFor(t, c)
	bad := &DownloadOptions{MaxSize: -1}
	const field = "DownloadOptions.MaxSize"
	_, err := c.Exports.Download(context.Background(), link, io.Discard, bad)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != field {
		t.Errorf("Download: got %v, want a *ValidationError about %s", err, field)
	}
	_, err = c.Exports.DownloadToFile(context.Background(), link, filepath.Join(t.TempDir(), "a.zip"), bad)
	if !errors.As(err, &ve) || ve.Field != field {
		t.Errorf("DownloadToFile: got %v, want a *ValidationError about %s", err, field)
	}
	if n := len(store.requests()); n != 0 {
		t.Errorf("%d requests reached the store", n)
	}
	if n := workerCalls.Load(); n != 1 {
		t.Errorf("%d link requests, want only the first", n)
	}
	// The boundary values are meaningful, not refused: no retries, no
	// stall timeout, no size limit, no progress callback.
	res, err := c.Exports.Download(context.Background(), link, io.Discard, &DownloadOptions{Retries: -1, StallTimeout: -1})
	if err != nil || res.Written != 1000 {
		t.Errorf("boundary values: %+v, %v", res, err)
	}
}

// Progress is called when the offset or the total changes: at the start,
// when the total is first told, after each chunk, and with 0 after a
// restart; a resume, which changes neither, calls nothing, so a progress
// bar never sees the same values twice in a row.
func TestDownloadProgressCallsOnlyOnChange(t *testing.T) {
	content := downloadContent(1 << 20)
	size := int64(len(content))
	for _, ignoreRange := range []bool{false, true} {
		store := newDownloadStore(t, content)
		store.ignoreRange = ignoreRange
		store.cut[0] = 300_000
		c, _ := downloadWorker(t, store)
		var calls [][2]int64
		var buf resettableBuffer
		res, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), &buf, &DownloadOptions{Progress: func(n, total int64) {
			calls = append(calls, [2]int64{n, total})
		}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Resumes+res.Restarts != 1 {
			t.Fatalf("ignoreRange %v: result %+v; want one resume or restart", ignoreRange, res)
		}
		if len(calls) < 3 || calls[0] != [2]int64{0, -1} || calls[1] != [2]int64{0, size} || calls[len(calls)-1] != [2]int64{size, size} {
			t.Fatalf("ignoreRange %v: progress calls start %v, end %v; want (0, -1), (0, %d), ..., (%d, %d)",
				ignoreRange, calls[:min(2, len(calls))], calls[len(calls)-1], size, size, size)
		}
		backToZero := 0
		for i := 1; i < len(calls); i++ {
			if calls[i] == calls[i-1] {
				t.Errorf("ignoreRange %v: progress call %d repeats %v", ignoreRange, i, calls[i])
			}
			if calls[i][0] == 0 && calls[i-1][0] > 0 {
				backToZero++
			}
		}
		if want := map[bool]int{false: 0, true: 1}[ignoreRange]; backToZero != want {
			t.Errorf("ignoreRange %v: progress went back to 0 %d times, want %d", ignoreRange, backToZero, want)
		}
	}
}
