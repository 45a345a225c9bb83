package sheen

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ProjectVersion is one version of a project. (It is not named Version:
// that is the SDK's version constant.)
type ProjectVersion struct {
	ID          string
	Semver      string
	Name        string
	Description string
	// Type is the kind of change (for example "minor").
	Type        string
	CreatedAt   time.Time
	IsPublished bool
	PreviewURL  string
	// HasArtifact reports whether the built output is still stored (needed
	// to preview, roll back or download without a rebuild).
	HasArtifact bool
	// ArtifactSize is in bytes.
	ArtifactSize int64
	CanPreview   bool
	CanRollback  bool
	// Raw is the version as the worker sent it, for fields the SDK does
	// not read.
	Raw json.RawMessage
}

// VersionState filters Versions.
type VersionState string

// Version states.
const (
	VersionsAll         VersionState = "all"
	VersionsPublished   VersionState = "published"
	VersionsUnpublished VersionState = "unpublished"
)

// VersionsOption changes how Versions lists.
type VersionsOption func(*versionsConfig)

type versionsConfig struct {
	state    VersionState
	pageSize int
}

// WithVersionState lists only published or unpublished versions (the
// worker's default is all).
func WithVersionState(state VersionState) VersionsOption {
	return func(c *versionsConfig) { c.state = state }
}

// WithVersionsPageSize sets how many versions each request asks for, 1 to
// 100 (default 100, the fewest requests).
func WithVersionsPageSize(n int) VersionsOption {
	return func(c *versionsConfig) { c.pageSize = n }
}

// Versions lists a project's versions (GET
// /v1/projects/{projectId}/versions), newest first as the worker orders
// them, walking every page; a version is yielded once even when a version
// published meanwhile shifts the pages. It yields an error, once, only when
// it has to stop (also when a page brings nothing new: the worker is not
// paging); breaking out of the loop stops it without further requests.
func (s *BuildsService) Versions(ctx context.Context, projectID string, opts ...VersionsOption) iter.Seq2[ProjectVersion, error] {
	return func(yield func(ProjectVersion, error) bool) {
		if err := ready((*service)(s)); err != nil {
			yield(ProjectVersion{}, err)
			return
		}
		id, err := escapeID("projectId", projectID)
		if err != nil {
			yield(ProjectVersion{}, err)
			return
		}
		cfg := versionsConfig{pageSize: 100}
		for _, o := range opts {
			o(&cfg)
		}
		if cfg.pageSize < 1 || cfg.pageSize > 100 {
			yield(ProjectVersion{}, &ValidationError{Field: "page size", Reason: fmt.Sprintf("%d is not between 1 and 100", cfg.pageSize)})
			return
		}
		switch cfg.state {
		case "", VersionsAll, VersionsPublished, VersionsUnpublished:
		default:
			yield(ProjectVersion{}, &ValidationError{Field: "state", Reason: fmt.Sprintf("%q is not one of published, unpublished, all", cfg.state)})
			return
		}
		c := s.client.core
		// Offsets move when versions are published meanwhile: a version seen
		// on an earlier page is not yielded again, and a page that brings
		// nothing new means the worker is not paging at all.
		seen := make(map[string]struct{})
		for offset := 0; ; {
			q := url.Values{}
			q.Set("limit", strconv.Itoa(cfg.pageSize))
			q.Set("offset", strconv.Itoa(offset))
			if cfg.state != "" {
				q.Set("state", string(cfg.state))
			}
			target := "/v1/projects/" + id + "/versions?" + q.Encode()
			var w versionsWire
			if err := c.do(ctx, http.MethodGet, target, nil, &w, callConfig{}); err != nil {
				yield(ProjectVersion{}, err)
				return
			}
			if err := w.refused(c, http.MethodGet, target); err != nil {
				yield(ProjectVersion{}, err)
				return
			}
			fresh := 0
			for _, raw := range w.Versions {
				var vw versionWire
				if err := json.Unmarshal(raw, &vw); err != nil {
					yield(ProjectVersion{}, versionsResponseError(c, target, fmt.Errorf("decoding a version: %w", err)))
					return
				}
				if vw.ID.Text != "" {
					if _, ok := seen[vw.ID.Text]; ok {
						continue
					}
					seen[vw.ID.Text] = struct{}{}
				}
				fresh++
				if !yield(vw.toVersion(raw), nil) {
					return
				}
			}
			if len(w.Versions) > 0 && fresh == 0 {
				yield(ProjectVersion{}, versionsResponseError(c, target, fmt.Errorf("the page at offset %d repeats versions listed already", offset)))
				return
			}
			offset += len(w.Versions)
			more := len(w.Versions) == cfg.pageSize
			if w.Pagination.HasMore.Valid {
				more = w.Pagination.HasMore.Bool
			}
			if w.Pagination.Total.Valid && int64(offset) >= w.Pagination.Total.Int() {
				more = false
			}
			if !more || len(w.Versions) == 0 {
				return
			}
		}
	}
}

// versionsResponseError is a versions page the SDK cannot use.
func versionsResponseError(c *core, target string, err error) error {
	path, _, _ := strings.Cut(target, "?")
	return &ResponseError{StatusCode: http.StatusOK, Method: http.MethodGet, Path: c.basePath + path, Err: err}
}
