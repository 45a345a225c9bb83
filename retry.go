package sheen

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"reflect"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/sheenapps/sheen-go/internal/jsonx"
	"github.com/sheenapps/sheen-go/internal/wire"
)

// defaultBackoffBase is the first backoff step when the worker gave no hint.
const defaultBackoffBase = time.Second

// The retry rule, one row per way an attempt can end. "Safe" calls are GET,
// HEAD, PUT, DELETE and OPTIONS, calls with an Idempotency-Key on a route
// that does not ignore it (ignoresIdempotencyKey: the build-starting POSTs
// do), and the service calls that only read (the billing checks); the rest (a build
// started, a project updated) may bill and are never sent twice unless the
// worker provably did not act on them:
//
//	attempt ended with                          safe call        other call
//	connection refused, DNS failure, dial error retried          retried
//	  or TLS handshake timeout
//	TLS certificate not trusted, or the other   final            final
//	  end does not speak TLS
//	the client's own limiter or signer refused  final            final
//	reset or attempt timeout after sending      retried          ErrOutcomeUnknown
//	2xx cut short                               retried          ErrOutcomeUnknown
//	2xx not usable (not JSON, not the shape     final            ErrOutcomeUnknown
//	  the call expects, over the size cap)
//	408 TIMESTAMP_OUT_OF_RANGE, 401 serverTime  retried once     retried once
//	  (only when the signer corrected its clock or scheme from it)
//	429                                         retried          retried
//	502, 503, 504                               retried          ErrOutcomeUnknown
//	500 and other 5xx (not 501, 505)            retried          ErrOutcomeUnknown
//	any other status                            final            final
//
// A non-2xx answer is judged by its status even when its body was cut
// short: the status proves the worker answered. A 2xx the worker wrote to
// say it did not act (success:false, no build id) is its word: final, and
// not ambiguous. An answer read whole is the call's result even if the
// context ends just after it; otherwise a context that ended stops the call.
//
// Waits: Retry-After (or the rate-limit reset) when the worker gives one,
// else min(2^attempt x base, max wait) with jitter; a wait longer than the
// max wait or past the context's deadline ends the call at once.

// retryPolicy follows one call through its attempts: after each one, it
// reads the answer (2xx decoded into out, others kept capped), asks
// decideRetry, logs the attempt and keeps the wait for go-retryablehttp's
// Backoff. Each call has its own (in a pooled retryRun); go-retryablehttp
// calls checkRetry once per attempt.
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
	refused   bool          // answerErr is the worker's word that it did not act
	lastResp  *http.Response
	obs       *callObs // the call's telemetry, nil when none records
}

// retryRun is one call's retry loop: its policy and the go-retryablehttp
// client that consults it, bound to each other once. Runs are pooled, so a
// call allocates neither of them nor the two method values.
type retryRun struct {
	policy retryPolicy
	client retryablehttp.Client
}

var retryRuns = sync.Pool{New: func() any {
	r := &retryRun{}
	r.client.CheckRetry, r.client.Backoff = r.policy.checkRetry, r.policy.backoff
	r.client.ErrorHandler = retryablehttp.PassthroughErrorHandler
	return r
}}

// newRetryRun takes a run from the pool for policy, sending through hc.
func newRetryRun(hc *http.Client, policy retryPolicy) *retryRun {
	r := retryRuns.Get().(*retryRun)
	r.policy = policy
	r.client.HTTPClient, r.client.RetryMax = hc, policy.rule.maxAttempts-1
	return r
}

// release gives the run back to the pool, forgetting the call: nothing of
// it may be used afterwards (the errors made from it hold copies).
func (r *retryRun) release() {
	r.policy = retryPolicy{}
	r.client.HTTPClient = nil
	retryRuns.Put(r)
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
	err       error       // the transport's failure, or a 2xx answer cut short
	corrected bool        // the signer corrected its clock or scheme from this answer
	now       time.Time   // when the attempt ended, on the client's Clock (for Retry-After dates)
	deadline  time.Time   // the call's context's deadline (on the wall clock), zero for none
	done      bool        // the call's context has ended: no retry
}

