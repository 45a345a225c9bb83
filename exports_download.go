package sheen

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults for downloads.

const (
	downloadBufSize = 64 << 10
	sniffLen        = 4 << 10
)

// DownloadOptions are the settings of one download, for Exports.Download
// and Exports.DownloadToFile. The zero value, like a nil *DownloadOptions,
// means every default. A bad value is refused with a *ValidationError
// before any request.
type DownloadOptions struct {
	// Progress is called with the bytes written so far and the archive's
	// total length (-1 when unknown) each time one of them changes: once
	// at the start, when a response first tells the total, after each
	// chunk written, and with 0 when the download starts again from the
	// first byte (the store ignored Range). A resume changes neither, so it
	// calls nothing. It runs on the downloading goroutine: keep it quick.
	// nil calls nothing.
	Progress func(written, total int64)

	// MaxSize refuses archives over MaxSize bytes: before anything is
	// written when the length is announced, else as soon as MaxSize would
	// be passed (never more than MaxSize bytes are written). The error
	// matches ErrPayloadTooLarge. 0 means no limit; a negative size is
	// refused.
	MaxSize int64

	// Retries is how many failed attempts in a row without progress the
	// download survives. An attempt that took the download at least 64 KiB
	// past the furthest byte any earlier attempt reached made progress and
	// starts the count again, so a store that keeps breaking the connection
	// but honours Range still delivers the whole archive; bytes written
	// again after a restart from the first byte are not progress, so a
	// store that ignores Range and keeps breaking before the old mark uses
	// the count up. A fresh link after a 403 does not count. Waits between attempts follow
	// WithDownloadBackoff. 0 means DefaultDownloadRetries; a negative value
	// (such as -1) turns retries off: the first failure is final.
	Retries int

	// StallTimeout is how long the download waits for the response or its
	// next bytes before it treats the connection as broken and resumes. It
	// uses the real clock, not WithClock's. 0 means DefaultStallTimeout; a
	// negative value (such as -1) waits as long as the context allows.
	StallTimeout time.Duration
}

// downloadOptions are one download's settings: DownloadOptions with their
// defaults applied.
type downloadOptions struct {
	progress func(written, total int64)
	maxSize  int64         // 0: no limit
	retries  int           // 0: the first failure is final
	stall    time.Duration // 0: no stall timeout
}

// settings checks o (nil is every default) and applies the defaults.
func (o *DownloadOptions) settings() (downloadOptions, error) {
	if o == nil {
		return downloadOptions{retries: DefaultDownloadRetries, stall: DefaultStallTimeout}, nil
	}
	if o.MaxSize < 0 {
		return downloadOptions{}, &ValidationError{Field: "DownloadOptions.MaxSize", Reason: "must not be negative"}
	}
	d := downloadOptions{progress: o.Progress, maxSize: o.MaxSize, retries: o.Retries, stall: waitSetting(o.StallTimeout, DefaultStallTimeout)}
	switch {
	case d.retries == 0:
		d.retries = DefaultDownloadRetries
	case d.retries < 0:
		d.retries = 0
	}
	return d, nil
}

