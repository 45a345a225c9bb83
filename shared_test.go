package sheen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jarcoal/httpmock"
)

// fakeSharedLimiter lets every request leave (or answers err) and keeps
// the answers it hears of.
type fakeSharedLimiter struct {
	err      error
	mu       sync.Mutex
	acquired int
	answers  []RateAnswer
}

func (f *fakeSharedLimiter) Acquire(ctx context.Context, maxWait time.Duration) (func(RateAnswer), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acquired++
	if f.err != nil {
		return nil, f.err
	}
	return func(a RateAnswer) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.answers = append(f.answers, a)
	}, nil
}

func TestSharedLimiterHearsEveryAnswer(t *testing.T) {
	lim := &fakeSharedLimiter{}
	status := http.StatusOK
	c := newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp := jsonResponse(r, status, `{}`)
		resp.Header.Set("X-Ratelimit-Limit", "10")
		resp.Header.Set("X-Ratelimit-Remaining", "9")
		resp.Header.Set("X-Ratelimit-Reset", "30")
		if status == http.StatusTooManyRequests {
			resp.Header.Set("Retry-After", "5")
		}
		return resp, nil
	}), WithSharedLimiter(lim), WithRetry(RetryConfig{MaxAttempts: 1, MaxWait: time.Minute}))
	ctx := context.Background()
	if err := c.Do(ctx, http.MethodGet, "/v1/x", nil, nil); err != nil {
		t.Fatal(err)
	}
	status = http.StatusTooManyRequests
	var rl *RateLimitError
	if err := c.Do(ctx, http.MethodGet, "/v1/x", nil, nil); !errors.As(err, &rl) {
		t.Fatalf("a 429: %v", err)
	}
	if len(lim.answers) != 2 {
		t.Fatalf("the shared limiter heard %d answers, want 2", len(lim.answers))
	}
	ok, refused := lim.answers[0], lim.answers[1]
	if !ok.Answered || ok.Limit != 10 || ok.Remaining != 9 || ok.Reset.Sub(ok.At) != 30*time.Second || ok.ResetPrecision != time.Second || !ok.PauseUntil.IsZero() {
		t.Errorf("answer of a 200: %+v", ok)
	}
	if refused.PauseUntil.Sub(refused.At) != 5*time.Second {
		t.Errorf("answer of a 429 with Retry-After: 5: pause until %s after it, want 5s", refused.PauseUntil.Sub(refused.At))
	}
	if snap := c.RateLimit(); snap.Remaining != 9 || snap.PausedUntil.IsZero() {
		t.Errorf("the client's own limiter did not watch the answers: %+v", snap)
	}
}

func TestSharedLimiterFallsBackToTheLocalLimiter(t *testing.T) {
	var sent atomic.Int32
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) { sent.Add(1); return jsonResponse(r, 200, `{}`), nil })
	down := &fakeSharedLimiter{err: fmt.Errorf("%w: redis is down", ErrSharedUnavailable)}
	if err := newTestClient(t, rt, WithSharedLimiter(down)).Do(context.Background(), http.MethodGet, "/v1/x", nil, nil); err != nil || sent.Load() != 1 || down.acquired != 1 {
		t.Fatalf("with the shared limiter down: %v, %d sent; want the request sent under the local limiter", err, sent.Load())
	}
	refusal := &RateLimitError{APIError: &APIError{StatusCode: 429, Code: "client_rate_limited", Message: "fleet quota used up"}}
	full := &fakeSharedLimiter{err: refusal}
	var rl *RateLimitError
	if err := newTestClient(t, rt, WithSharedLimiter(full)).Do(context.Background(), http.MethodGet, "/v1/x", nil, nil); !errors.As(err, &rl) || rl != refusal || sent.Load() != 1 {
		t.Fatalf("a shared refusal: %v, %d sent; want it returned, nothing sent", err, sent.Load())
	}
	if _, err := NewWorkerClient(WithSecret(testSecret), WithSharedLimiter(nil)); err == nil {
		t.Error("WithSharedLimiter(nil) accepted")
	}
}

// memShared is a SharedCache in memory that can play down.
type memShared struct {
	mu     sync.Mutex
	values map[string][]byte
	down   bool
}

func (m *memShared) unavailable() error {
	if m.down {
		return fmt.Errorf("%w: down", ErrSharedUnavailable)
	}
	return nil
}

func (m *memShared) Fetch(ctx context.Context, key string, load func(context.Context) ([]byte, time.Duration, error)) ([]byte, error) {
	m.mu.Lock()
	if err := m.unavailable(); err != nil {
		m.mu.Unlock()
		return nil, err
	}
	v, ok := m.values[key]
	m.mu.Unlock()
	if ok {
		return v, nil
	}
	v, ttl, err := load(ctx)
	if err == nil && ttl > 0 {
		m.mu.Lock()
		m.values[key] = v
		m.mu.Unlock()
	}
	return v, err
}