// checkRetry is go-retryablehttp's CheckRetry for one call.
func (p *retryPolicy) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	p.attempt++
	a := attempt{n: p.attempt, err: err, now: p.c.clock.Now()} // not done: see below
	a.deadline, _ = ctx.Deadline()
	p.lastResp, p.answerErr, p.errBody, p.refused = resp, nil, nil, false
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
	if a.err == nil && p.answerErr != nil && !p.refused {
		// A 2xx that cannot be used (a page of HTML, no body, JSON of
		// another shape, an answer over the cap): something answered
		// success, so the worker may have acted.
		ambiguous = true
	}
	var stop error
	if ctxErr := ctx.Err(); ctxErr != nil && (resp == nil || a.err != nil || retry) {
		// The context ended before the call had its answer: it ends the
		// call. An answer read whole that ends the call anyway (a decoded
		// success above all) stands, whatever the context did after it.
		retry, stop = false, ctxErr
	}
	p.ambiguous, p.wait = ambiguous, wait
	p.obs.endAttempt(ctx, a, resp, p.errBody, retry, wait)
	p.log(ctx, resp, a.err, retry, wait)
	return retry, stop
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
	// The wait would outlast the call. The deadline is the context's, on
	// the wall clock, whatever clock the client was given (WithClock).
	if retry && !a.deadline.IsZero() && wait >= time.Until(a.deadline) {
		retry = false
	}
	return retry, wait, ambiguous
}

// classify is decideRetry before the limits on attempts and time.
func classify(a attempt, idempotent bool, rule retryRule) (retry bool, wait time.Duration, ambiguous bool) {
	backoff := exponential(a.n, rule)
	switch {
	case a.err != nil && a.status != 0:
		return idempotent, backoff, true // the answer was cut short
	case a.err != nil && isClientAbort(a.err):
		return false, 0, false // refused on our side: nothing was sent
	case a.err != nil && tlsRefused(a.err):
		return false, 0, false // nothing was sent, and another try fails the same way
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
		attrs = append(attrs, slog.String("error", wire.RedactedError(err)))
	}
	if retry {
		attrs = append(attrs, slog.Duration("wait", wait))
	}
	p.c.logger.LogAttrs(ctx, slog.LevelDebug, "sheen: attempt", attrs...)
}

// readAnswer reads one attempt's answer inside the retry loop, so that a
// 2xx cut short is retried like any other transport failure: a 2xx is read
// into a pooled buffer (never more than maxResponseBody bytes, so
// concurrent oversized answers cost bounded memory) and decoded into the
// call's out; any other answer is kept, capped, for the error. It returns a
// *bodyReadError when the connection dropped in the middle of a 2xx. An
// error answer cut short keeps what arrived: its status alone proves the
// worker answered, and says what the answer means.
func (p *retryPolicy) readAnswer(resp *http.Response) error {
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		p.errBody, _ = io.ReadAll(io.LimitReader(resp.Body, maxErrorBody*4))
		return nil
	}
	if raw, ok := p.out.(*[]byte); ok {
		b, err := readCapped(resp.Body, nil)
		*raw = b
		return p.setAnswerErr(err)
	}
	buf := answerBuffers.Get().(*[]byte)
	defer putAnswerBuffer(buf)
	b, err := readCapped(resp.Body, (*buf)[:0])
	*buf = b
	if err == nil && p.out != nil {
		err = decodeAnswer(resp, b, p.out)
		p.refused = err != nil && refusedByWorker(b, err)
	}
	return p.setAnswerErr(err)
}

// setAnswerErr records why an answer is unusable and returns the error the
// retry rule must see: a *bodyReadError for an answer cut short, nil for
// one that arrived whole (even if it could not be decoded).
func (p *retryPolicy) setAnswerErr(err error) error {
	p.answerErr = err
	if err != nil && isCutShort(err) {
		return err
	}
	return nil
}

// isCutShort reports an answer whose connection dropped midway.
func isCutShort(err error) bool {
	var cut *bodyReadError
	return errors.As(err, &cut)
}

// answerBuffers holds buffers for reading answers; only small ones go back.
var answerBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func putAnswerBuffer(b *[]byte) {
	if cap(*b) <= 64<<10 {
		answerBuffers.Put(b)
	}
}

// errAnswerTooLarge ends the reading of an answer over maxResponseBody.
var errAnswerTooLarge = fmt.Errorf("answer is over %d bytes", maxResponseBody)

// readCapped appends r to buf, at most maxResponseBody bytes: more is
// errAnswerTooLarge, a read that fails midway a *bodyReadError.
func readCapped(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case len(buf) > maxResponseBody:
			return buf[:maxResponseBody], errAnswerTooLarge
		case err == io.EOF:
			return buf, nil
		case err != nil:
			return buf, &bodyReadError{err}
		}
	}
}

