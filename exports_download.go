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

// downloadOptions are one download's settings, set by its CallOptions
// (callConfig.download).
type downloadOptions struct {
	progress   func(written, total int64)
	maxSize    int64
	retries    int
	retriesSet bool
	stall      time.Duration
	stallSet   bool
	// err is the first bad option value, refused by the download.
	err error
}

// refuse records a bad option value; the first one is the call's error.
func (o *downloadOptions) refuse(option, reason string) {
	if o.err == nil {
		o.err = &ValidationError{Field: option, Reason: reason}
	}
}

// settings returns the options with their defaults, or the error of the
// first bad value.
func (o downloadOptions) settings() (downloadOptions, error) {
	if !o.retriesSet {
		o.retries = DefaultDownloadRetries
	}
	if !o.stallSet {
		o.stall = DefaultStallTimeout
	}
	return o, o.err
}

// WithProgress calls fn with the bytes written so far and the archive's
// total length (-1 when unknown) once at the start, after each chunk, and
// with 0 after a restart. It runs on the downloading goroutine: keep it
// quick. A nil fn is refused. Calls other than downloads ignore it.
func WithProgress(fn func(written, total int64)) CallOption {
	return func(c *callConfig) {
		if fn == nil {
			c.download.refuse("WithProgress", "fn is nil")
		}
		c.download.progress = fn
	}
}

// WithMaxDownloadSize refuses archives over n bytes: before anything is
// written when the length is announced, else as soon as n would be passed
// (never more than n bytes are written). The error matches
// ErrPayloadTooLarge. 0 means no limit (the default); a negative n is
// refused. Calls other than downloads ignore it.
func WithMaxDownloadSize(n int64) CallOption {
	return func(c *callConfig) {
		if n < 0 {
			c.download.refuse("WithMaxDownloadSize", "must not be negative")
		}
		c.download.maxSize = n
	}
}

// WithDownloadRetries sets how many failed attempts in a row without
// progress a download survives (default DefaultDownloadRetries; 0 turns
// retries off: the first failure is final; a negative n is refused). An
// attempt that wrote at least 64 KiB made progress and starts the count
// again, so a store that keeps breaking the connection but honours Range
// still delivers the whole archive. A fresh link after a 403 does not
// count. Waits between attempts follow WithDownloadBackoff. Calls other
// than downloads ignore it.
func WithDownloadRetries(n int) CallOption {
	return func(c *callConfig) {
		if n < 0 {
			c.download.refuse("WithDownloadRetries", "must not be negative")
		}
		c.download.retries, c.download.retriesSet = n, true
	}
}

// WithStallTimeout sets how long a download waits for the response or its
// next bytes before it treats the connection as broken and resumes
// (default DefaultStallTimeout; 0 waits as long as the context allows; a
// negative d is refused). It uses the real clock, not WithClock's. Calls
// other than downloads ignore it.
func WithStallTimeout(d time.Duration) CallOption {
	return func(c *callConfig) {
		if d < 0 {
			c.download.refuse("WithStallTimeout", "must not be negative")
		}
		c.download.stall, c.download.stallSet = d, true
	}
}

// Download streams the archive behind link into w with a fixed-size
// buffer, whatever the archive's size, and reports how it went.
//
// When the connection breaks (or stalls, see WithStallTimeout) it waits a
// little (see WithDownloadBackoff) and resumes with a Range request from
// the last byte written; it gives up after WithDownloadRetries attempts in
// a row that brought nothing. When the object store ignores Range and sends
// the archive from the start, it begins again only if w can be reset: a
// file (or anything with Seek and Truncate: it is truncated back to where
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
// Of the CallOptions, WithProgress, WithMaxDownloadSize,
// WithDownloadRetries and WithStallTimeout shape the download and
// WithCallTimeout bounds all of it; the others apply to the worker call
// that fetches a fresh link (WithResponse then describes that call, and is
// left untouched when none was made). The object store gets none of them.
//
// Failures are *DownloadError, ErrNotConfigured, or *ValidationError for
// bad arguments and option values.
func (s *ExportsService) Download(ctx context.Context, link *DownloadLink, w io.Writer, opts ...CallOption) (*DownloadResult, error) {
	cc, err := s.checkDownload(ctx, link, opts)
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
	d := s.newDownloader(link, w, cc.download, opts)
	ctx, d.obs = s.client.core.tel.startDownload(ctx)
	err = d.run(ctx)
	d.res.Format = d.sniff.format()
	d.obs.end(d.res, err)
	return d.res, err
}

// checkDownload refuses a client NewWorkerClient did not make, a nil
// context or link, a link URL that is not absolute http(s) (without quoting
// it) and bad options; it returns the call's settings.
func (s *ExportsService) checkDownload(ctx context.Context, link *DownloadLink, opts []CallOption) (callConfig, error) {
	if err := ready((*service)(s)); err != nil {
		return callConfig{}, err
	}
	switch {
	case ctx == nil:
		return callConfig{}, nilContextError()
	case link == nil:
		return callConfig{}, &ValidationError{Field: "link", Reason: "is nil"}
	case !isAbsoluteHTTPURL(link.SignedURL()):
		return callConfig{}, &ValidationError{Field: "link URL", Reason: "is not an absolute http(s) URL"}
	}
	cc, err := newCallConfig(opts)
	if err != nil {
		return cc, err
	}
	cc.download, err = cc.download.settings()
	return cc, err
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
