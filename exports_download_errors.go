package sheen

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

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

// transportError is an error of the download client with its *url.Error
// taken off: that one quotes the request URL, signed query and all. The
// text shows no URL query; errors.Is and errors.As reach the cause
// (*net.OpError, *net.DNSError, syscall.ECONNREFUSED, ...).
type transportError struct {
	msg string
	err error
}

func (e *transportError) Error() string { return e.msg }

func (e *transportError) Unwrap() error { return e.err }

// newTransportError strips err of its *url.Error and of any URL query its
// text would still show.
func newTransportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		err = ue.Err
	}
	return &transportError{msg: scrubURLQueries(err.Error()), err: err}
}

// urlWithQuery finds an http(s) URL's query (and fragment) in a message.
var urlWithQuery = regexp.MustCompile(`(?i)(https?://[^\s"'?#]*)[?#][^\s"']*`)

// scrubURLQueries replaces the query of every http(s) URL in msg with
// "?REDACTED".
func scrubURLQueries(msg string) string {
	return urlWithQuery.ReplaceAllString(msg, "${1}?REDACTED")
}

// errClosedEarly is a body that ended before its announced length.
var errClosedEarly = fmt.Errorf("connection closed early (%w)", io.ErrUnexpectedEOF)

// truncated says the archive stopped before its end because of cause; the
// result matches ErrTruncated and cause.
func truncated(cause error) error {
	return fmt.Errorf("%w: %w", ErrTruncated, cause)
}
