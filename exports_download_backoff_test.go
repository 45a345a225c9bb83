package sheen

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"
)

// waitRecorder is a Clock that tells the real time and records every wait
// asked of it, which it ends at once: the waits a download makes can be
// checked without spending them.
type waitRecorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (r *waitRecorder) Now() time.Time { return time.Now() }

func (r *waitRecorder) After(d time.Duration) <-chan time.Time {
	r.mu.Lock()
	r.waits = append(r.waits, d)
	r.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- time.Now()
	return ch
}

// defaultBackoff undoes downloadWorker's fast backoff.
var defaultBackoff = WithDownloadBackoff(DefaultDownloadBackoffBase, DefaultDownloadBackoffMax)

func (r *waitRecorder) recorded() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.waits...)
}

// A store that drops the connection every 256 KiB but honours Range: each
// attempt brings bytes, so the download goes on however many breaks it
// takes, with a short backoff before each resume.
func TestDownloadProgressResetsTheRetryBudget(t *testing.T) {
	content := downloadContent(3<<20 + 12345)
	store := newDownloadStore(t, content)
	store.dropEvery = 256 << 10
	clock := &waitRecorder{}
	c, _ := downloadWorker(t, store, WithClock(clock), defaultBackoff)
	var buf bytes.Buffer
	res, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), plainWriter{&buf}, nil)
	if err != nil {
		t.Fatalf("%v (after %d requests)", err, len(store.requests()))
	}
	if sum(buf.Bytes()) != sum(content) {
		t.Fatalf("sha256 differs: wrote %d of %d bytes", buf.Len(), len(content))
	}
	breaks := (len(content) - 1) / (256 << 10)
	if res.Resumes != breaks || res.Attempts != breaks+1 {
		t.Errorf("%d resumes in %d attempts, want %d in %d", res.Resumes, res.Attempts, breaks, breaks+1)
	}
	waits := clock.recorded()
	if len(waits) != breaks {
		t.Fatalf("%d waits for %d breaks: %v", len(waits), breaks, waits)
	}
	for i, w := range waits {
		// After an attempt that made progress: the first backoff step.
		if w < DefaultDownloadBackoffBase/2 || w > DefaultDownloadBackoffBase {
			t.Errorf("wait %d is %s, want within [%s, %s]", i, w, DefaultDownloadBackoffBase/2, DefaultDownloadBackoffBase)
		}
	}
}

// A store that never brings a byte uses up the budget: the download fails
// after 1 + DownloadOptions.Retries attempts, backing off exponentially (with
// jitter, capped) between them.
func TestDownloadWithoutProgressGivesUpAfterTheBudget(t *testing.T) {
	content := downloadContent(1 << 20)
	for _, retries := range []int{DefaultDownloadRetries, 9} {
		store := newDownloadStore(t, content)
		for i := range 20 {
			store.cut[i] = 0 // headers, then the connection breaks
		}
		clock := &waitRecorder{}
		c, _ := downloadWorker(t, store, WithClock(clock), defaultBackoff)
		dl := &DownloadOptions{} // zero Retries: DefaultDownloadRetries
		if retries != DefaultDownloadRetries {
			dl.Retries = retries
		}
		_, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), &bytes.Buffer{}, dl)
		var de *DownloadError
		if !errors.As(err, &de) || !errors.Is(err, ErrTruncated) || de.Attempts != retries+1 || de.Written != 0 {
			t.Fatalf("retries %d: got %v", retries, err)
		}
		waits := clock.recorded()
		if len(waits) != retries {
			t.Fatalf("retries %d: %d waits: %v", retries, len(waits), waits)
		}
		for i, w := range waits {
			step := min(DefaultDownloadBackoffBase<<i, DefaultDownloadBackoffMax)
			if w < step/2 || w > step {
				t.Errorf("retries %d: wait %d is %s, want within [%s, %s]", retries, i, w, step/2, step)
			}
		}
		if last := waits[len(waits)-1]; retries == 9 && last < DefaultDownloadBackoffMax/2 {
			t.Errorf("the ninth wait is %s; the cap %s was never reached", last, DefaultDownloadBackoffMax)
		}
	}
}

// Failures without progress are counted in a row: an attempt that brings
// bytes starts the count again.
func TestDownloadRetryBudgetCountsFailuresInARow(t *testing.T) {
	content := downloadContent(500_000)
	pattern := map[int]int64{0: 100_000, 1: 0, 2: 0, 3: 100_000, 4: 0, 5: 0}
	store := newDownloadStore(t, content)
	for i, n := range pattern {
		store.cut[i] = n
	}
	c, _ := downloadWorker(t, store, WithClock(&waitRecorder{}))
	var buf bytes.Buffer
	res, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), &buf, &DownloadOptions{Retries: 2})
	if err != nil || sum(buf.Bytes()) != sum(content) || res.Attempts != 7 {
		t.Fatalf("got %+v, %v", res, err)
	}

	store = newDownloadStore(t, content)
	for i, n := range map[int]int64{0: 100_000, 1: 0, 2: 0, 3: 0} {
		store.cut[i] = n
	}
	c, _ = downloadWorker(t, store, WithClock(&waitRecorder{}))
	_, err = c.Exports.Download(context.Background(), downloadLinkFor(t, c), io.Discard, &DownloadOptions{Retries: 2})
	var de *DownloadError
	if !errors.As(err, &de) || de.Attempts != 4 || de.Written != 100_000 {
		t.Fatalf("three failures in a row with 2 retries: got %v", err)
	}
}

