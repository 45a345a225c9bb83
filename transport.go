package sheen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// signingTransport is where every request to the worker is signed. It sits
// inside the retry loop (it is the retry client's HTTP transport), so each
// attempt waits for the rate limiter, gets a fresh timestamp, nonce and
// signature, runs under the attempt timeout, and reports its response
// headers back to the limiter.
type signingTransport struct {
	// user is the caller's *http.Client from WithHTTPClient, or nil. Its
	// Transport is read on every request, so a transport swapped in after
	// the client was built (httpmock.ActivateNonDefault) is honoured.
	user           *http.Client
	signer         *signer
	limiter        *adaptiveLimiter
	attemptTimeout time.Duration // negative: none
	// basePath is the base URL's path without a trailing slash: what comes
	// before a route's path.
	basePath string
}

// limitScope is req's limitScope (ratelimit.go): whom a 429 of it concerns.
func (t *signingTransport) limitScope(req *http.Request, body []byte) string {
	if req.Method != http.MethodPost {
		return ""
	}
	path, ok := strings.CutPrefix(req.URL.EscapedPath(), t.basePath)
	if !ok {
		return ""
	}
	return limitScope(req.Method, path, body)
}

// base is the transport that carries a signed request.
func (t *signingTransport) base() http.RoundTripper {
	if t.user != nil && t.user.Transport != nil {
		return t.user.Transport
	}
	return http.DefaultTransport
}

// unsignedTransport carries requests over the caller's transport (looked up
// on every request, as signingTransport does) without signing or rate
// limiting them: for downloads from the object store.
type unsignedTransport struct{ t *signingTransport }

// RoundTrip implements http.RoundTripper.
func (u unsignedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return u.t.base().RoundTrip(r)
}

// requestBody is a request body that keeps its bytes, so the signer reads
// them without copying. Each attempt gets a fresh one (newRequestBody as
// go-retryablehttp's ReaderFunc, or one per proxied request).
type requestBody struct {
	*bytes.Reader
	b []byte
}

func newRequestBody(b []byte) *requestBody { return &requestBody{Reader: bytes.NewReader(b), b: b} }

// Close implements io.Closer.
func (*requestBody) Close() error { return nil }

// bodyBytes returns the exact bytes of req's body: those of a requestBody as
// they are, anything else read (and replaced by a requestBody).
func bodyBytes(req *http.Request) ([]byte, error) {
	switch b := req.Body.(type) {
	case nil:
		return nil, nil
	case *requestBody:
		return b.b, nil
	}
	if req.Body == http.NoBody {
		return nil, nil
	}
	raw, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	req.Body = newRequestBody(raw)
	return raw, nil
}

// RoundTrip implements http.RoundTripper.
func (t *signingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := bodyBytes(req)
	if err != nil {
		return nil, err
	}
	parent, obs := beginAttempt(req.Context()) // the attempt's span, when the call is observed
	release, err := t.limiter.acquireScoped(parent, t.limitScope(req, body))
	obs.acquired(parent)
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, &clientAbort{err}
	}
	ctx, cancel := t.attemptContext(parent)
	// The signature headers go into the call's own header map, which
	// belongs to this call alone and is re-signed on every attempt (the
	// client that calls this transport is the core's); a shallow copy
	// carries the attempt's context when it has one of its own.
	signed := req
	if ctx != parent {
		signed = req.WithContext(ctx)
	}
	obs.inject(ctx, signed.Header) // traceparent: not signed, ignored by the worker's checks
	if err := t.signer.sign(signed.Header, signed.Method, signed.URL.RequestURI(), body); err != nil {
		cancel()
		release(nil)
		return nil, &clientAbort{err}
	}
	base := t.base()
	resp, err := base.RoundTrip(signed)
	if err == nil && resp == nil {
		// A broken RoundTripper (WithHTTPClient): an error, as net/http's
		// Client makes of it.
		err = fmt.Errorf("sheen: the HTTP transport (%T) returned neither a response nor an error", base)
	}
	if err != nil {
		release(nil)
		cancel()
		return nil, t.timeoutError(ctx, parent, err)
	}
	release(resp)
	if resp.Body == nil {
		resp.Body = http.NoBody // as net/http's Client does for a RoundTripper's empty answer
	}
	t.signer.observe(resp)
	if ctx != parent { // the body's reads run out the attempt's own timer
		resp.Body = &attemptBody{ReadCloser: resp.Body, t: t, ctx: ctx, parent: parent, cancel: cancel}
	}
	return resp, nil
}

// attemptContext is the context one attempt runs under: the caller's,
// bounded by the attempt timeout. When the caller's own deadline comes no
// later than the attempt timeout would, that deadline already bounds the
// attempt and no timer is armed (a server handler's request context
// usually has one): the attempt ends the same way, as the caller's
// context.DeadlineExceeded, without the cost of a second timer. A negative
// attempt timeout is none: the caller's context alone bounds the attempt.
func (t *signingTransport) attemptContext(parent context.Context) (context.Context, context.CancelFunc) {
	if t.attemptTimeout < 0 {
		return parent, func() {}
	}
	if deadline, ok := parent.Deadline(); ok && time.Until(deadline) <= t.attemptTimeout {
		return parent, func() {}
	}
	return context.WithTimeoutCause(parent, t.attemptTimeout, errAttemptTimeout)
}

// errAttemptTimeout is the cause of an attempt's context when the attempt
// timeout ran out.
var errAttemptTimeout = errors.New("attempt timeout")

// AttemptTimeoutError is an attempt of a call that got no complete answer
// within the attempt timeout (RetryConfig.AttemptTimeout). It matches
// context.DeadlineExceeded with errors.Is.
type AttemptTimeoutError struct {
	// Timeout is the attempt timeout that ran out.
	Timeout time.Duration
	// Err is what the transport reported when the timeout struck.
	Err error
}

// Error says how long the attempt waited.
func (e *AttemptTimeoutError) Error() string {
	return fmt.Sprintf("no complete answer within the attempt timeout of %s", e.Timeout)
}

// Is matches context.DeadlineExceeded.
func (e *AttemptTimeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// Unwrap returns the transport's error, so a dial that timed out is still
// known to have sent nothing.
func (e *AttemptTimeoutError) Unwrap() error { return e.Err }

// timeoutError turns an error caused by the attempt timeout (and not by the
// caller's own context) into an *AttemptTimeoutError.
func (t *signingTransport) timeoutError(ctx, parent context.Context, err error) error {
	if parent.Err() == nil && context.Cause(ctx) == errAttemptTimeout {
		return &AttemptTimeoutError{Timeout: t.attemptTimeout, Err: err}
	}
	return err
}

// attemptBody is a response body read under its attempt's own timeout;
// closing it releases the timer.
type attemptBody struct {
	io.ReadCloser
	t           *signingTransport
	ctx, parent context.Context
	cancel      context.CancelFunc
}

func (b *attemptBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = b.t.timeoutError(b.ctx, b.parent, err)
	}
	return n, err
}

func (b *attemptBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
