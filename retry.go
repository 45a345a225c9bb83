package sheen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"reflect"
	"syscall"
	"time"
)

// DefaultMaxAttempts is how many times a call is tried in all.
const DefaultMaxAttempts = 4

// DefaultMaxWait caps any single wait between attempts (the seed's 5 minutes).
const DefaultMaxWait = 5 * time.Minute

// DefaultAttemptTimeout bounds one attempt of a call to the worker, from
// sending the request to the end of its answer (WithAttemptTimeout).
const DefaultAttemptTimeout = 30 * time.Second

// defaultBackoffBase is the first backoff step when the worker gave no hint.
const defaultBackoffBase = time.Second

// The retry rule, one row per way an attempt can end. "Safe" calls are GET,
// HEAD, PUT, DELETE and OPTIONS, calls with an Idempotency-Key, and the
// service calls that only read (the billing checks); the rest (a build
// started, a project updated) may bill and are never sent twice unless the
// worker provably did not act on them:
//
//	attempt ended with                          safe call        other call
//	connection refused, DNS failure, dial error retried          retried
//	the client's own limiter or signer refused  final            final
//	reset or attempt timeout after sending      retried          ErrOutcomeUnknown
//	2xx whose body was cut short                retried          ErrOutcomeUnknown
//	408 TIMESTAMP_OUT_OF_RANGE, 401 serverTime  retried once     retried once
//	  (only when the signer corrected its clock or scheme from it)
//	429                                         retried          retried
//	502, 503, 504                               retried          ErrOutcomeUnknown
//	500 and other 5xx (not 501, 505)            retried          ErrOutcomeUnknown
//	any other status                            final            final
//
// Waits: Retry-After (or the rate-limit reset) when the worker gives one,
// else min(2^attempt x base, max wait) with jitter; a wait longer than the
// max wait or past the context's deadline ends the call at once.

// retryPolicy decides, after each attempt of one call, whether to try again
// and how long to wait. One is made per call and plugged into
// go-retryablehttp's CheckRetry and Backoff hooks, so the decision and the
// wait it computes stay together.
type retryPolicy struct {
	c          *core
	method     string
	path       string // without query, for logs
	idempotent bool   // safe to send twice (see the table above)
	out        any    // where a 2xx answer is decoded, nil to discard it

	attempt    int
	wait       time.Duration // the wait decided for the next attempt
	signerGen  uint64        // the signer's corrections seen so far
	corrected  bool          // one retry after a signer correction was spent
	ambiguous  bool          // the last attempt may have been acted on
	bodyRead   bool          // readBody ran since the last checkRetry
	errBody    []byte        // a non-2xx answer's body (capped)
	decodeErr  error         // why a 2xx answer could not be decoded
	haveAnswer bool          // readBody handled the final answer
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
	retry, wait, ambiguous := p.decide(ctx, resp, err)
	p.ambiguous = ambiguous
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

// decide applies the retry rule above to one attempt. ambiguous reports an
// attempt the worker may have acted on.
func (p *retryPolicy) decide(ctx context.Context, resp *http.Response, err error) (retry bool, wait time.Duration, ambiguous bool) {
	if err != nil && resp != nil {
		// The answer was cut short: the request reached the server.
		return p.idempotent && ctx.Err() == nil, p.exponential(), true
	}
	if err != nil {
		var abort *clientAbort
		switch {
		case errors.As(err, &abort):
			return false, 0, false // refused on our side: nothing was sent
		case neverReachedServer(err):
			return ctx.Err() == nil, p.exponential(), false
		}
		return p.idempotent && ctx.Err() == nil, p.exponential(), true
	}
	if ctx.Err() != nil {
		return false, 0, resp.StatusCode >= 500
	}
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests:
		if hint, ok := p.hint(resp); ok {
			return hint <= p.c.maxWait, hint, false
		}
		return true, p.exponential(), false
	case s == http.StatusRequestTimeout || s == http.StatusUnauthorized:
		// The signer has read the refusal (transport.go): when it corrected
		// its clock or scheme from it, one more attempt can pass.
		gen := p.c.signer.generation()
		retry := gen != p.signerGen && !p.corrected
		p.signerGen = gen
		p.corrected = p.corrected || retry
		return retry, 0, false
	case s >= 500 && s != http.StatusNotImplemented && s != http.StatusHTTPVersionNotSupported:
		if !p.idempotent {
			return false, 0, true
		}
		if hint, ok := p.hint(resp); ok {
			return hint <= p.c.maxWait, hint, true
		}
		return true, p.exponential(), true
	}
	return false, 0, false
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
	d := p.c.backoffBase << min(max(p.attempt-1, 0), 30)
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

// readBody is the call's go-retryablehttp response handler. Inside the
// retry loop, so that an answer cut short is retried like any other
// transport failure, it decodes a 2xx answer straight into the call's out
// (streamed, never more than maxResponseBody bytes) and keeps a capped copy
// of an error answer.
func (p *retryPolicy) readBody(resp *http.Response) error {
	p.bodyRead = true
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody*4))
		if err != nil {
			return &bodyReadError{err}
		}
		p.errBody, p.haveAnswer = body, true
		return nil
	}
	src := &countingReader{r: resp.Body, limit: maxResponseBody}
	p.decodeErr = decodeAnswer(resp, src, p.out)
	if src.err != nil && src.err != errAnswerTooLarge {
		return &bodyReadError{src.err} // cut short: retried when safe
	}
	p.haveAnswer = true
	return nil
}

