package sheen

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestBuildsVersionsWalksEveryPage(t *testing.T) {
	c, mt, _ := buildsClient(t)
	pages := map[string]string{
		"0": `{"success":true,"versions":[{"id":"v5","semver":"1.4.0","createdAt":"2025-01-05T00:00:00Z","isPublished":true,"hasArtifact":true,"artifactSize":"2048","canPreview":true,"canRollback":true,"extra":1},{"id":"v4"}],"pagination":{"total":5,"limit":2,"offset":0,"hasMore":true}}`,
		"2": `{"success":true,"versions":[{"id":"v3"},{"id":"v2"}],"pagination":{"total":5,"limit":2,"offset":2,"hasMore":true}}`,
		"4": `{"success":true,"versions":[{"id":"v1"}],"pagination":{"total":5,"limit":2,"offset":4,"hasMore":false}}`,
	}
	var mu sync.Mutex
	var queries []url.Values
	mt.RegisterResponder("GET", `=~^`+buildsBase+`/v1/projects/p%201/versions`, func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		queries = append(queries, r.URL.Query())
		mu.Unlock()
		return buildsAnswer(200, pages[r.URL.Query().Get("offset")])(r)
	})
	var ids []string
	var first ProjectVersion
	for v, err := range c.Builds.Versions(context.Background(), "p 1", VersionsPublished) {
		if err != nil {
			t.Fatal(err)
		}
		if first.ID == "" {
			first = v
		}
		ids = append(ids, v.ID)
	}
	if diff := cmp.Diff([]string{"v5", "v4", "v3", "v2", "v1"}, ids); diff != "" {
		t.Errorf("versions (-want +got):\n%s", diff)
	}
	var offsets []string
	for _, q := range queries {
		offsets = append(offsets, q.Get("offset"))
		if q.Get("limit") != "100" || q.Get("state") != "published" {
			t.Errorf("query %v, want limit=100 (the worker's maximum) and state=published", q)
		}
	}
	if diff := cmp.Diff([]string{"0", "2", "4"}, offsets); diff != "" {
		t.Errorf("offsets requested (-want +got):\n%s", diff)
	}
	if !first.IsPublished || !first.HasArtifact || first.ArtifactSize != 2048 || first.Semver != "1.4.0" || !strings.Contains(string(first.Raw), `"extra":1`) {
		t.Errorf("first version decoded as %+v", first)
	}

	// Breaking out stops the requests.
	queries = nil
	for range c.Builds.Versions(context.Background(), "p 1", "") {
		break
	}
	if len(queries) != 1 {
		t.Errorf("%d requests after breaking on the first version, want 1", len(queries))
	}
}

func TestBuildsVersionsNeverRepeatAVersion(t *testing.T) {
	c, mt, _ := buildsClient(t)
	var offsets []string
	mt.RegisterResponder("GET", `=~^`+buildsBase+`/v1/projects/p1/versions`, func(r *http.Request) (*http.Response, error) {
		offset := r.URL.Query().Get("offset")
		offsets = append(offsets, offset)
		switch offset {
		case "0":
			return buildsAnswer(200, `{"versions":[{"id":"v5"},{"id":"v4"}],"pagination":{"hasMore":true}}`)(r)
		case "2": // v6 was published meanwhile: everything moved down by one
			return buildsAnswer(200, `{"versions":[{"id":"v4"},{"id":"v3"}],"pagination":{"hasMore":true}}`)(r)
		}
		// From here on the worker ignores the offset and answers one page forever.
		return buildsAnswer(200, `{"versions":[{"id":"v2"},{"id":"v1"}],"pagination":{"hasMore":true}}`)(r)
	})
	var ids []string
	var errs []error
	for v, err := range c.Builds.Versions(context.Background(), "p1", "") {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ids = append(ids, v.ID)
		if len(ids) > 10 {
			t.Fatalf("still listing after %v", ids)
		}
	}
	if diff := cmp.Diff([]string{"v5", "v4", "v3", "v2", "v1"}, ids); diff != "" {
		t.Errorf("versions (-want +got):\n%s", diff)
	}
	if len(errs) != 1 || !errors.Is(errs[0], ErrInvalidResponse) {
		t.Errorf("errors %v, want one ErrInvalidResponse for the page that brought nothing new", errs)
	}
	if diff := cmp.Diff([]string{"0", "2", "4", "6"}, offsets); diff != "" {
		t.Errorf("offsets requested (-want +got):\n%s", diff)
	}
}

func TestBuildsVersionsStopsAtFirstError(t *testing.T) {
	c, mt, _ := buildsClient(t, WithRetry(RetryConfig{MaxAttempts: 1, MaxWait: time.Second}))
	mt.RegisterResponder("GET", `=~^`+buildsBase+`/v1/projects/p1/versions`, func(r *http.Request) (*http.Response, error) {
		if r.URL.Query().Get("offset") == "0" {
			return buildsAnswer(200, `{"versions":[{"id":"v2"},{"id":"v1"}],"pagination":{"hasMore":true}}`)(r)
		}
		return buildsAnswer(404, `{"error":"project_not_found","message":"gone"}`)(r)
	})
	var ids []string
	var errs []error
	for v, err := range c.Builds.Versions(context.Background(), "p1", "") {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ids = append(ids, v.ID)
	}
	if diff := cmp.Diff([]string{"v2", "v1"}, ids); diff != "" {
		t.Errorf("versions before the error (-want +got):\n%s", diff)
	}
	if len(errs) != 1 || !errors.Is(errs[0], ErrNotFound) {
		t.Errorf("errors %v, want one not-found", errs)
	}
}

