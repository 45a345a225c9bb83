package sheen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/sheenapps/sheen-go/internal/jsonx"
)

// ExportsService hands out signed download links for projects and versions
// and downloads their archives. Get it from WorkerClient.Exports.
//
// Links are cached per (project or version, user) until DefaultLinkMargin
// before they expire, so asking again is cheap; concurrent askers for one
// link share one request to the worker.
type ExportsService service

// DefaultLinkMargin is how long before its expiry a cached download link
// stops being handed out (v2.1's rule); see WithExportLinkMargin.
const DefaultLinkMargin = time.Hour

// DefaultLinkCacheSize is how many download links a client keeps at most;
// see WithExportLinkCacheSize.
const DefaultLinkCacheSize = 1000

// linkKind says which endpoint a link came from.
type linkKind string

const (
	linkProject linkKind = "project"
	linkVersion linkKind = "version"
)

// DownloadLink is a pre-signed object-store URL for a project's or a
// version's archive.
//
// The URL is a bearer credential: whoever holds it can download the archive
// until it expires. It is kept out of sight: String, GoString (%#v),
// LogValue (slog) and MarshalJSON show it without its query, and printers
// that walk the struct by reflection find only a pointer. SignedURL hands it
// out on purpose.
type DownloadLink struct {
	// ExpiresAt is when the URL stops working, zero when the worker's
	// expiresAt could not be read (such a link is never cached).
	ExpiresAt time.Time
	// Filename is the name the worker suggests, for example
	// "<id>-latest.zip". The archive is often a .tar.gz whatever the name
	// says: DownloadResult.Format reports what the bytes are.
	Filename string
	// Size is the build output's size in bytes as the worker reports it,
	// not the archive's; zero when not given.
	Size int64
	// Version is the version the archive holds, nil when the worker did
	// not say.
	Version *ExportVersion

	// signed is the pre-signed URL (valid 24 hours when issued), behind a
	// pointer so that fmt, printing a struct that holds a DownloadLink in
	// an unexported field, shows an address rather than the credential.
	signed *string

	// Where the link came from, so a download can fetch a fresh one when
	// the object store says this one has expired. Empty for links built by
	// the caller.
	kind       linkKind
	id, userID string
}

// nilContextError is what the Exports service answers a nil context with
// (a fresh one each time: callers may change what errors.As hands them).
func nilContextError() error { return &ValidationError{Field: "context", Reason: "is nil"} }

// ExportVersion is the version an export or download link is for.
type ExportVersion struct {
	ID        string
	Prompt    string
	CreatedAt time.Time
	// ProjectID is set on version downloads.
	ProjectID string
}

// clone returns a copy the caller may change without touching the cache.
func (l *DownloadLink) clone() *DownloadLink {
	c := *l
	if l.Version != nil {
		v := *l.Version
		c.Version = &v
	}
	return &c
}

// ArtifactMissingError is a 404 from an export endpoint whose body says
// whether the archive can be rebuilt (canRebuild, rebuildUrl): the version
// exists but its build output is gone. It wraps the *APIError, so
// errors.As(err, &apiErr) and errors.Is(err, ErrNotFound) both hold.
//
// To get the archive back, call ExportsService.RebuildMissing (it rebuilds
// the version through the Builds service and waits for the build), then ask
// for the link again.
type ArtifactMissingError struct {
	*APIError
	// CanRebuild says whether the worker can rebuild the archive.
	CanRebuild bool
	// RebuildURL is where the worker says a rebuild is started, as sent
	// (it may be a path relative to the worker).
	RebuildURL string
	// VersionID is the version whose archive is gone: the one asked for,
	// or the one RebuildURL names; empty when neither says.
	VersionID string
	// UserID is the user the link was asked for.
	UserID string

	// The link request that failed, to drop its cache entry after a rebuild.
	kind linkKind
	id   string
}

// Unwrap gives errors.As the *APIError.
func (e *ArtifactMissingError) Unwrap() error { return e.APIError }

// ExportProject returns a download link for the latest archive of
// projectID, for userID. A cached link is returned while it has more than
// the link margin (1 hour by default) left; concurrent calls for the same
// link make one request.
//
// Failures: *ValidationError for a bad ID; *ArtifactMissingError when the
// archive is gone; *PayloadTooLargeError when it is over the worker's 2 GiB
// limit; *APIError (and its typed wrappers) otherwise.
//
// A link whose expiresAt is missing, unreadable or already within the
// margin is returned (the object store, not the local clock, decides when
// it stops working) but not cached: the next call asks the worker again.
func (s *ExportsService) ExportProject(ctx context.Context, projectID, userID string) (*DownloadLink, error) {
	return s.link(ctx, linkProject, projectID, userID)
}

