package sheen

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"
)

// ExportsService hands out signed download links for projects and versions
// and downloads their archives. Get it from WorkerClient.Exports.
//
// Links are cached per (project or version, user) until DefaultLinkMargin
// before they expire, so asking again is cheap; concurrent askers for one
// link share one request to the worker.
type ExportsService service

// linkKind says which endpoint a link came from.
type linkKind string

const (
	linkProject linkKind = "project"
	linkVersion linkKind = "version"
)

// linkRequest is one question for a link: of which kind, for which project
// or version, for which user. The zero value is no request (a link the
// caller built).
type linkRequest struct {
	kind       linkKind
	id, userID string
}

// ProjectLink returns a download link for the latest archive of projectID,
// for userID. A cached link is returned while it has more than the link
// margin (1 hour by default) left; concurrent calls for the same link make
// one request. WithResponse describes the request the call made; when it
// made none (a cached link, or one shared with a concurrent call) the
// Response has Cached set. A shared request carries the options of the
// caller that started it except WithCallTimeout and WithCallAttempts: each
// caller's WithCallTimeout bounds only its own wait, and the request, tried
// as the client's RetryConfig says, runs until the last caller waiting for
// it leaves.
//
// Failures: *ValidationError for a bad ID; *ArtifactMissingError when the
// archive is gone; *PayloadTooLargeError when it is over the worker's 2 GiB
// limit; *APIError (and its typed wrappers) otherwise.
//
// The link is the caller's own copy: changing it changes nothing another
// call returns. On error it is the zero DownloadLink.
//
// A link whose expiresAt is missing, unreadable or already within the
// margin is returned (the object store, not the local clock, decides when
// it stops working) but not cached: the next call asks the worker again.
func (s *ExportsService) ProjectLink(ctx context.Context, projectID, userID string, opts ...CallOption) (DownloadLink, error) {
	return s.link(ctx, linkRequest{linkProject, projectID, userID}, opts)
}

// VersionLink returns a download link for the archive of versionID, for
// userID. Caching, options and failures are as for ProjectLink.
func (s *ExportsService) VersionLink(ctx context.Context, versionID, userID string, opts ...CallOption) (DownloadLink, error) {
	return s.link(ctx, linkRequest{linkVersion, versionID, userID}, opts)
}

// Invalidate drops the cached link that link came from, so the next
// ProjectLink or VersionLink for it asks the worker (call it when you learn
// a link no longer works); a request already under way is not cached
// either. Links the caller built (NewDownloadLink, the zero DownloadLink)
// are ignored.
func (s *ExportsService) Invalidate(link DownloadLink) {
	if ready((*service)(s)) != nil || link.from.kind == "" {
		return
	}
	s.client.exports.forget(link.from.key())
}

// forgetProject drops the cached link to projectID's latest archive for
// userID: the Builds service calls it once a build, rebuild or rollback
// has started for the project, whose latest archive then changes.
func (s *ExportsService) forgetProject(projectID, userID string) {
	if ready((*service)(s)) == nil {
		s.client.exports.forget(linkRequest{linkProject, projectID, userID}.key())
	}
}

// link answers a link request from the cache, or asks the worker. A hit
// allocates nothing: the key is built on the stack and looked up before
// anything that allocates, and the caller gets a copy of the cache's value
// (whose signed URL, immutable, the copies share).
func (s *ExportsService) link(ctx context.Context, r linkRequest, opts []CallOption) (DownloadLink, error) {
	if err := ready((*service)(s)); err != nil {
		return DownloadLink{}, err
	}
	if ctx == nil {
		return DownloadLink{}, nilContextError()
	}
	cc, err := newCallConfig(opts)
	if err != nil {
		return DownloadLink{}, err
	}
	st := &s.client.exports
	if st.shared == nil { // a shared cache is read by load
		var buf [256]byte
		l, ok := st.links.GetBytes(r.appendKey(buf[:0]))
		if !st.noCache {
			s.client.core.tel.cacheLookup(ctx, r.route(), cacheLinks, r.userID, ok)
		}
		if ok {
			cc.recordCached()
			return *l, nil // the caller's copy, in its frame
		}
	}
	l, hit, err := s.load(ctx, r, opts, &cc)
	if st.shared != nil && !st.noCache {
		s.client.core.tel.cacheLookup(ctx, r.route(), cacheLinks, r.userID, hit)
	}
	if err != nil {
		return DownloadLink{}, err
	}
	return l, nil
}

