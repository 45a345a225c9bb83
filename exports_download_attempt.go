package sheen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/sheenapps/sheen-go/internal/wire"
)

// downloader is the state of one download.
type downloader struct {
	s        *ExportsService
	core     *core
	st       *exportsState
	opts     downloadOptions
	callOpts []CallOption // for the worker call that refreshes the link
	w        io.Writer
	reset    func() error
	link     DownloadLink
	res      *DownloadResult
	sniff    *sniffer

	written   int64
	mark      int64 // the furthest offset any attempt reached: progress is what passes it
	total     int64 // -1 unknown; set by the first response that tells
	validator string
	status    int
	buf       []byte
	obs       *downloadObs // the download's telemetry, nil when none records

	// reported is the (written, total) the progress callback last got,
	// valid once reportedAny: it is called again only when they change.
	reported    [2]int64
	reportedAny bool
}

// newDownloader is a download of link into w with the settings o.
func (s *ExportsService) newDownloader(link DownloadLink, w io.Writer, o downloadOptions, opts []CallOption) *downloader {
	return &downloader{
		s:        s,
		core:     s.client.core,
		st:       &s.client.exports,
		opts:     o,
		callOpts: opts,
		w:        w,
		reset:    writerReset(w),
		link:     link,
		res:      &DownloadResult{Total: -1, Format: FormatUnknown, Link: link},
		sniff:    new(sniffer),
	}
}

// failure is why one attempt ended early.
type failure struct {
	err       error
	retry     bool          // resuming may help
	wait      time.Duration // the object store asked for this wait
	expired   bool          // 403: a fresh link may help
	terminate bool          // the download is complete after all
}

var errStalled = errors.New("no data within the stall timeout")

// run makes attempts until the archive is complete or a failure is final.
func (d *downloader) run(ctx context.Context) error {
	d.total = -1
	d.buf = make([]byte, downloadBufSize)
	d.progress()
	budget := retryBudget{max: d.opts.retries}
	for {
		f := d.attempt(ctx)
		gained := d.advance()
		d.obs.interrupted(f, d.written, d.status)
		if f == nil || f.terminate {
			d.res.Written, d.res.Total = d.written, d.total
			return nil
		}
		if ctx.Err() != nil {
			return d.fail(ctx.Err())
		}
		if f.expired {
			if err := d.refreshLink(ctx); err != nil {
				return d.fail(err)
			}
			continue
		}
		if !f.retry || !budget.spend(gained) {
			return d.fail(f.err)
		}
		if err := d.pause(ctx, f, budget.idle); err != nil {
			return d.fail(err)
		}
	}
}

// refreshLink replaces a link the object store refused with a fresh one
// from the worker, once per download.
func (d *downloader) refreshLink(ctx context.Context) error {
	if d.res.LinkRefreshed || d.link.from.kind == "" {
		return fmt.Errorf("%w: object store answered 403", ErrLinkExpired)
	}
	d.log(ctx, slog.LevelInfo, "sheen: download link refused; fetching a fresh one")
	fresh, err := d.s.refresh(ctx, d.link, d.callOpts)
	if err != nil {
		return fmt.Errorf("fetching a fresh link: %w", err)
	}
	d.link, d.res.Link, d.res.LinkRefreshed = fresh, fresh, true
	return nil
}

// pause waits before the next attempt: what the object store asked for
// (Retry-After), else the download backoff for idle failures in a row
// without progress. It returns f's error when the store asks for a wait
// over the client's maximum, or the context's when it ends first.
func (d *downloader) pause(ctx context.Context, f *failure, idle int) error {
	wait := f.wait
	if wait > d.core.maxWait {
		return f.err
	}
	if wait <= 0 {
		wait = d.st.backoff.delay(idle)
	}
	d.log(ctx, slog.LevelInfo, "sheen: download interrupted; resuming",
		slog.Int64("offset", d.written), slog.String("error", f.err.Error()), slog.Duration("wait", wait))
	return sleep(ctx, d.core.clock, wait)
}

func (d *downloader) fail(err error) error {
	d.res.Written, d.res.Total = d.written, d.total
	return &DownloadError{
		URL:        redactURL(d.link.SignedURL()),
		StatusCode: d.status,
		Written:    d.written,
		Expected:   d.total,
		Attempts:   d.res.Attempts,
		Err:        err,
	}
}

func (d *downloader) log(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	if d.core.logger.Enabled(ctx, level) {
		d.core.logger.LogAttrs(ctx, level, msg, append([]slog.Attr{slog.Any("link", d.link)}, attrs...)...)
	}
}

