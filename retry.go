package sheen

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"syscall"
	"time"
)

// DefaultMaxAttempts is how many times a call is tried in all.
const DefaultMaxAttempts = 4

// DefaultMaxWait caps any single wait between attempts (the seed's 5 minutes).
const DefaultMaxWait = 5 * time.Minute

// defaultBackoffBase is the first backoff step when the worker gave no hint.
const defaultBackoffBase = time.Second

// retryPolicy decides, after each attempt of one call, whether to try again
// and how long to wait. One is made per call and plugged into
// go-retryablehttp's CheckRetry and Backoff hooks, so the decision and the
// wait it computes stay together.
type retryPolicy struct {
	c          *core
	method     string
	path       string // without query, for logs
	idempotent bool   // GET/HEAD, or the call carries an Idempotency-Key

	attempt       int
	wait          time.Duration // the wait decided for the next attempt
	clockAdjusted bool
	bodyRead      bool // readBody ran since the last checkRetry
	body          []byte
	haveBody      bool // body holds the final response's body
}

// checkRetry is go-retryablehttp's CheckRetry for one call.
func (p *retryPolicy) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	// After the response handler read the body, go-retryablehttp asks
	// again about the same attempt: count and log each attempt once.
	secondLook := p.bodyRead
	p.bodyRead = false
	if secondLook && err == nil {
		return false, ctx.Err()
	}
	if !secondLook {
		p.attempt++
	}
	retry, wait := p.decide(ctx, resp, err)
	if retry && !p.fits(ctx, wait) {
		retry = false
	}
	if retry && p.attempt >= p.c.maxAttempts {
		retry = false
	}
	p.wait = wait
	p.log(ctx, resp, err, retry, wait)
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	return retry, nil
}

// backoff is go-retryablehttp's Backoff for one call: the wait checkRetry
// decided.
func (p *retryPolicy) backoff(_, _ time.Duration, _ int, _ *http.Response) time.Duration {
	return p.wait
}

func (p *retryPolicy) decide(ctx context.Context, resp *http.Response, err error) (bool, time.Duration) {
	if ctx.Err() != nil {
		return false, 0
	}
	if err != nil && resp != nil {
		// The body was cut short: the request reached the server.
		return p.idempotent, p.exponential()
	}
	if err != nil {
		var abort *clientAbort
		if errors.As(err, &abort) {
			return false, 0 // refused on our side: the limiter or the signer said no
		}
		if neverReachedServer(err) || p.idempotent {
			return true, p.exponential()
		}
		return false, 0
	}
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests:
		if hint, ok := p.hint(resp); ok {
			return hint <= p.c.maxWait, hint
		}
		return true, p.exponential()
	case s == http.StatusRequestTimeout:
		return p.adjustClock(resp), 0
	case s == http.StatusBadGateway || s == http.StatusServiceUnavailable || s == http.StatusGatewayTimeout:
		if hint, ok := p.hint(resp); ok {
			return hint <= p.c.maxWait, hint
		}
		return true, p.exponential()
	case s >= 500 && s != http.StatusNotImplemented && s != http.StatusHTTPVersionNotSupported:
		return p.idempotent, p.exponential()
	}
	return false, 0
}

// hint is the wait a response asks for: Retry-After, else the rate-limit
// reset when no quota remains.
func (p *retryPolicy) hint(resp *http.Response) (time.Duration, bool) {
	now := p.c.clock.Now()
	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), now); ok {
		return d, true
	}
	if info, ok := parseRateHeaders(resp.Header, now); ok && info.remaining == 0 && !info.reset.IsZero() {
		return max(info.reset.Sub(now), 0), true
	}
	return 0, false
}

// exponential is min(2^attempt x base, maxWait) with equal jitter.
func (p *retryPolicy) exponential() time.Duration {
	d := p.c.backoffBase << min(p.attempt-1, 30)
	if d <= 0 || d > p.c.maxWait {
		d = p.c.maxWait
	}
	half := d / 2
	return half + rand.N(half+1)
}

// fits reports whether waiting d still leaves the call inside ctx's deadline.
func (p *retryPolicy) fits(ctx context.Context, d time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return !ok || d < time.Until(deadline)
}

// adjustClock handles 408 TIMESTAMP_OUT_OF_RANGE once per call: it measures
// the worker's clock from serverTime or the Date header and shifts every
// later signature of the client by the offset.
func (p *retryPolicy) adjustClock(resp *http.Response) bool {
	if p.clockAdjusted || p.c.signer.scheme == SigningBodyPath {
		return false
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if e := newAPIError(resp.StatusCode, resp.Header, body); e.Code != CodeTimestampOutOfRange {
		return false
	}
	t, ok := serverTime(resp.Header, body)
	if !ok {
		return false
	}
	offset := t.Unix() - p.c.clock.Now().Unix()
	p.c.signer.offset.Store(offset)
	p.clockAdjusted = true
	p.c.logger.LogAttrs(context.Background(), slog.LevelWarn, "sheen: local clock differs from the worker's; adjusting signatures",
		slog.Int64("offset_seconds", offset))
	return true
}

func (p *retryPolicy) log(ctx context.Context, resp *http.Response, err error, retry bool, wait time.Duration) {
	if !p.c.logger.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", p.method),
		slog.String("path", p.path),
		slog.Int("attempt", p.attempt),
	}
	if resp != nil {
		attrs = append(attrs, slog.Int("status", resp.StatusCode))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", redactedError(err)))
	}
	if retry {
		attrs = append(attrs, slog.Duration("wait", wait))
	}
	p.c.logger.LogAttrs(ctx, slog.LevelDebug, "sheen: attempt", attrs...)
}

// readBody is the call's go-retryablehttp response handler: it reads the
// body into memory (capped: error bodies at a few KiB, others at
// maxResponseBody plus one byte so the excess is noticed) inside the retry
// loop, so a body cut short is retried like any other transport failure.
func (p *retryPolicy) readBody(resp *http.Response) error {
	p.bodyRead = true
	limit := int64(maxResponseBody + 1)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		limit = maxErrorBody * 4
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return &bodyReadError{err}
	}
	p.body, p.haveBody = body, true
	return nil
}

// responseBody returns the final response's body: the one readBody kept,
// or, when retries ran out before it could run, read now (capped).
func (p *retryPolicy) responseBody(resp *http.Response) ([]byte, error) {
	if p.haveBody {
		return p.body, nil
	}
	limit := int64(maxResponseBody + 1)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		limit = maxErrorBody * 4
	}
	return io.ReadAll(io.LimitReader(resp.Body, limit))
}

// bodyReadError is a response body that could not be read in full.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "reading response body: " + e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }

// neverReachedServer reports errors that prove the request was not
// delivered (connection refused, DNS failure), so any method may be retried.
func neverReachedServer(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

// clientAbort marks errors raised inside the transport before anything was
// sent (a rate-limit wait that cannot fit, a signing failure): they are
// final, never retried.
type clientAbort struct{ err error }

func (e *clientAbort) Error() string { return e.err.Error() }
func (e *clientAbort) Unwrap() error { return e.err }