// DownloadVersion returns a download link for the archive of versionID, for
// userID. Caching and failures are as for ExportProject.
func (s *ExportsService) DownloadVersion(ctx context.Context, versionID, userID string) (*DownloadLink, error) {
	return s.link(ctx, linkVersion, versionID, userID)
}

// InvalidateProject drops the cached link for projectID and userID, so the
// next ExportProject asks the worker. A request already under way is not
// cached either.
func (s *ExportsService) InvalidateProject(projectID, userID string) {
	s.client.core.exports.links.Delete(linkKey(linkProject, projectID, userID))
}

// InvalidateVersion drops the cached link for versionID and userID.
func (s *ExportsService) InvalidateVersion(versionID, userID string) {
	s.client.core.exports.links.Delete(linkKey(linkVersion, versionID, userID))
}

// forgetProject drops the cached link of projectID for userID: a build,
// rollback or rebuild started for the project has made it stale. (Stub for
// the Builds service until the Exports reshape provides its own.)
func (s *ExportsService) forgetProject(projectID, userID string) {
	s.InvalidateProject(projectID, userID)
}

// Invalidate drops the cached link that link came from (call it when you
// learn a link no longer works). Links built by the caller are ignored.
func (s *ExportsService) Invalidate(link *DownloadLink) {
	if link != nil && link.kind != "" {
		s.client.core.exports.links.Delete(linkKey(link.kind, link.id, link.userID))
	}
}

func (s *ExportsService) link(ctx context.Context, kind linkKind, id, userID string) (*DownloadLink, error) {
	if ctx == nil {
		return nil, nilContextError()
	}
	target, err := linkTarget(kind, id, userID)
	if err != nil {
		return nil, err
	}
	st := &s.client.core.exports
	l, err := st.links.Fetch(ctx, linkKey(kind, id, userID), func(ctx context.Context) (*DownloadLink, time.Time, error) {
		l, err := s.fetchLink(ctx, kind, target, id, userID)
		if err != nil {
			return nil, time.Time{}, err
		}
		return l, st.cacheUntil(l), nil
	})
	if err != nil {
		return nil, err
	}
	return l.clone(), nil
}

// refresh asks the worker for a new link for the one given, bypassing the
// cache, and caches the answer.
func (s *ExportsService) refresh(ctx context.Context, old *DownloadLink) (*DownloadLink, error) {
	target, err := linkTarget(old.kind, old.id, old.userID)
	if err != nil {
		return nil, err
	}
	l, err := s.fetchLink(ctx, old.kind, target, old.id, old.userID)
	if err != nil {
		return nil, err
	}
	st := &s.client.core.exports
	st.links.Set(linkKey(l.kind, l.id, l.userID), l, st.cacheUntil(l))
	return l.clone(), nil
}

func linkKey(kind linkKind, id, userID string) string {
	// IDs cannot hold control characters (escapeID), so NUL separates.
	return string(kind) + "\x00" + id + "\x00" + userID
}

func linkTarget(kind linkKind, id, userID string) (string, error) {
	if _, err := escapeID("userId", userID); err != nil {
		return "", err
	}
	q := url.Values{"userId": {userID}}.Encode()
	switch kind {
	case linkProject:
		p, err := escapeID("projectId", id)
		if err != nil {
			return "", err
		}
		return "/v1/projects/" + p + "/export?" + q, nil
	case linkVersion:
		v, err := escapeID("versionId", id)
		if err != nil {
			return "", err
		}
		return "/v1/versions/" + v + "/download?" + q, nil
	}
	return "", &ValidationError{Field: "link", Reason: "was not made by ExportProject or DownloadVersion"}
}

type exportVersionWire struct {
	ID        string  `json:"id"`
	Prompt    string  `json:"prompt"`
	CreatedAt isoTime `json:"createdAt"`
	ProjectID string  `json:"projectId"`
}

type downloadLinkWire struct {
	Success     *bool              `json:"success"`
	DownloadURL string             `json:"downloadUrl"`
	ExpiresAt   isoTime            `json:"expiresAt"`
	Filename    string             `json:"filename"`
	Size        jsonx.Number       `json:"size"`
	Version     *exportVersionWire `json:"version"`
}

type artifactMissingWire struct {
	CanRebuild *bool  `json:"canRebuild"`
	RebuildURL string `json:"rebuildUrl"`
}