// advance moves the high-water mark to the current offset and returns how
// far past the old mark the last attempt took the download. An attempt that
// only wrote again what an earlier one had written (after a restart from
// the first byte, when the store ignored Range) brought nothing, however
// many bytes it wrote: otherwise a store that restarts and breaks at the
// same place would count as progressing for ever.
func (d *downloader) advance() int64 {
	gained := max(d.written-d.mark, 0)
	d.mark = max(d.mark, d.written)
	return gained
}

// progress calls the progress callback when what it was last told
// changed: a resume, which changes neither the offset nor the total, calls
// nothing.
func (d *downloader) progress() {
	if d.opts.progress == nil {
		return
	}
	now := [2]int64{d.written, d.total}
	if d.reportedAny && now == d.reported {
		return
	}
	d.reported, d.reportedAny = now, true
	d.opts.progress(d.written, d.total)
}

// attempt makes one request from the current offset and copies what it
// brings. nil means the archive is complete.
func (d *downloader) attempt(ctx context.Context) *failure {
	a := newAttemptContext(ctx, d.opts.stall)
	defer a.stop()
	resp, f := d.send(a)
	if f != nil {
		return f
	}
	defer resp.Body.Close()
	d.status = resp.StatusCode
	d.log(ctx, slog.LevelDebug, "sheen: download attempt",
		slog.Int64("offset", d.written), slog.Int("status", resp.StatusCode), slog.Int("attempt", d.res.Attempts))
	if f := d.accept(resp); f != nil {
		return f
	}
	d.progress()
	if f := d.copyBody(a, resp.Body); f != nil {
		return f
	}
	if d.total >= 0 && d.written < d.total {
		return &failure{err: truncated(errors.New("body ended early")), retry: true}
	}
	return nil
}

// attemptContext is one attempt's context: the caller's, cancelled by a
// watchdog when no data arrives within the stall timeout.
type attemptContext struct {
	parent context.Context // the caller's
	ctx    context.Context // the attempt's
	cancel context.CancelCauseFunc
	stall  time.Duration
	timer  *time.Timer // nil: no stall timeout
}

func newAttemptContext(parent context.Context, stall time.Duration) *attemptContext {
	a := &attemptContext{parent: parent, stall: stall}
	a.ctx, a.cancel = context.WithCancelCause(parent)
	if stall > 0 {
		a.timer = time.AfterFunc(stall, func() { a.cancel(errStalled) })
	}
	return a
}

// pauseWatchdog stops timing while the writer and the progress callback
// run: the watchdog times the network only.
func (a *attemptContext) pauseWatchdog() {
	if a.timer != nil {
		a.timer.Stop()
	}
}

// resumeWatchdog gives the network a fresh stall timeout.
func (a *attemptContext) resumeWatchdog() {
	if a.timer != nil {
		a.timer.Reset(a.stall)
	}
}

func (a *attemptContext) stop() {
	if a.timer != nil {
		a.timer.Stop()
	}
	a.cancel(nil)
}

// broken is a failure of the connection: a stall (retryable) when the
// watchdog cancelled the attempt, final when the caller's context ended,
// else retryable.
func (a *attemptContext) broken(err error) *failure {
	if context.Cause(a.ctx) == errStalled && a.parent.Err() == nil {
		err = errStalled
	}
	return &failure{err: err, retry: a.parent.Err() == nil}
}

// send makes the request for the bytes from the current offset on.
func (d *downloader) send(a *attemptContext) (*http.Response, *failure) {
	req, err := http.NewRequestWithContext(a.ctx, http.MethodGet, d.link.SignedURL(), nil)
	if err != nil {
		return nil, &failure{err: errors.New("cannot build the request: " + wire.RedactedError(err))}
	}
	if err := checkDownloadScheme(nil, req.URL, d.st.insecureHTTP); err != nil {
		return nil, &failure{err: err}
	}
	req.Header.Set("User-Agent", d.core.userAgent)
	// Bytes as stored: no transparent decompression, Range stays exact.
	req.Header.Set("Accept-Encoding", "identity")
	if d.written > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(d.written, 10)+"-")
		if d.validator != "" {
			req.Header.Set("If-Range", d.validator)
		}
	}
	d.res.Attempts++
	resp, err := d.st.download.Do(req)
	if errors.Is(err, ErrInsecureDownload) {
		return nil, &failure{err: newTransportError(err)}
	}
	if err != nil {
		return nil, a.broken(newTransportError(err))
	}
	return resp, nil
}

