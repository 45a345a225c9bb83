package sheen

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Sentinels a *DownloadError matches (besides context errors, the
// network's errors and ErrPayloadTooLarge for WithMaxDownloadSize).
var (
	// ErrTruncated: the archive stopped before its end (the body ended
	// before the announced length, or the connection broke or stalled in
	// the middle of it) and resuming did not bring the rest. The error
	// matches the cause too (for example syscall.ECONNRESET).
	ErrTruncated = errors.New("sheen: download truncated")
	// ErrLinkExpired: the object store refused the link (403) and no fresh
	// one could be had (the link was refreshed once already, or it was not
	// made by this client).
	ErrLinkExpired = errors.New("sheen: download link expired or refused")
	// ErrRangeIgnored: after a break, the object store sent the archive
	// from the start again and the writer cannot be reset.
	ErrRangeIgnored = errors.New("sheen: object store ignored the Range request and the writer cannot be reset")
)

// Defaults for downloads.
const (
	// DefaultDownloadRetries is how many failed attempts in a row without
	// progress a download survives before it gives up (see
	// WithDownloadRetries).
	DefaultDownloadRetries = 5
	// DefaultStallTimeout is how long a download waits for the next byte
	// before it treats the connection as broken.
	DefaultStallTimeout = time.Minute
)

const (
	downloadBufSize = 64 << 10
	sniffLen        = 4 << 10
)

// ArchiveFormat is what an archive's first bytes say it is.
type ArchiveFormat string

// Archive formats told apart by their magic numbers.
const (
	FormatUnknown ArchiveFormat = "unknown"
	FormatZip     ArchiveFormat = "zip"
	FormatTarGzip ArchiveFormat = "tar.gz"
	// FormatGzip is gzip whose content does not start like a tar archive
	// (or could not be told from the first bytes).
	FormatGzip ArchiveFormat = "gzip"
	FormatTar  ArchiveFormat = "tar"
)

// Ext returns the usual file name extension for the format (".zip",
// ".tar.gz", ".gz", ".tar"), or "" for FormatUnknown.
func (f ArchiveFormat) Ext() string {
	switch f {
	case FormatZip:
		return ".zip"
	case FormatTarGzip:
		return ".tar.gz"
	case FormatGzip:
		return ".gz"
	case FormatTar:
		return ".tar"
	}
	return ""
}

// DownloadResult says how a download went. DownloadTo returns one even when
// it fails, saying how far it got. Printing, logging or marshalling it shows
// the link's URL redacted, as DownloadLink does.
type DownloadResult struct {
	// Written is how many bytes reached the writer (after a restart, only
	// those written since).
	Written int64
	// Total is the archive's length as the object store announced it, -1
	// when it did not.
	Total int64
	// Format is what the archive's first bytes say it is, whatever its
	// filename says.
	Format ArchiveFormat
	// Attempts is how many requests went to the object store.
	Attempts int
	// Resumes counts continuations with a Range request after a break.
	Resumes int
	// Restarts counts downloads begun again from the first byte because
	// the object store ignored Range (the writer was reset each time).
	Restarts int
	// LinkRefreshed says the object store refused the link and a fresh one
	// was fetched from the worker.
	LinkRefreshed bool
	// Link is the link the download finished with: the one given, or the
	// fresh one after a refresh.
	Link *DownloadLink
}

// DownloadError is a download that did not complete. Err says why and
// matches ErrTruncated, ErrLinkExpired, ErrRangeIgnored,
// ErrPayloadTooLarge, a context error, the network's error (so
// errors.Is(err, syscall.ECONNREFUSED) and errors.As(err, &dnsErr) with a
// *net.DNSError work through it), or wraps the worker's error when a fresh
// link could not be had (for example *ArtifactMissingError). Neither it nor
// anything it wraps shows the link's query.
type DownloadError struct {
	// URL is the download URL with its query redacted.
	URL string
	// StatusCode is the object store's last HTTP status, 0 when none.
	StatusCode int
	// Written is how many bytes reached the writer.
	Written int64
	// Expected is the archive's length as announced, -1 when unknown.
	Expected int64
	// Attempts is how many requests went to the object store.
	Attempts int
	// Err is the cause.
	Err error
}

// Error returns "sheen: download URL: cause (wrote N of M bytes, K attempts)".
func (e *DownloadError) Error() string {
	var sb strings.Builder
	sb.WriteString("sheen: download " + e.URL + ": ")
	if e.Err != nil {
		sb.WriteString(e.Err.Error())
	} else {
		sb.WriteString("failed")
	}
	fmt.Fprintf(&sb, " (wrote %d", e.Written)
	if e.Expected >= 0 {
		fmt.Fprintf(&sb, " of %d", e.Expected)
	}
	fmt.Fprintf(&sb, " bytes, %d attempt(s))", e.Attempts)
	return sb.String()
}

// Unwrap returns the cause.
func (e *DownloadError) Unwrap() error { return e.Err }

// Is matches ErrNotFound when the object store answered 404.
func (e *DownloadError) Is(target error) bool {
	return target == ErrNotFound && e.StatusCode == http.StatusNotFound
}

// DownloadOption changes one download.
type DownloadOption func(*downloadOptions)

type downloadOptions struct {
	progress func(written, total int64)
	maxSize  int64
	retries  int
	stall    time.Duration
}

// WithProgress calls fn with the bytes written so far and the archive's
// total length (-1 when unknown) once at the start, after each chunk, and
// with 0 after a restart. It runs on the downloading goroutine: keep it
// quick.
func WithProgress(fn func(written, total int64)) DownloadOption {
	return func(o *downloadOptions) { o.progress = fn }
}

// WithMaxDownloadSize refuses archives over n bytes: before anything is
// written when the length is announced, else as soon as n would be passed
// (never more than n bytes are written). The error matches
// ErrPayloadTooLarge. n <= 0 means no limit (the default).
func WithMaxDownloadSize(n int64) DownloadOption {
	return func(o *downloadOptions) { o.maxSize = n }
}

// WithDownloadRetries sets how many failed attempts in a row without
// progress a download survives (default DefaultDownloadRetries; 0 turns
// retries off: the first failure is final). An attempt that wrote at least
// 64 KiB made progress and starts the count again, so a store that keeps
// breaking the connection but honours Range still delivers the whole
// archive. A fresh link after a 403 does not count. Waits between attempts
// follow WithDownloadBackoff.
func WithDownloadRetries(n int) DownloadOption {
	return func(o *downloadOptions) { o.retries = max(n, 0) }
}

// WithStallTimeout sets how long a download waits for the response or its
// next bytes before it treats the connection as broken and resumes
// (default DefaultStallTimeout; 0 or less waits as long as the context
// allows). It uses the real clock, not WithClock's.
func WithStallTimeout(d time.Duration) DownloadOption {
	return func(o *downloadOptions) { o.stall = d }
}

// Download streams the archive behind link into w and returns how many
// bytes it wrote. It is DownloadTo without the report; use DownloadTo to
// learn the archive's format.
func (s *ExportsService) Download(ctx context.Context, link *DownloadLink, w io.Writer, opts ...DownloadOption) (int64, error) {
	res, err := s.DownloadTo(ctx, link, w, opts...)
	if res == nil {
		return 0, err
	}
	return res.Written, err
}

// DownloadTo streams the archive behind link into w with a fixed-size
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
// Failures are *DownloadError, or *ValidationError for bad arguments.
func (s *ExportsService) DownloadTo(ctx context.Context, link *DownloadLink, w io.Writer, opts ...DownloadOption) (*DownloadResult, error) {
	if err := checkDownloadArgs(ctx, link); err != nil {
		return nil, err
	}
	if w == nil {
		return nil, &ValidationError{Field: "writer", Reason: "is nil"}
	}
	o := downloadOptions{retries: DefaultDownloadRetries, stall: DefaultStallTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	d := &downloader{
		s:     s,
		core:  s.client.core,
		opts:  o,
		w:     w,
		reset: writerReset(w),
		link:  link,
		res:   &DownloadResult{Total: -1, Format: FormatUnknown, Link: link},
		sniff: new(sniffer),
	}
	err := d.run(ctx)
	d.res.Format = d.sniff.format()
	return d.res, err
}

// DownloadToFile downloads the archive behind link to path. It writes a
// temporary file in path's directory and renames it to path only when the
// download is complete, so path never holds a partial archive; on failure
// the temporary file is removed (also when the writer or a progress
// callback panics; the panic then goes on). An existing file at path is
// replaced. The file is created with mode 0600 (an archive may hold a
// project's secrets).
func (s *ExportsService) DownloadToFile(ctx context.Context, link *DownloadLink, path string, opts ...DownloadOption) (res *DownloadResult, err error) {
	if path == "" {
		return nil, &ValidationError{Field: "path", Reason: "is empty"}
	}
	if err := checkDownloadArgs(ctx, link); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.part")
	if err != nil {
		return nil, fmt.Errorf("sheen: DownloadToFile: %w", err)
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		// Also when the writer or a progress callback panics: the panic
		// goes on to the caller once the file is closed and removed.
		if !renamed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	res, err = s.DownloadTo(ctx, link, f, opts...)
	if err != nil {
		return res, err
	}
	if err = f.Sync(); err != nil {
		return res, fmt.Errorf("sheen: DownloadToFile: %w", err)
	}
	if err = f.Close(); err != nil {
		return res, fmt.Errorf("sheen: DownloadToFile: %w", err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return res, fmt.Errorf("sheen: DownloadToFile: %w", err)
	}
	renamed = true
	return res, nil
}

// checkDownloadArgs refuses a nil context or link, and a link URL that is
// not absolute http(s) (without quoting it).
func checkDownloadArgs(ctx context.Context, link *DownloadLink) error {
	if ctx == nil {
		return nilContextError()
	}
	if link == nil {
		return &ValidationError{Field: "link", Reason: "is nil"}
	}
	if !isAbsoluteHTTPURL(link.SignedURL()) {
		return &ValidationError{Field: "link URL", Reason: "is not an absolute http(s) URL"}
	}
	return nil
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

// sniffer keeps the archive's first bytes to tell its format.
type sniffer struct {
	buf [sniffLen]byte
	n   int
}

// feed records p, written at offset off, if it falls in the first bytes.
func (s *sniffer) feed(off int64, p []byte) {
	if s.n < sniffLen && off == int64(s.n) {
		s.n += copy(s.buf[s.n:], p)
	}
}

func (s *sniffer) format() ArchiveFormat { return detectArchiveFormat(s.buf[:s.n]) }

// detectArchiveFormat tells zip, tar.gz, gzip and tar apart by their first
// bytes.
func detectArchiveFormat(b []byte) ArchiveFormat {
	switch {
	case len(b) >= 4 && b[0] == 'P' && b[1] == 'K' &&
		(b[2] == 3 && b[3] == 4 || b[2] == 5 && b[3] == 6 || b[2] == 7 && b[3] == 8):
		return FormatZip
	case len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b:
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return FormatGzip
		}
		var hdr [512]byte
		n, _ := io.ReadFull(zr, hdr[:])
		if isTarHeader(hdr[:n]) {
			return FormatTarGzip
		}
		return FormatGzip
	case isTarHeader(b):
		return FormatTar
	}
	return FormatUnknown
}

// isTarHeader reports whether b starts with a tar header: the ustar magic,
// or (old tar) a valid header checksum.
func isTarHeader(b []byte) bool {
	if len(b) < 512 {
		return len(b) >= 262 && string(b[257:262]) == "ustar"
	}
	if string(b[257:262]) == "ustar" {
		return true
	}
	field := strings.TrimRight(strings.TrimSpace(string(b[148:156])), "\x00 ")
	want, err := strconv.ParseInt(field, 8, 64)
	if err != nil || field == "" {
		return false
	}
	var sum int64
	for i, c := range b[:512] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	return sum == want && b[0] != 0
}