// errorBody returns a non-2xx answer's body: the one readBody kept, or,
// when retries ran out before it could run, read now (capped).
func (p *retryPolicy) errorBody(resp *http.Response) []byte {
	if p.haveAnswer {
		return p.errBody
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody*4))
	return body
}

// errAnswerTooLarge ends the reading of an answer over maxResponseBody.
var errAnswerTooLarge = fmt.Errorf("answer is over %d bytes", maxResponseBody)

// countingReader reads at most limit bytes and remembers the first error
// of the underlying reader, so a decoder's "unexpected EOF" can be told
// apart from a connection that dropped.
type countingReader struct {
	r     io.Reader
	limit int64
	n     int64
	err   error
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.n >= c.limit {
		c.err = errAnswerTooLarge
		return 0, c.err
	}
	if rest := c.limit - c.n; int64(len(p)) > rest {
		p = p[:rest+1] // one byte more, so the excess is noticed
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.limit {
		n -= int(c.n - c.limit)
		c.n = c.limit
		err = errAnswerTooLarge
	}
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// decodeAnswer decodes a 2xx answer into out as a stream: JSON into a
// value (reset first, so a retried attempt leaves nothing of an earlier
// one), the raw bytes into a *[]byte, nothing for a nil out.
func decodeAnswer(resp *http.Response, src io.Reader, out any) error {
	switch o := out.(type) {
	case nil:
		_, err := io.Copy(io.Discard, src)
		return err
	case *[]byte:
		b, err := io.ReadAll(src)
		*o = b
		return err
	}
	br := bufio.NewReaderSize(src, 512)
	first, err := firstByte(br)
	switch {
	case err == io.EOF && resp.StatusCode == http.StatusNoContent:
		return nil
	case err == io.EOF:
		return errors.New("empty body where JSON was expected")
	case err != nil:
		return err
	case first == '<' && !isJSONType(resp.Header.Get("Content-Type")):
		return fmt.Errorf("got a page of %s where JSON was expected", mediaType(resp.Header.Get("Content-Type"), "markup"))
	}
	if v := reflect.ValueOf(out); v.Kind() == reflect.Pointer && !v.IsNil() {
		v.Elem().SetZero()
	}
	dec := json.NewDecoder(br)
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("decoding JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("decoding JSON: data after the JSON value")
	}
	return nil
}

// firstByte peeks at the first byte that is not JSON white space.
func firstByte(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return b, br.UnreadByte()
	}
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