// Download streams the archive behind link into w with a fixed-size
// buffer, whatever the archive's size, and reports how it went.
//
// When the connection breaks (or stalls, see DownloadOptions.StallTimeout)
// it waits a little (see WithDownloadBackoff) and resumes with a Range
// request from the last byte written; it gives up after
// DownloadOptions.Retries attempts in a row that brought nothing new (see
// there). When the object store ignores Range and sends the archive from
// the start, it begins again only if w can be reset: a file (or anything with Seek and Truncate: it is truncated back to where
// it stood when the download began), or anything with a Reset() or
// Reset() error method (bytes.Buffer, hash.Hash); otherwise it fails with
// ErrRangeIgnored. When the object store answers 403 (expired link) it asks
// the worker for a fresh link once, bypassing the cache, and carries on.
// Content-Length is checked: an archive cut short is an ErrTruncated error,
// never a silently short result.
//
// Requests to the object store go through the download client (see
// WithDownloadHTTPClient): no x-sheen-* header, signature or secret reaches
// it, and it does not use the worker's rate limit. The signed link never
// goes over plain http:// unless the client was made with WithInsecureHTTP:
// an http:// link to a host that is not loopback, or a redirect from https
// to http, fails with ErrInsecureDownload.
//
// dl shapes the download (nil: every default). Of the CallOptions,
// WithCallTimeout bounds all of it; the others apply to the worker call
// that fetches a fresh link (WithResponse then describes that call, and is
// left untouched when none was made). The object store gets none of them.
//
// Failures are *DownloadError, ErrNotConfigured, or *ValidationError for
// bad arguments and option values.
func (s *ExportsService) Download(ctx context.Context, link DownloadLink, w io.Writer, dl *DownloadOptions, opts ...CallOption) (*DownloadResult, error) {
	cc, o, err := s.checkDownload(ctx, link, dl, opts)
	if err != nil {
		return nil, err
	}
	if w == nil {
		return nil, &ValidationError{Field: "writer", Reason: "is nil"}
	}
	if cc.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cc.timeout)
		defer cancel()
	}
	d := s.newDownloader(link, w, o, opts)
	ctx, d.obs = s.client.core.tel.startDownload(ctx)
	err = d.run(ctx)
	d.res.Format = d.sniff.format()
	d.obs.end(d.res, err)
	return d.res, err
}

// checkDownload refuses a client NewWorkerClient did not make, a nil
// context, the zero link, a link URL that is not absolute http(s) (without
// quoting it) and bad options; it returns the call's and the download's
// settings.
func (s *ExportsService) checkDownload(ctx context.Context, link DownloadLink, dl *DownloadOptions, opts []CallOption) (callConfig, downloadOptions, error) {
	if err := ready((*service)(s)); err != nil {
		return callConfig{}, downloadOptions{}, err
	}
	switch {
	case ctx == nil:
		return callConfig{}, downloadOptions{}, nilContextError()
	case link.signed == nil:
		return callConfig{}, downloadOptions{}, &ValidationError{Field: "link", Reason: "is the zero DownloadLink"}
	case !isAbsoluteHTTPURL(link.SignedURL()):
		return callConfig{}, downloadOptions{}, &ValidationError{Field: "link URL", Reason: "is not an absolute http(s) URL"}
	}
	cc, err := newCallConfig(opts)
	if err != nil {
		return cc, downloadOptions{}, err
	}
	o, err := dl.settings()
	return cc, o, err
}

// isAbsoluteHTTPURL reports whether s is an absolute http or https URL.
func isAbsoluteHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// writerReset returns a function that forgets what was written to w, or
// nil when w cannot be reset.
func writerReset(w io.Writer) func() error {
	switch v := w.(type) {
	case interface {
		io.Seeker
		Truncate(int64) error
	}:
		start, err := v.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil
		}
		return func() error {
			if err := v.Truncate(start); err != nil {
				return err
			}
			_, err := v.Seek(start, io.SeekStart)
			return err
		}
	case interface{ Reset() }:
		return func() error { v.Reset(); return nil }
	case interface{ Reset() error }:
		return v.Reset
	}
	return nil
}

// rangeValidator returns what If-Range can carry so that a resumed request
// gets the same object or all of a new one: a strong ETag, else
// Last-Modified.
func rangeValidator(h http.Header) string {
	if et := h.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		return et
	}
	return h.Get("Last-Modified")
}

// parseContentRange reads "bytes start-end/total" (total may be "*", then
// -1).
func parseContentRange(v string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	s, e, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(s, 10, 64)
	end, err2 := strconv.ParseInt(e, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		t, err := strconv.ParseInt(tot, 10, 64)
		if err != nil || t <= end {
			return 0, 0, false
		}
		total = t
	}
	return start, total, true
}
