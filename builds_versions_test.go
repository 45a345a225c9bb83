package sheen

import (
	"context"
	"errors"
	"net/http"
	"net/url"
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
	for v, err := range c.Builds.Versions(context.Background(), "p 1", WithVersionsPageSize(2), WithVersionState(VersionsPublished)) {
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
		if q.Get("limit") != "2" || q.Get("state") != "published" {
			t.Errorf("query %v, want limit=2 and state=published", q)
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
	for range c.Builds.Versions(context.Background(), "p 1", WithVersionsPageSize(2)) {
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
	for v, err := range c.Builds.Versions(context.Background(), "p1", WithVersionsPageSize(2)) {
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
	c, mt, _ := buildsClient(t, WithRetry(1, time.Second))
	mt.RegisterResponder("GET", `=~^`+buildsBase+`/v1/projects/p1/versions`, func(r *http.Request) (*http.Response, error) {
		if r.URL.Query().Get("offset") == "0" {
			return buildsAnswer(200, `{"versions":[{"id":"v2"},{"id":"v1"}],"pagination":{"hasMore":true}}`)(r)
		}
		return buildsAnswer(404, `{"error":"project_not_found","message":"gone"}`)(r)
	})
	var ids []string
	var errs []error
	for v, err := range c.Builds.Versions(context.Background(), "p1", WithVersionsPageSize(2)) {
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