// fetchLink asks the worker for a link, bypassing the cache.
func (s *ExportsService) fetchLink(ctx context.Context, kind linkKind, target, id, userID string) (*DownloadLink, error) {
	var w downloadLinkWire
	if err := s.client.core.do(ctx, http.MethodGet, target, nil, &w, callConfig{}); err != nil {
		return nil, artifactMissing(err, kind, id, userID)
	}
	l, err := w.link(kind, id, userID)
	if err != nil {
		path, _, _ := strings.Cut(target, "?")
		return nil, &ResponseError{StatusCode: http.StatusOK, Method: http.MethodGet, Path: s.client.core.basePath + path, Err: err}
	}
	return l, nil
}

// link makes the link a 200 answer describes, or says (without quoting
// the URL: its query is a credential) why the answer is unusable.
func (w *downloadLinkWire) link(kind linkKind, id, userID string) (*DownloadLink, error) {
	switch {
	case w.Success != nil && !*w.Success:
		return nil, errors.New(`"success" is false in a 200 answer`)
	case w.DownloadURL == "":
		return nil, errors.New("no downloadUrl")
	case !isAbsoluteHTTPURL(w.DownloadURL):
		return nil, errors.New("downloadUrl is not an absolute http(s) URL")
	}
	l := &DownloadLink{
		signed:    new(w.DownloadURL),
		ExpiresAt: time.Time(w.ExpiresAt),
		Filename:  w.Filename,
		Size:      w.Size.Int(),
		kind:      kind,
		id:        id,
		userID:    userID,
	}
	if v := w.Version; v != nil {
		l.Version = &ExportVersion{ID: v.ID, Prompt: v.Prompt, CreatedAt: time.Time(v.CreatedAt), ProjectID: v.ProjectID}
	}
	return l, nil
}

// isoTime is a time the worker writes as an ISO 8601 string. Anything else
// (a number, an object, a string that does not parse) reads as the zero
// time rather than failing the answer: a link of unknown expiry is still
// handed out, just never cached.
type isoTime time.Time

// UnmarshalJSON implements json.Unmarshaler; it never fails.
func (t *isoTime) UnmarshalJSON(b []byte) error {
	var s string
	*t = isoTime{}
	if json.Unmarshal(b, &s) == nil {
		if v, ok := parseISOTime(s); ok {
			*t = isoTime(v)
		}
	}
	return nil
}

// parseISOTime reads an ISO 8601 time as JavaScript's toISOString writes it
// (or with an offset).
func parseISOTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// artifactMissing turns a 404 whose body carries canRebuild into an
// *ArtifactMissingError; other errors pass through.
func artifactMissing(err error, kind linkKind, id, userID string) error {
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusNotFound {
		return err
	}
	var w artifactMissingWire
	if json.Unmarshal(ae.Body, &w) != nil || (w.CanRebuild == nil && w.RebuildURL == "") {
		return err
	}
	missing := &ArtifactMissingError{
		APIError: ae, CanRebuild: w.CanRebuild != nil && *w.CanRebuild, RebuildURL: w.RebuildURL,
		UserID: userID, kind: kind, id: id,
	}
	if kind == linkVersion {
		missing.VersionID = id
	} else if m := rebuildURLVersion.FindStringSubmatch(w.RebuildURL); m != nil {
		if v, err := url.PathUnescape(m[1]); err == nil {
			missing.VersionID = v
		}
	}
	return missing
}

// rebuildURLVersion finds the version id in a rebuildUrl such as
// "/v1/versions/ver_1/rebuild" (absolute URLs too).
var rebuildURLVersion = regexp.MustCompile(`/v1/versions/([^/?#]+)/rebuild(?:$|[?#])`)

// RebuildMissing gets an archive back after an *ArtifactMissingError: it
// rebuilds the version through the Builds service, waits for the build to
// deploy (opts are passed to Builds.Wait; by default it does not wait for
// the metadata phase) and drops the cached link, so the next ExportProject
// or DownloadVersion hands out a link to the new archive.
//
// It fails with a *ValidationError when the worker said the archive cannot
// be rebuilt or did not say which version it was, and with the Builds
// service's errors (*BuildFailedError, ...) otherwise.
func (s *ExportsService) RebuildMissing(ctx context.Context, missing *ArtifactMissingError, opts ...CallOption) (*BuildResult, error) {
	switch {
	case ctx == nil:
		return nil, nilContextError()
	case missing == nil:
		return nil, &ValidationError{Field: "missing", Reason: "is nil"}
	case !missing.CanRebuild:
		return nil, &ValidationError{Field: "missing", Reason: "the worker said this archive cannot be rebuilt"}
	case missing.VersionID == "":
		return nil, &ValidationError{Field: "missing", Reason: "the worker did not say which version to rebuild"}
	}
	b, err := s.client.Builds.Rebuild(ctx, missing.VersionID)
	if err != nil {
		return nil, err
	}
	res, err := s.client.Builds.Wait(ctx, b.ID, missing.UserID, append([]CallOption{WithMetadataWait(0)}, opts...)...)
	if err != nil {
		return nil, err
	}
	if missing.kind != "" {
		s.client.core.exports.links.Delete(linkKey(missing.kind, missing.id, missing.UserID))
	}
	return res, nil
}

