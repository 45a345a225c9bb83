package sheen

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/url"
	"strconv"
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

// VersionState filters Versions; "" is the worker's default (all).
type VersionState string

// Version states.
const (
	VersionsAll         VersionState = "all"
	VersionsPublished   VersionState = "published"
	VersionsUnpublished VersionState = "unpublished"
)

// check refuses a state the worker does not know.
func (st VersionState) check() error {
	switch st {
	case "", VersionsAll, VersionsPublished, VersionsUnpublished:
		return nil
	}
	return &ValidationError{Field: "state", Reason: fmt.Sprintf("%q is not one of published, unpublished, all", string(st))}
}

// versionsPageSize is how many versions Versions asks for at a time: the
// worker's maximum, so the fewest requests.
const versionsPageSize = 100

// Versions lists a project's versions (GET
// /v1/projects/{projectId}/versions), newest first as the worker orders
// them, walking every page; a version is yielded once even when a version
// published meanwhile shifts the pages. state filters them ("" for the
// worker's default, all). It yields an error, once, only when it has to
// stop (also when a page brings nothing new: the worker is not paging);
// breaking out of the loop stops it without further requests. opts apply
// to every page's request; WithCallTimeout bounds the whole listing.
func (s *BuildsService) Versions(ctx context.Context, projectID string, state VersionState, opts ...CallOption) iter.Seq2[ProjectVersion, error] {
	return func(yield func(ProjectVersion, error) bool) {
		cc, err := newCallConfig(opts)
		if err = cmp.Or(ready((*service)(s)), err, state.check()); err != nil {
			yield(ProjectVersion{}, err)
			return
		}
		if cc.timeout > 0 && ctx != nil {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, cc.timeout)
			defer cancel()
		}
		s.listVersions(ctx, projectID, state, opts, yield)
	}
}

// listVersions is Versions' loop over the pages.
func (s *BuildsService) listVersions(ctx context.Context, projectID string, state VersionState, opts []CallOption, yield func(ProjectVersion, error) bool) {
	var seen map[string]struct{} // made once the first page says how many there are
	for offset := 0; ; {
		q := url.Values{"limit": {strconv.Itoa(versionsPageSize)}, "offset": {strconv.Itoa(offset)}}
		if state != "" {
			q.Set("state", string(state))
		}
		var page versionsWire
		if err := (*service)(s).send(ctx, call{route: RouteVersions, params: []string{projectID}, query: q, out: &page}, opts); err != nil {
			yield(ProjectVersion{}, err)
			return
		}
		if seen == nil {
			seen = make(map[string]struct{}, min(max(page.total.Int(), 0), 100_000))
		}
		fresh := 0
		for _, v := range page.versions {
			if v.ID != "" {
				n := len(seen)
				seen[v.ID] = struct{}{} // one hash: an id listed already leaves the size as it was
				if len(seen) == n {
					continue
				}
			}
			fresh++
			if !yield(v, nil) {
				return
			}
		}
		if len(page.versions) > 0 && fresh == 0 {
			yield(ProjectVersion{}, fmt.Errorf("sheen: listing the versions of project %s: %w: the page at offset %d repeats versions listed already", projectID, ErrInvalidResponse, offset))
			return
		}
		offset += len(page.versions)
		if !page.more(offset) {
			return
		}
	}
}

// more reports whether another page follows this one, offset being where
// it would start.
func (w *versionsWire) more(offset int) bool {
	switch {
	case len(w.versions) == 0, w.total.Valid && int64(offset) >= w.total.Int():
		return false
	case w.hasMore.Valid:
		return w.hasMore.Bool
	}
	return len(w.versions) == versionsPageSize
}