// load fetches r's link through the cache, sharing the request with
// concurrent callers for the same link. The request carries this caller's
// options only when it is this caller's: a caller whose loader did not run
// made no request, and its Response says Cached. hit reports a link from a
// cache for which this client asked the worker nothing.
func (s *ExportsService) load(ctx context.Context, r linkRequest, opts []CallOption, cc *callConfig) (_ DownloadLink, hit bool, _ error) {
	// The query's userId is checked like an ID: the path's IDs are
	// checked by the route, and a userId without control characters keeps
	// the cache's keys apart.
	if _, err := escapeID("userId", r.userID); err != nil {
		return DownloadLink{}, false, err
	}
	st := &s.client.exports
	// The caller's WithCallTimeout bounds its own wait, never the shared
	// request (sharedRequestOptions).
	if cc.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cc.timeout)
		defer cancel()
	}
	// The loader may run on past this caller (who may stop waiting), so it
	// records its Response in a place of its own, read here only once the
	// load has answered.
	// Its own copy of the options, too: the caller's stay on its stack.
	ld := &linkLoad{}
	ld.opts = sharedRequestOptions(opts, &ld.resp)
	load := func(ctx context.Context) (*DownloadLink, time.Time, error) {
		ld.ran = true
		l, err := s.fetch(ctx, r, ld.opts)
		if err != nil {
			return nil, time.Time{}, err
		}
		return &l, st.cacheUntil(l), nil
	}
	var (
		l              *DownloadLink
		loaded, shared bool
		err            error
	)
	if st.shared != nil {
		l, loaded, shared, err = st.shared.fetch(ctx, r.key(), load)
		hit = err == nil && !loaded
	}
	if !shared {
		l, hit, err = st.links.fetch(ctx, r.key(), load)
	}
	if ctx.Err() != nil && err == ctx.Err() {
		return DownloadLink{}, false, err // gone before the answer: ld may still be written
	}
	switch {
	case !ld.ran:
		cc.recordCached()
	case cc.response != nil:
		*cc.response = ld.resp
	}
	if err != nil {
		return DownloadLink{}, false, err
	}
	return *l, hit, nil
}

// linkLoad is what one caller's loader learnt, for that caller.
type linkLoad struct {
	opts []CallOption // sharedRequestOptions: the caller's, unbounded
	ran  bool
	resp Response
}

// refresh asks the worker for a new link for the one given, bypassing the
// cache, and caches the answer.
func (s *ExportsService) refresh(ctx context.Context, old DownloadLink, opts []CallOption) (DownloadLink, error) {
	l, err := s.fetch(ctx, old.from, opts)
	if err != nil {
		return DownloadLink{}, err
	}
	st := &s.client.exports
	if st.shared == nil || !st.shared.set(ctx, l.from.key(), &l, st.cacheUntil(l)) {
		st.links.Set(l.from.key(), &l, st.cacheUntil(l))
	}
	return l, nil
}

// fetch asks the worker for r's link.
func (s *ExportsService) fetch(ctx context.Context, r linkRequest, opts []CallOption) (DownloadLink, error) {
	var a linkAnswer
	if err := (*service)(s).send(ctx, r.call(&a), opts); err != nil {
		return DownloadLink{}, r.artifactMissing(err)
	}
	a.link.from = r
	return a.link, nil
}

// call is the request for r's link, decoded into a.
func (r linkRequest) call(a *linkAnswer) call {
	return call{route: r.route(), params: []string{r.id}, query: url.Values{"userId": {r.userID}}, out: a}
}

// route is the route that answers r.
func (r linkRequest) route() string {
	if r.kind == linkVersion {
		return RouteDownloadVersion
	}
	return RouteExportProject
}

// appendKey appends r's cache key to dst. IDs cannot hold control
// characters (escapeID), so NUL separates.
func (r linkRequest) appendKey(dst []byte) []byte {
	dst = append(dst, r.kind...)
	dst = append(dst, 0)
	dst = append(dst, r.id...)
	dst = append(dst, 0)
	return append(dst, r.userID...)
}

// key is r's cache key.
func (r linkRequest) key() string {
	return string(r.appendKey(make([]byte, 0, len(r.kind)+len(r.id)+len(r.userID)+2)))
}

// nilContextError is what the Exports service answers a nil context with
// (a fresh one each time: callers may change what errors.As hands them).
func nilContextError() error { return &ValidationError{Field: "context", Reason: "is nil"} }