// BenchmarkVersions lists 10,000 versions in pages of 100 with Versions,
// against a hand-written paging loop in the same run: Do into a plain
// struct, as a caller without the SDK's types would write it (same client,
// so the same signing and transport). versions/hand-x is the ratio of their
// times (issue #13 wants at most 1.2): each round lists once each way, back
// to back, and the median of the rounds' ratios is reported, which a shared
// machine's changing load does not tilt. allocs-x is the ratio of their
// allocations. Its ns/op means nothing and shows as 0.
//
// Run it with: go test -run '^$' -bench Versions .
func BenchmarkVersions(b *testing.B) {
	const total, pageSize, rounds = 10_000, versionsPageSize, 15
	srv := benchVersionsWorker(total, pageSize)
	defer srv.Close()
	c, err := NewWorkerClient(WithBaseURL(srv.URL), WithSecret(testSecret), WithRateLimit(1_000_000_000))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	sdk := func() {
		n := 0
		for _, err := range c.Builds.Versions(ctx, "p1", "") {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != total {
			b.Fatalf("Versions listed %d versions, want %d", n, total)
		}
	}
	hand := func() {
		n := 0
		for offset := 0; ; offset += pageSize {
			var page struct {
				Versions []struct {
					ID           string    `json:"id"`
					Semver       string    `json:"semver"`
					Name         string    `json:"name"`
					Description  string    `json:"description"`
					Type         string    `json:"type"`
					CreatedAt    time.Time `json:"createdAt"`
					IsPublished  bool      `json:"isPublished"`
					PreviewURL   string    `json:"previewUrl"`
					HasArtifact  bool      `json:"hasArtifact"`
					ArtifactSize int64     `json:"artifactSize"`
					CanPreview   bool      `json:"canPreview"`
					CanRollback  bool      `json:"canRollback"`
				} `json:"versions"`
				Pagination struct {
					HasMore bool `json:"hasMore"`
				} `json:"pagination"`
			}
			if err := c.Do(ctx, "GET", fmt.Sprintf("/v1/projects/p1/versions?limit=%d&offset=%d", pageSize, offset), nil, &page); err != nil {
				b.Fatal(err)
			}
			n += len(page.Versions)
			if !page.Pagination.HasMore {
				break
			}
		}
		if n != total {
			b.Fatalf("the hand-written loop listed %d versions, want %d", n, total)
		}
	}
	var ratios, sdkMS, handMS []float64
	for i := range rounds {
		var ts, th float64
		if i%2 == 0 { // alternate which goes first, so neither always pays for the other's garbage
			ts, th = timeOnce(sdk), timeOnce(hand)
		} else {
			th, ts = timeOnce(hand), timeOnce(sdk)
		}
		ratios, sdkMS, handMS = append(ratios, ts/th), append(sdkMS, ts/1e6), append(handMS, th/1e6)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(medianOf(sdkMS), "versions-ms")
	b.ReportMetric(medianOf(handMS), "hand-ms")
	b.ReportMetric(medianOf(ratios), "versions/hand-x")
	b.ReportMetric(testing.AllocsPerRun(1, sdk)/testing.AllocsPerRun(1, hand), "allocs-x")
}

// timeOnce is how long op takes, in nanoseconds.
func timeOnce(op func()) float64 {
	start := time.Now()
	op()
	return float64(time.Since(start).Nanoseconds())
}

func medianOf(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// benchVersionsWorker is a loopback worker with total versions of one
// project, as the worker writes them, served in pages of pageSize.
func benchVersionsWorker(total, pageSize int) *httptest.Server {
	pages := make(map[string][]byte)
	for offset := 0; offset < total; offset += pageSize {
		var sb strings.Builder
		sb.WriteString(`{"success":true,"versions":[`)
		for i := offset; i < min(offset+pageSize, total); i++ {
			if i > offset {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"id":"ver-%06d","semver":"1.%d.0","name":"Version %d","description":"Adds a page and fixes the footer","type":"minor",`+
				`"createdAt":"2025-06-01T10:00:00.000Z","isPublished":true,"previewUrl":"https://preview.example/p1/ver-%06d","hasArtifact":true,`+
				`"artifactSize":123456,"canPreview":true,"canRollback":false}`, i, i, i, i)
		}
		fmt.Fprintf(&sb, `],"pagination":{"total":%d,"limit":%d,"offset":%d,"hasMore":%t}}`, total, pageSize, offset, offset+pageSize < total)
		pages[strconv.Itoa(offset)] = []byte(sb.String())
	}
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(pages[r.URL.Query().Get("offset")])
	}))
}