// decodeAnswer decodes a whole 2xx answer into out, reset first so a
// retried attempt leaves nothing of an earlier one.
func decodeAnswer(resp *http.Response, body []byte, out any) error {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(trimmed) == 0 && resp.StatusCode == http.StatusNoContent:
		// No content reads as null: a wire type that checks itself refuses it.
		return json.Unmarshal([]byte("null"), out)
	case len(trimmed) == 0:
		return &notJSONError{"empty body where JSON was expected"}
	case trimmed[0] == '<' && !isJSONType(resp.Header.Get("Content-Type")):
		return &notJSONError{"got a page of " + mediaType(resp.Header.Get("Content-Type"), "markup") + " where JSON was expected"}
	}
	if v := reflect.ValueOf(out); v.Kind() == reflect.Pointer && !v.IsNil() {
		v.Elem().SetZero()
	}
	if w, ok := out.(answerUnmarshaler); ok {
		// The body is a pooled buffer: the wire type keeps a copy.
		return w.unmarshalAnswer(bytes.Clone(trimmed))
	}
	if err := json.Unmarshal(trimmed, out); err != nil {
		return fmt.Errorf("decoding JSON: %w", err)
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

// notJSONError is a 2xx answer that is not JSON at all.
type notJSONError struct{ msg string }

func (e *notJSONError) Error() string { return e.msg }

// refusedByWorker reports an unusable 2xx answer, body, that is the
// worker's own word that it did not act: a success:false refusal (an
// *APIError from the call's wire type), or a build answer without a build
// id (ErrBuildNotQueued) that is an object saying success:true, as the
// deployed worker answers when queueing failed. Any other unusable 2xx (no
// body, a page of HTML, JSON that does not parse or is not the shape the
// call expects, an answer over the cap) may have come after the worker
// acted.
func refusedByWorker(body []byte, err error) bool {
	var refusal *APIError
	if errors.As(err, &refusal) {
		return true
	}
	if !errors.Is(err, ErrBuildNotQueued) {
		return false
	}
	var said struct {
		Success jsonx.LooseBool `json:"success"`
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	return len(trimmed) > 0 && trimmed[0] == '{' && jsonx.DecodeLoosely(trimmed, &said) && said.Success.Valid && said.Success.Bool
}

// bodyReadError is a response body that could not be read in full.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "reading response body: " + e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }

// neverReachedServer reports errors that prove the request was not
// delivered (connection refused, DNS failure, a TLS handshake that did not
// complete), so any method may be retried.
func neverReachedServer(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) || tlsRefused(err) || tlsHandshakeTimedOut(err) {
		return true
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

// isClientAbort reports an error the transport raised before sending.
func isClientAbort(err error) bool {
	var abort *clientAbort
	return errors.As(err, &abort)
}

// clientAbort marks errors raised inside the transport before anything was
// sent (a rate-limit wait that cannot fit, a signing failure): they are
// final, never retried.
type clientAbort struct{ err error }

func (e *clientAbort) Error() string { return e.err.Error() }
func (e *clientAbort) Unwrap() error { return e.err }

// tlsRefused reports a TLS handshake that failed for good before anything
// was sent: the worker's certificate did not verify (unknown authority,
// wrong host name, expired), or the other end does not speak TLS (it
// answered plain HTTP, or its first record is no TLS handshake). Trying
// again would fail the same way, so such a failure is final.
func tlsRefused(err error) bool {
	var (
		verify    *tls.CertificateVerificationError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		roots     x509.SystemRootsError
		record    tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &verify), errors.As(err, &authority), errors.As(err, &hostname),
		errors.As(err, &invalid), errors.As(err, &roots):
		return true
	case errors.Is(err, http.ErrSchemeMismatch):
		return true // net/http's name for a record header that reads "HTTP/"
	case errors.As(err, &record):
		// Only the first record's error carries the connection: later ones
		// (a record too large, a version changed) may come after sending.
		return record.Conn != nil
	}
	return false
}

// tlsHandshakeMessage is the text of net/http's error for a TLS handshake
// that did not finish within Transport.TLSHandshakeTimeout (its type is not
// exported).
const tlsHandshakeMessage = "net/http: TLS handshake timeout"

// tlsHandshakeTimedOut reports net/http's TLS handshake timeout: the
// handshake did not finish, so the request was not sent.
func tlsHandshakeTimedOut(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if t, ok := err.(interface{ Timeout() bool }); ok && t.Timeout() && err.Error() == tlsHandshakeMessage {
			return true
		}
	}
	return false
}
