package sheenhttp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/wire"
)

// send forwards a checked request through the client's signing, rate-limited
// transport, once, and streams the answer back.
func (p *proxy) send(w http.ResponseWriter, r *http.Request, fw *forward) {
	w, r, obs := p.c.StartProxy(w, r, fw.route.Pattern, fw.userID) // the span; trace context goes on to the worker
	defer obs.End(r.Context())
	if wait := p.pausedFor(); wait > 0 {
		// The worker said stop (a 429, or no quota left until the window
		// resets): tell the browser now rather than hold its request.
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(wait.Seconds())), 10))
		writeError(w, http.StatusTooManyRequests, proxyCodeRateLimited, "Too many requests; try again later")
		return
	}
	req, no := p.workerRequest(r, fw)
	if no != nil {
		p.answer(w, r, no)
		return
	}
	resp, err := p.c.HTTP.Do(req)
	obs.Answered(resp, err)
	if err != nil {
		p.sendFailed(w, r, err)
		return
	}
	defer resp.Body.Close()
	if p.refusedSignature(r.Context(), resp, fw) {
		// The worker refused the proxy's own signature: a server
		// misconfiguration (secret, scheme, clock), not something the
		// browser can act on; a 401 would send its user to sign in again.
		writeError(w, http.StatusBadGateway, proxyCodeSigning, "The worker refused the proxy's request")
		return
	}
	if resp.StatusCode == http.StatusPaymentRequired ||
		fw.route.method == http.MethodPost && resp.StatusCode/100 == 2 && !strings.HasPrefix(fw.target, "/v1/billing/") {
		p.client.Billing.InvalidateBalance(fw.userID)
	}
	copyAnswerHeaders(w.Header(), resp)
	w.WriteHeader(resp.StatusCode)
	streamBody(r.Context(), w, resp.Body, streams(resp))
}

// workerRequest is the request to the worker: the checked target and body,
// and only headers the proxy sets.
func (p *proxy) workerRequest(r *http.Request, fw *forward) (*http.Request, *proxyRefusal) {
	var body io.Reader
	if fw.body != nil {
		body = hooks.RequestBody(fw.body)
	}
	req, err := http.NewRequestWithContext(r.Context(), fw.route.method, p.base+fw.target, body)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, proxyCodeBadPath, "Invalid path")
	}
	h := make(http.Header, 8) // room for the signer's headers too
	req.Header = h
	h.Set("Accept", "application/json")
	h.Set("User-Agent", p.c.UserAgent)
	if fw.body != nil {
		h.Set("Content-Type", "application/json")
		req.ContentLength = int64(len(fw.body))
	}
	// The browser's correlation id is kept when it is a plain UUID.
	corr := r.Header.Get("X-Correlation-Id")
	if id, err := uuid.Parse(corr); err != nil || len(corr) != 36 {
		corr = uuid.NewString()
	} else {
		corr = id.String()
	}
	h.Set("X-Correlation-Id", corr)
	if key := r.Header.Get("Idempotency-Key"); key != "" && fw.body != nil {
		if len(key) > 256 || strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, refuse(http.StatusBadRequest, codeBadRequest, "Invalid Idempotency-Key")
		}
		// Keys are scoped to the user, so one user can never replay
		// another's answer by sending the same key.
		h.Set("Idempotency-Key", uuid.NewSHA1(proxyIdempotencySpace, []byte(fw.userID+"\x00"+key)).String())
	}
	return req, nil
}

// proxyIdempotencySpace is the UUID namespace of user-scoped idempotency keys.
var proxyIdempotencySpace = uuid.MustParse("6f3a1c52-9d2e-4b7a-8c15-0e4d7b9a2f61")

// refusedSignature reports, and logs, a refusal of the proxy's own
// signature (see workerRefusedSignature). Otherwise it leaves the body
// whole.
func (p *proxy) refusedSignature(ctx context.Context, resp *http.Response, fw *forward) bool {
	refused, peeked := workerRefusedSignature(resp)
	if refused {
		p.c.Logger.LogAttrs(ctx, slog.LevelError, "sheenhttp: proxy: the worker refused the proxy's signature; check the secret, the signing scheme and the clock",
			slog.Int("status", resp.StatusCode), slog.String("method", fw.route.method), slog.String("path", p.c.BasePath+pathOnly(fw.target)))
		return true
	}
	if len(peeked) > 0 {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(peeked), resp.Body), resp.Body}
	}
	return false
}