// RebuildMissing gets an archive back after an *ArtifactMissingError: it
// rebuilds the version through the Builds service and waits for the build
// to deploy (without waiting for the metadata phase). Like the other calls
// that start a build, it drops what the rebuild makes stale, once the
// rebuild starts and again when the wait ends: the user's cached balance,
// the cached link the error came from and the user's cached link to the
// version, so the next ProjectLink or VersionLink hands out a link to the
// new archive. (An error from VersionLink does not name the project: a
// cached ProjectLink of that project is not dropped.)
//
// follow shapes the wait as for Builds.Wait (nil: every default), except
// that the metadata phase is never waited for (an archive does not need
// it): MetadataWait and MetadataStartWait do not apply. opts apply to the
// rebuild request and the wait's requests.
//
// It fails with a *ValidationError, before anything is sent, when the
// worker said the archive cannot be rebuilt or did not say which version
// it was, or missing names no valid user, and with the Builds
// service's errors (*BuildFailedError, ...) otherwise.
func (s *ExportsService) RebuildMissing(ctx context.Context, missing *ArtifactMissingError, follow *FollowOptions, opts ...CallOption) (*BuildResult, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	if err := checkMissing(ctx, missing); err != nil {
		return nil, err
	}
	var wait FollowOptions
	if follow != nil {
		wait = *follow
	}
	wait.MetadataWait, wait.MetadataStartWait = -1, -1
	if _, err := wait.settings(); err != nil {
		return nil, err // before the rebuild is asked for
	}
	stale := func() { s.rebuilt(missing) }
	b, err := s.client.Builds.rebuild(ctx, missing.VersionID, stale, opts)
	if err != nil {
		return nil, err
	}
	res, err := s.client.Builds.Wait(ctx, b.ID, missing.UserID, &wait, opts...)
	// The balance and links may have been asked for (and cached) during
	// the build, and a failed build may have been charged all the same.
	stale()
	if err != nil {
		return nil, err
	}
	return res, nil
}

// rebuilt drops what a rebuild after missing makes stale: the user's
// balance, the link the error came from and the user's link to the
// rebuilt version.
func (s *ExportsService) rebuilt(missing *ArtifactMissingError) {
	if missing.from.kind != "" {
		s.client.exports.forget(missing.from.key())
	}
	s.client.Billing.InvalidateBalance(missing.UserID)
	s.client.exports.forget(linkRequest{linkVersion, missing.VersionID, missing.UserID}.key())
}

// checkMissing refuses what RebuildMissing cannot act on.
func checkMissing(ctx context.Context, missing *ArtifactMissingError) error {
	switch {
	case ctx == nil:
		return nilContextError()
	case missing == nil:
		return &ValidationError{Field: "missing", Reason: "is nil"}
	case !missing.CanRebuild:
		return &ValidationError{Field: "missing", Reason: "the worker said this archive cannot be rebuilt"}
	case missing.VersionID == "":
		return &ValidationError{Field: "missing", Reason: "the worker did not say which version to rebuild"}
	}
	// Wait needs the user: refuse before the rebuild is asked for, not
	// after it started.
	return checkID("userId", missing.UserID)
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
	shared       SharedCache // CacheConfig.Shared
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

// exportsState is what the Exports service keeps: the link cache and the
// download client. It lives on the WorkerClient, beside the core.
type exportsState struct {
	// links holds each link behind a pointer that nothing changes once
	// stored: a hit copies it once, into the caller's result.
	links *ttlCache[*DownloadLink]
	// shared, when set, holds the links instead of links, which is the
	// fallback (shared.go).
	shared   *sharedValues[*DownloadLink]
	margin   time.Duration
	noCache  bool
	download *http.Client
	// insecureHTTP: the client opted into plain http:// downloads.
	insecureHTTP bool
	backoff      downloadBackoff
}

func (s *exportsState) init(c *core, cfg exportsConfig) {
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
	s.shared = newSharedValues(cfg.shared, "link", s.links, c.clock, encodeLink, decodeLink)
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

// forget drops the cached link of key, here and in the shared cache.
func (s *exportsState) forget(key string) {
	s.links.Delete(key)
	if s.shared != nil {
		s.shared.delete(key)
	}
}

// cacheUntil is when a link stops being served from the cache: the margin
// before it expires, or never cached (zero) when its expiry is unknown.
func (s *exportsState) cacheUntil(l DownloadLink) time.Time {
	if s.noCache || l.ExpiresAt.IsZero() {
		return time.Time{}
	}
	return l.ExpiresAt.Add(-s.margin)
}
