package sheen

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
)

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
