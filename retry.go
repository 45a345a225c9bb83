package sheen

import (
	"bufio"
	"bytes"
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

// retryPolicy follows one call through its attempts: after each one, it
// reads the answer (2xx decoded into out, others kept capped), asks
// decideRetry, logs the attempt and keeps the wait for go-retryablehttp's
// Backoff. One is made per call; go-retryablehttp calls checkRetry once per
// attempt.
type retryPolicy struct {
	c          *core
	method     string
	path       string // without query, for logs
	idempotent bool   // safe to send twice (see the table above)
	out        any    // where a 2xx answer is decoded, nil to discard it
	rule       retryRule

	attempt   int
	wait      time.Duration // the wait decided for the next attempt
	signerGen uint64        // the signer's corrections seen so far
	corrected bool          // the one retry after a signer correction was spent
	ambiguous bool          // the last attempt may have been acted on
	errBody   []byte        // the last non-2xx answer's body (capped)
	answerErr error         // why the last 2xx answer could not be used
	lastResp  *http.Response
}

// retryRule is the client's retry settings for one call.
type retryRule struct {
	maxAttempts int
	maxWait     time.Duration
	backoffBase time.Duration
}

// attempt is what the retry rule needs to know of one attempt.
type attempt struct {
	n         int         // 1 for the first attempt
	status    int         // 0 when there was no answer
	header    http.Header // the answer's header
	err       error       // the transport's failure, or the answer cut short
	corrected bool        // the signer corrected its clock or scheme from this answer
	now       time.Time   // when the attempt ended
	deadline  time.Time   // the call's deadline, zero for none
	done      bool        // the call's context has ended
}

// checkRetry is go-retryablehttp's CheckRetry for one call.
func (p *retryPolicy) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	p.attempt++
	a := attempt{n: p.attempt, err: err, now: p.c.clock.Now(), done: ctx.Err() != nil}
	a.deadline, _ = ctx.Deadline()
	p.lastResp = resp
	if resp != nil {
		a.status, a.header = resp.StatusCode, resp.Header
		if a.err == nil {
			a.err = p.readAnswer(resp)
		}
		if a.status == http.StatusRequestTimeout || a.status == http.StatusUnauthorized {
			a.corrected = p.signerCorrected()
		}
	}
	retry, wait, ambiguous := decideRetry(a, p.idempotent, p.rule)
	p.ambiguous, p.wait = ambiguous, wait
	p.log(ctx, resp, a.err, retry, wait)
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	return retry, nil
}

// signerCorrected reports whether the signer corrected its clock or scheme
// since the policy last looked, the first time only: one more attempt after
// a correction can pass, a second would repeat the first.
func (p *retryPolicy) signerCorrected() bool {
	gen := p.c.signer.generation()
	corrected := gen != p.signerGen && !p.corrected
	p.signerGen = gen
	p.corrected = p.corrected || corrected
	return corrected
}

// backoff is go-retryablehttp's Backoff for one call: the wait checkRetry
// decided.
func (p *retryPolicy) backoff(_, _ time.Duration, _ int, _ *http.Response) time.Duration {
	return p.wait
}

// decideRetry is the retry rule of the table above, as a function of the
// attempt alone: whether to try again, after how long, and whether the
// worker may have acted on this attempt.
func decideRetry(a attempt, idempotent bool, rule retryRule) (retry bool, wait time.Duration, ambiguous bool) {
	retry, wait, ambiguous = classify(a, idempotent, rule)
	if a.done || a.n >= rule.maxAttempts || wait > rule.maxWait {
		retry = false
	}
	if retry && !a.deadline.IsZero() && wait >= a.deadline.Sub(a.now) {
		retry = false // the wait would outlast the call
	}
	return retry, wait, ambiguous
}

// classify is decideRetry before the limits on attempts and time.
func classify(a attempt, idempotent bool, rule retryRule) (retry bool, wait time.Duration, ambiguous bool) {
	backoff := exponential(a.n, rule)
	var abort *clientAbort
	switch {
	case a.err != nil && a.status != 0:
		return idempotent, backoff, true // the answer was cut short
	case a.err != nil && errors.As(a.err, &abort):
		return false, 0, false // refused on our side: nothing was sent
	case a.err != nil && neverReachedServer(a.err):
		return true, backoff, false
	case a.err != nil:
		return idempotent, backoff, true
	case a.status == http.StatusTooManyRequests:
		if hint, ok := retryHint(a.header, a.now); ok {
			return true, hint, false
		}
		return true, backoff, false
	case a.status == http.StatusRequestTimeout || a.status == http.StatusUnauthorized:
		return a.corrected, 0, false
	case a.status >= 500 && a.status != http.StatusNotImplemented && a.status != http.StatusHTTPVersionNotSupported:
		if hint, ok := retryHint(a.header, a.now); ok {
			return idempotent, hint, true
		}
		return idempotent, backoff, true
	}
	return false, 0, false
}

// retryHint is the wait an answer asks for: Retry-After, else the
// rate-limit reset when no quota remains.
func retryHint(h http.Header, now time.Time) (time.Duration, bool) {
	if d, ok := parseRetryAfter(h.Get("Retry-After"), now); ok {
		return d, true
	}
	if info, ok := parseRateHeaders(h, now); ok && info.remaining == 0 && !info.reset.IsZero() {
		return max(info.reset.Sub(now), 0), true
	}
	return 0, false
}

// exponential is min(2^(n-1) x base, maxWait) with equal jitter.
func exponential(n int, rule retryRule) time.Duration {
	d := rule.backoffBase << min(max(n-1, 0), 30)
	if d <= 0 || d > rule.maxWait {
		d = rule.maxWait
	}
	half := d / 2
	return half + rand.N(half+1)
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

// readAnswer reads one attempt's answer inside the retry loop, so that an
// answer cut short is retried like any other transport failure: a 2xx is
// decoded straight into the call's out (streamed, never more than
// maxResponseBody bytes), any other answer is kept, capped, for the error.
// It returns a *bodyReadError when the connection dropped mid-answer.
func (p *retryPolicy) readAnswer(resp *http.Response) error {
	defer resp.Body.Close()
	p.answerErr, p.errBody = nil, nil
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody*4))
		p.errBody = body
		if err != nil {
			return &bodyReadError{err}
		}
		return nil
	}
	src := &countingReader{r: resp.Body, limit: maxResponseBody}
	p.answerErr = decodeAnswer(resp, src, p.out)
	if src.err != nil && src.err != errAnswerTooLarge {
		p.answerErr = &bodyReadError{src.err}
		return p.answerErr
	}
	return nil
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
	if w, ok := out.(answerUnmarshaler); ok {
		// Sized by Content-Length when the worker sent one: no regrowing.
		buf := bytes.NewBuffer(make([]byte, 0, min(max(resp.ContentLength, 0), maxResponseBody)+bytes.MinRead))
		if _, err := buf.ReadFrom(br); err != nil {
			return err
		}
		return w.unmarshalAnswer(buf.Bytes())
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

// answerUnmarshaler is a wire type that reads a whole answer itself, in
// one pass (a json.Unmarshaler is handed its bytes only after the decoder
// has scanned them twice). b is the answer's body, capped like any other,
// and the wire type's to keep; an error makes the call's *ResponseError.
type answerUnmarshaler interface {
	unmarshalAnswer(b []byte) error
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