// The wait between attempts ends with the context.
func TestDownloadBackoffHonoursTheContext(t *testing.T) {
	content := downloadContent(1000)
	store := newDownloadStore(t, content)
	store.status = 503
	clock := newFakeClock(time.Now())
	c, _ := downloadWorker(t, store, WithClock(clock), defaultBackoff)
	link := downloadLinkFor(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Exports.Download(ctx, link, io.Discard, nil)
		done <- err
	}()
	clock.WaitForWaiters(1) // the download waits before its second attempt
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || len(store.requests()) != 1 {
		t.Fatalf("got %v after %d requests", err, len(store.requests()))
	}
}

func TestDownloadBackoffOptionIsChecked(t *testing.T) {
	for _, tc := range []struct{ base, max time.Duration }{{0, time.Second}, {-time.Second, time.Second}, {time.Second, time.Millisecond}} {
		if _, err := NewWorkerClient(WithSecret(testSecret), WithDownloadBackoff(tc.base, tc.max)); err == nil {
			t.Errorf("WithDownloadBackoff(%s, %s) accepted", tc.base, tc.max)
		}
	}
}

// A store that ends every response after a few bytes is not progressing:
// the download gives up after the budget rather than trickling on.
func TestDownloadTrickleUsesTheBudget(t *testing.T) {
	content := downloadContent(1 << 20)
	store := newDownloadStore(t, content)
	store.dropEvery = 1000
	c, _ := downloadWorker(t, store, WithClock(&waitRecorder{}))
	var buf bytes.Buffer
	_, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), &buf, &DownloadOptions{Retries: 2})
	var de *DownloadError
	if !errors.As(err, &de) || !errors.Is(err, ErrTruncated) || de.Attempts != 3 || de.Written != 3000 {
		t.Fatalf("got %v", err)
	}
	if !bytes.Equal(buf.Bytes(), content[:3000]) {
		t.Error("what was written is not the archive's start")
	}
}

// A store that ignores Range and breaks every response at the same offset
// brings nothing new after its first attempt: writing the same first bytes
// again after a restart is not progress, so the download ends after the
// retry budget with a truncated error instead of restarting for ever.
func TestDownloadRestartsThatNeverPassTheMarkUseTheBudget(t *testing.T) {
	content := downloadContent(1 << 20)
	for _, retries := range []int{0, 2} { // 0: DefaultDownloadRetries
		want := retries
		if want == 0 {
			want = DefaultDownloadRetries
		}
		store := newDownloadStore(t, content)
		store.ignoreRange = true
		store.dropEvery = 256 << 10
		store.goneAfter = 50 // ends the test if the budget never runs out
		c, _ := downloadWorker(t, store, WithClock(&waitRecorder{}))
		var buf resettableBuffer
		_, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), &buf, &DownloadOptions{Retries: retries})
		var de *DownloadError
		if !errors.As(err, &de) || !errors.Is(err, ErrTruncated) {
			t.Fatalf("retries %d: want a truncated *DownloadError, got %v", retries, err)
		}
		// One attempt brought the first 256 KiB, then want+1 brought
		// nothing new: the last of them is the failure that is not retried.
		if de.Attempts != want+2 || buf.resets != want+1 || de.Written != 256<<10 {
			t.Errorf("retries %d: %d attempts, %d restarts, %d bytes written; want %d attempts, %d restarts, %d bytes",
				retries, de.Attempts, buf.resets, de.Written, want+2, want+1, 256<<10)
		}
	}
}

// A restart that breaks before the furthest offset reached brings nothing
// new; one that passes it by 64 KiB or more does, and starts the count
// again.
func TestDownloadRestartProgressIsPastTheHighWaterMark(t *testing.T) {
	content := downloadContent(1 << 20)
	run := func(retries int, cuts ...int64) (*DownloadResult, error) {
		t.Helper()
		store := newDownloadStore(t, content)
		store.ignoreRange = true
		store.goneAfter = 50
		for i, n := range cuts {
			store.cut[i] = n
		}
		c, _ := downloadWorker(t, store, WithClock(&waitRecorder{}))
		var buf resettableBuffer
		res, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), &buf, &DownloadOptions{Retries: retries})
		if err == nil && sum(buf.Bytes()) != sum(content) {
			t.Fatalf("cuts %v: sha256 differs", cuts)
		}
		return res, err
	}

	// 500 KB, then twice 300 KB: two failures in a row without progress
	// with one retry allowed.
	_, err := run(1, 500_000, 300_000, 300_000)
	var de *DownloadError
	if !errors.As(err, &de) || !errors.Is(err, ErrTruncated) || de.Attempts != 3 {
		t.Errorf("restarts that break before the mark: want a truncated *DownloadError after 3 attempts, got %v", err)
	}

	// Each restart passes the mark by 100 KB or more: the count starts
	// again every time, and the archive arrives.
	res, err := run(1, 500_000, 300_000, 600_000, 300_000, 900_000)
	if err != nil || res.Restarts != 5 || res.Attempts != 6 {
		t.Errorf("restarts that pass the mark: got %+v, %v; want the archive after 6 attempts", res, err)
	}
}