// accept reads the response's status and headers: nil when its body is
// the archive (from the current offset) and is to be copied.
func (d *downloader) accept(resp *http.Response) *failure {
	var f *failure
	switch resp.StatusCode {
	case http.StatusOK:
		f = d.acceptWhole(resp)
	case http.StatusPartialContent:
		f = d.acceptPartial(resp)
	case http.StatusForbidden:
		return &failure{err: ErrLinkExpired, expired: true}
	case http.StatusRequestedRangeNotSatisfiable:
		if d.total >= 0 && d.written == d.total {
			return &failure{terminate: true}
		}
		return &failure{err: errors.New("object store answered 416 Range Not Satisfiable")}
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		f := &failure{err: storeStatusError(resp.StatusCode), retry: true}
		f.wait, _ = parseRetryAfter(resp.Header.Get("Retry-After"), d.core.clock.Now())
		return f
	default:
		return &failure{err: storeStatusError(resp.StatusCode)}
	}
	if f != nil {
		return f
	}
	if d.opts.maxSize > 0 && d.total > d.opts.maxSize {
		return &failure{err: fmt.Errorf("%w: archive is %d bytes, over the limit of %d", ErrPayloadTooLarge, d.total, d.opts.maxSize)}
	}
	return nil
}

func storeStatusError(code int) error {
	return fmt.Errorf("object store answered %d %s", code, http.StatusText(code))
}

// acceptWhole takes a 200: the whole archive. After a break it means the
// object store ignored Range, so the writer is reset when it can be.
func (d *downloader) acceptWhole(resp *http.Response) *failure {
	if mediaType(resp.Header.Get("Content-Type"), "") == "text/html" {
		// A CDN's or the store's maintenance page, not the archive: it is
		// never written, and may be gone on the next attempt.
		return &failure{err: fmt.Errorf("%w: the object store answered a page of text/html where the archive was due", ErrInvalidResponse), retry: true}
	}
	if d.written > 0 {
		if d.reset == nil {
			return &failure{err: ErrRangeIgnored}
		}
		if err := d.reset(); err != nil {
			return &failure{err: fmt.Errorf("resetting the writer to start again: %w", err)}
		}
		d.written = 0
		d.sniff.n = 0
		d.res.Restarts++
	}
	d.total = resp.ContentLength
	d.validator = rangeValidator(resp.Header)
	return nil
}

// acceptPartial takes a 206: the rest of the archive, from exactly the
// offset asked for, of the length known so far.
func (d *downloader) acceptPartial(resp *http.Response) *failure {
	start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
	if !ok || start != d.written || d.written == 0 {
		return &failure{err: fmt.Errorf("object store answered Content-Range %q to a request from byte %d", resp.Header.Get("Content-Range"), d.written)}
	}
	if total >= 0 && d.total >= 0 && total != d.total {
		return &failure{err: fmt.Errorf("archive changed length from %d to %d bytes during the download", d.total, total)}
	}
	if total >= 0 {
		d.total = total
	}
	d.res.Resumes++
	return nil
}

// copyBody copies body into the writer until it ends: nil at its end,
// else why it stopped.
func (d *downloader) copyBody(a *attemptContext, body io.Reader) *failure {
	for {
		// Bytes already buffered are read without touching the network, so
		// a cancelled context is noticed here, not only by the next read.
		if err := a.parent.Err(); err != nil {
			return &failure{err: err}
		}
		n, rerr := body.Read(d.buf)
		if n > 0 {
			a.pauseWatchdog()
			if f := d.write(d.buf[:n]); f != nil {
				return f
			}
			a.resumeWatchdog()
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return readFailure(a, rerr)
		}
	}
}

// readFailure is a body that broke off: the archive is truncated, whether
// by the network, the stall watchdog or the caller.
func readFailure(a *attemptContext, rerr error) *failure {
	cause := errClosedEarly
	if !errors.Is(rerr, io.ErrUnexpectedEOF) {
		cause = newTransportError(rerr)
	}
	f := a.broken(cause)
	f.err = truncated(f.err)
	return f
}

// write hands p, the next bytes of the archive, to the writer and reports
// progress.
func (d *downloader) write(p []byte) *failure {
	if d.opts.maxSize > 0 && d.written+int64(len(p)) > d.opts.maxSize {
		return &failure{err: fmt.Errorf("%w: archive is over the limit of %d bytes", ErrPayloadTooLarge, d.opts.maxSize)}
	}
	d.sniff.feed(d.written, p)
	wn, werr := d.w.Write(p)
	if wn > 0 {
		d.written += int64(min(wn, len(p)))
	}
	if werr == nil && wn < len(p) {
		werr = io.ErrShortWrite
	}
	if werr != nil {
		return &failure{err: fmt.Errorf("writing: %w", werr)}
	}
	d.progress()
	return nil
}