// workerRefusedSignature reports whether the worker answered with one of
// its signature refusals (401, or a MISSING_SIGNATURE, INVALID_SIGNATURE,
// TIMESTAMP_OUT_OF_RANGE or REPLAY_ATTACK_DETECTED code). It reads at most a
// few KiB of an error body to find the code and returns what it read, to be
// sent on when the answer is anything else.
func workerRefusedSignature(resp *http.Response) (bool, []byte) {
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return true, nil
	case http.StatusForbidden, http.StatusRequestTimeout, http.StatusConflict:
	default:
		return false, nil
	}
	peek, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	switch sheen.ErrorCode(hooks.ErrorCode(resp.StatusCode, peek)) {
	case sheen.CodeMissingSignature, sheen.CodeInvalidSignature, sheen.CodeTimestampOutOfRange, sheen.CodeReplayAttackDetected:
		return true, peek
	}
	return false, peek
}

func pathOnly(target string) string {
	p, _, _ := strings.Cut(target, "?")
	return p
}

// copyAnswerHeaders sets the headers the browser gets: the worker's
// Content-Length, Content-Type (JSON only; anything else, and an answer
// without one, is served as plain text, never with a type net/http would
// sniff from the body), X-Correlation-Id, Retry-After and rate-limit
// headers, and nothing else of the worker's. Every answer is marked
// no-store and nosniff.
func copyAnswerHeaders(h http.Header, resp *http.Response) {
	for k, vs := range resp.Header {
		// The response and its header map are the proxy's alone: the
		// values are handed on without a copy.
		if hasPrefixFold(k, "X-Ratelimit-") || hasPrefixFold(k, "Ratelimit") ||
			strings.EqualFold(k, "Retry-After") || strings.EqualFold(k, "X-Correlation-Id") {
			h[k] = vs
		}
	}
	if ct := resp.Header.Get("Content-Type"); isJSONMediaType(ct) {
		h.Set("Content-Type", ct)
	} else {
		h.Set("Content-Type", "text/plain; charset=utf-8")
	}
	// The body goes on byte for byte, so its length does too; the browser
	// then also sees a cut answer as cut.
	if resp.ContentLength >= 0 && bodyAllowed(resp.StatusCode) {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
}

// bodyAllowed reports whether an answer with this status may have a body
// (and so a Content-Length).
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// isJSONMediaType reports whether a Content-Type is application/json or a
// +json type, ignoring case and parameters.
func isJSONMediaType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(mt)
	return strings.EqualFold(mt, "application/json") || len(mt) > 5 && hasPrefixFold(mt[len(mt)-5:], "+json")
}

// streams reports whether an answer arrives over time (an event stream, or
// chunks without a length), so that each piece must reach the browser as
// soon as it comes.
// A body the transport decompressed has lost its length but is no stream
// for that.
func streams(resp *http.Response) bool {
	mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	if strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
		return true
	}
	return resp.ContentLength < 0 && !resp.Uncompressed
}

// proxyBuffers holds the buffers answers are copied through.
var proxyBuffers = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// streamBody copies a response body to the browser in a pooled buffer,
// flushing each piece as it arrives when flush is set. When the worker's
// body breaks off, the connection to the browser is aborted so the cut
// cannot pass for a whole answer.
func streamBody(ctx context.Context, w http.ResponseWriter, body io.Reader, flush bool) {
	buf := proxyBuffers.Get().(*[32 << 10]byte)
	defer proxyBuffers.Put(buf)
	rc := http.NewResponseController(w)
	for {
		n, err := body.Read(buf[:])
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the browser went away
			}
			if flush {
				_ = rc.Flush()
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			panic(http.ErrAbortHandler)
		}
	}
}

// pausedFor is how long the client's limiter will send nothing: the rest of
// a pause after a 429, or of a window whose quota the worker said is used up.
func (p *proxy) pausedFor() time.Duration {
	snap := p.client.RateLimit()
	now := p.c.Now()
	var wait time.Duration
	if !snap.PausedUntil.IsZero() {
		wait = snap.PausedUntil.Sub(now)
	}
	if snap.Remaining == 0 && !snap.Reset.IsZero() {
		wait = max(wait, snap.Reset.Sub(now))
	}
	return wait
}

// sendFailed answers for a request that got no response from the worker.
func (p *proxy) sendFailed(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the browser went away; nobody is listening
	}
	var rl *sheen.RateLimitError
	if errors.As(err, &rl) {
		if rl.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(rl.RetryAfter.Seconds())), 10))
		}
		writeError(w, http.StatusTooManyRequests, proxyCodeRateLimited, "Too many requests; try again later")
		return
	}
	p.c.Logger.LogAttrs(r.Context(), slog.LevelWarn, "sheenhttp: proxy: worker unreachable",
		slog.String("method", r.Method), slog.String("error", wire.RedactedError(err)))
	writeError(w, http.StatusBadGateway, proxyCodeUnavailable, "The worker could not be reached")
}