// exportsConfig holds the Exports service's options.
type exportsConfig struct {
	margin         time.Duration
	marginSet      bool
	cacheSize      int
	cacheSizeSet   bool
	downloadClient *http.Client
	backoff        downloadBackoff // zero: the defaults
	// insecureHTTP lets downloads use plain http:// (WithInsecureHTTP).
	insecureHTTP bool
}

// WithExportLinkMargin sets how long before its expiry a cached download
// link stops being reused (default DefaultLinkMargin, 1 hour). Zero reuses
// a link until it expires.
func WithExportLinkMargin(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("sheen: WithExportLinkMargin: %s; it must not be negative", d)
		}
		c.exports.margin, c.exports.marginSet = d, true
		return nil
	}
}

// WithExportLinkCacheSize sets how many download links are cached at most
// (default DefaultLinkCacheSize); when full, the least recently used link
// goes. Zero turns caching off (concurrent calls still share one request).
func WithExportLinkCacheSize(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("sheen: WithExportLinkCacheSize: %d; it must not be negative", n)
		}
		c.exports.cacheSize, c.exports.cacheSizeSet = n, true
		return nil
	}
}

// WithDownloadHTTPClient sets the HTTP client that downloads archives from
// the object store. It gets plain requests: no x-sheen-* headers, no
// signature, no share of the worker's rate limit. The SDK uses a copy of hc
// with a CheckRedirect wrapped around hc's: it refuses a redirect from
// https to plain http (see ErrInsecureDownload) and sends no Referer, so
// another host never sees the signed link. Its Timeout bounds a whole
// download, so leave it zero for large archives and use contexts instead.
//
// By default downloads use a client of their own over the transport given
// with WithHTTPClient (http.DefaultTransport when none), without its timeout.
func WithDownloadHTTPClient(hc *http.Client) Option {
	return func(c *config) error {
		if hc == nil {
			return errors.New("sheen: WithDownloadHTTPClient: client is nil")
		}
		c.exports.downloadClient = hc
		return nil
	}
}

// exportsState is the Exports service's share of the client's core.
type exportsState struct {
	links    *ttlCache[*DownloadLink]
	margin   time.Duration
	noCache  bool
	download *http.Client
	// insecureHTTP: the client opted into plain http:// downloads.
	insecureHTTP bool
	backoff      downloadBackoff
	clock        Clock
}

func (s *exportsState) init(c *core, cfg exportsConfig) {
	s.clock = c.clock
	s.margin = DefaultLinkMargin
	if cfg.marginSet {
		s.margin = cfg.margin
	}
	size := DefaultLinkCacheSize
	if cfg.cacheSizeSet {
		size = cfg.cacheSize
	}
	s.noCache = size == 0
	s.links = newTTLCache[*DownloadLink](c.clock, size)
	hc := cfg.downloadClient
	if hc == nil {
		var inner http.RoundTripper = http.DefaultTransport
		if st, ok := c.http.Transport.(*signingTransport); ok {
			inner = unsignedTransport{st} // the caller's transport, without signer or limiter
		}
		hc = &http.Client{Transport: inner}
	}
	s.insecureHTTP = insecureDownloads(c, cfg)
	s.download = newDownloadClient(hc, s.insecureHTTP)
	s.backoff = cfg.backoff
	if s.backoff == (downloadBackoff{}) {
		s.backoff = defaultDownloadBackoff()
	}
}

// cacheUntil is when a link stops being served from the cache: the margin
// before it expires, or never cached (zero) when its expiry is unknown.
func (s *exportsState) cacheUntil(l *DownloadLink) time.Time {
	if s.noCache || l.ExpiresAt.IsZero() {
		return time.Time{}
	}
	return l.ExpiresAt.Add(-s.margin)
}