func (m *memShared) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.unavailable(); err != nil {
		return err
	}
	m.values[key] = value
	return nil
}

func (m *memShared) Delete(ctx context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.unavailable(); err != nil {
		return err
	}
	delete(m.values, key)
	return nil
}

func (m *memShared) setDown(down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down = down
}

// sharedWorker answers balances and version links, counting them.
type sharedWorker struct{ balances, links atomic.Int32 }

func (w *sharedWorker) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	rw.Header().Set("Content-Type", "application/json")
	switch {
	case strings.HasPrefix(r.URL.Path, "/v1/billing/balance/"):
		fmt.Fprint(rw, billingTotalBody(60*int(w.balances.Add(1))))
	default:
		n := w.links.Add(1)
		fmt.Fprintf(rw, `{"success":true,"downloadUrl":"https://store.test/v-%d.zip?sig=s3cr3t","expiresAt":%q,"filename":"v.zip","size":3,"version":{"id":"v1","prompt":"p","createdAt":"2025-06-01T10:00:00Z","projectId":"p1"}}`,
			n, time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339))
	}
}

func sharedClients(t *testing.T, url string, shared SharedCache, n int) []*WorkerClient {
	var cs []*WorkerClient
	for range n {
		c, err := NewWorkerClient(WithBaseURL(url), WithSecret(testSecret), WithCache(CacheConfig{Shared: shared}), WithRateLimit(60_000))
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	return cs
}

func TestSharedCacheServesEveryClient(t *testing.T) {
	w := &sharedWorker{}
	srv := httptest.NewServer(w)
	defer srv.Close()
	shared := &memShared{values: map[string][]byte{}}
	cs := sharedClients(t, srv.URL, shared, 2)
	ctx := context.Background()

	a, err := cs[0].Billing.Balance(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	var resp Response
	b, err := cs[1].Billing.Balance(ctx, "u1", WithResponse(&resp))
	if err != nil || b.Total != a.Total || !resp.Cached || w.balances.Load() != 1 {
		t.Fatalf("second client: %v, %v, cached %v, %d worker calls; want the first's balance, cached, 1 call", b, err, resp.Cached, w.balances.Load())
	}
	cs[1].Billing.InvalidateBalance("u1")
	if b, _ := cs[0].Billing.Balance(ctx, "u1"); b.Total == a.Total || w.balances.Load() != 2 {
		t.Errorf("after the other client dropped it: %s, %d calls; want a fresh balance", b.Total, w.balances.Load())
	}

	l1, err := cs[0].Exports.VersionLink(ctx, "v1", "u1")
	if err != nil {
		t.Fatal(err)
	}
	l2, err := cs[1].Exports.VersionLink(ctx, "v1", "u1")
	if err != nil || l2.SignedURL() != l1.SignedURL() || !l2.ExpiresAt.Equal(l1.ExpiresAt) || l2.Version.ProjectID != "p1" || w.links.Load() != 1 {
		t.Fatalf("second client's link: %v, %v (%d worker calls); want the first's", l2, err, w.links.Load())
	}
	cs[1].Exports.Invalidate(l2) // the request it answered came along
	if l3, _ := cs[0].Exports.VersionLink(ctx, "v1", "u1"); l3.SignedURL() == l1.SignedURL() {
		t.Error("a link the other client invalidated was served")
	}
}

func TestSharedCacheFallsBackAndForgetsWhatItLearntMeanwhile(t *testing.T) {
	w := &sharedWorker{}
	srv := httptest.NewServer(w)
	defer srv.Close()
	shared := &memShared{values: map[string][]byte{}}
	c := sharedClients(t, srv.URL, shared, 1)[0]
	ctx := context.Background()

	shared.setDown(true)
	for range 3 {
		if _, err := c.Billing.Balance(ctx, "u1"); err != nil {
			t.Fatal(err)
		}
	}
	if n := w.balances.Load(); n != 1 {
		t.Fatalf("with the shared cache down: %d worker calls, want 1 (the local cache)", n)
	}
	shared.setDown(false)
	if _, err := c.Billing.Balance(ctx, "u1"); err != nil || w.balances.Load() != 2 {
		t.Fatalf("shared cache back: %v, %d calls; want it asked (empty) and filled", err, w.balances.Load())
	}
	// What the local cache held from the outage may have been invalidated
	// elsewhere meanwhile: it went when the shared cache answered again.
	shared.setDown(true)
	if _, err := c.Billing.Balance(ctx, "u1"); err != nil || w.balances.Load() != 3 {
		t.Fatalf("down again: %v, %d calls; want the worker asked (the local cache was emptied)", err, w.balances.Load())
	}
}

// A balance of either shape comes back from the shared cache as it went in;
// one laid out when Usage and BonusAllowance were pointers (null when
// absent) reads the same; one in another format is refused, to be loaded
// again.
func TestSharedBalanceCodec(t *testing.T) {
	for name, body := range map[string]string{"bucketed": billingBucketedBody, "v2.1": billingV21Body, "empty buckets": billingTotalBody(60)} {
		var w balanceWire
		if err := json.Unmarshal([]byte(body), &w); err != nil {
			t.Fatal(err)
		}
		want := w.toBalance()
		raw, err := encodeBalance(&want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeBalance(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d := cmp.Diff(want, *got); d != "" {
			t.Errorf("%s: decoded (-want +got):\n%s", name, d)
		}
	}
	old := `1{"Bucketed":true,"Total":60000000000,"Usage":null,"BonusAllowance":{"Daily":900000000000},"Buckets":[{"Source":"paid","Remaining":60000000000}]}`
	got, err := decodeBalance([]byte(old))
	want := Balance{Bucketed: true, Total: time.Minute, BonusAllowance: BonusAllowance{Daily: 15 * time.Minute}}.WithBuckets(BalanceBucket{Source: "paid", Remaining: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, *got); d != "" {
		t.Errorf("a balance written with pointers (-want +got):\n%s", d)
	}
	for _, raw := range []string{"", `0{"Total":60000000000}`, `{"Total":60000000000}`, `1{"Total":`} {
		if b, err := decodeBalance([]byte(raw)); err == nil {
			t.Errorf("decodeBalance(%q) = %+v, want an error", raw, b)
		}
	}
}

// A link goes through the shared cache's codec whole, version or none, and
// the records read and written are those of the releases where
// DownloadLink.Version was a pointer (the same sharedFormat): replicas on
// either side of that change share one cache.
func TestSharedLinkCodec(t *testing.T) {
	const (
		withVersion    = `1{"u":"https://store.test/v1.zip?sig=s3cr3t","e":"2099-01-01T00:00:00Z","f":"v1.zip","s":3,"v":{"ID":"v1","Prompt":"p","CreatedAt":"2025-06-01T10:00:00Z","ProjectID":"p1"},"k":"version","i":"v1","w":"u1"}`
		withoutVersion = `1{"u":"https://store.test/v1.zip?sig=s3cr3t","e":"2099-01-01T00:00:00Z","f":"v1.zip","s":3,"k":"version","i":"v1","w":"u1"}`
	)
	link := linkTo("https://store.test/v1.zip?sig=s3cr3t")
	link.ExpiresAt, link.Filename, link.Size = time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), "v1.zip", 3
	link.from = linkRequest{linkVersion, "v1", "u1"}
	versioned := link
	versioned.Version = ExportVersion{ID: "v1", Prompt: "p", CreatedAt: time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC), ProjectID: "p1"}
	all := cmp.Exporter(func(reflect.Type) bool { return true })
	for name, tc := range map[string]struct {
		link   DownloadLink
		record string
	}{
		"with a version": {versioned, withVersion},
		"without one":    {link, withoutVersion},
	} {
		raw, err := encodeLink(&tc.link)
		if err != nil || string(raw) != tc.record {
			t.Errorf("%s: encodeLink = %s, %v\nwant %s", name, raw, err, tc.record)
		}
		back, err := decodeLink([]byte(tc.record))
		if err != nil {
			t.Fatalf("%s: decodeLink: %v", name, err)
		}
		if d := cmp.Diff(tc.link, *back, all); d != "" {
			t.Errorf("%s: decodeLink (-want +got):\n%s", name, d)
		}
	}
	for _, bad := range []string{"", "2{}", `1{"u":"ftp://store.test/a?sig=1"}`, "1{"} {
		if l, err := decodeLink([]byte(bad)); err == nil || l != nil {
			t.Errorf("decodeLink(%q) = %v, %v; want no link and an error", bad, l, err)
		}
	}
}

// TestSharedCacheInvalidateDuringLoad: with a shared cache as without, a
// caller after InvalidateBalance does not join a request started before
// it, whose answer may be the balance as it was: it asks the worker again.
func TestSharedCacheInvalidateDuringLoad(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var opts []Option
				if shared {
					opts = append(opts, WithCache(CacheConfig{Shared: &memShared{values: map[string][]byte{}}}))
				}
				c, mock := newMockClient(t, opts...)
				var n atomic.Int32
				release := make(chan struct{})
				mock.RegisterNoResponder(func(r *http.Request) (*http.Response, error) {
					k := n.Add(1)
					<-release
					return httpmock.NewStringResponse(200, billingTotalBody(int(60*k))), nil // the first: the old balance
				})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				go c.Billing.Balance(ctx, "u1")
				synctest.Wait()
				c.Billing.InvalidateBalance("u1") // the balance changed: a build started
				done := make(chan Balance, 1)
				go func() { b, _ := c.Billing.Balance(ctx, "u1"); done <- b }()
				synctest.Wait()
				close(release)
				if b := <-done; b.Total != 2*time.Minute || n.Load() != 2 {
					t.Errorf("the caller after InvalidateBalance got %s after %d requests, want 2m0s from a second request", b.Total, n.Load())
				}
			})
		})
	}
}
