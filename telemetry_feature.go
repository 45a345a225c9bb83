package sheen

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// The telemetry of the features above single calls: the caches, Follow
// and Wait, downloads and the proxy. Each hook does nothing when no
// provider records.

// cacheLookup counts a lookup in a cache (cacheBalance or cacheLinks) and,
// for a hit, records a span named after the operation on route that it
// answered, marked sheen.cache.hit: the call that made no request.
func (t *telemetry) cacheLookup(ctx context.Context, route, cache, userID string, hit bool) {
	if t == nil {
		return
	}
	if ctx == nil {
		ctx = context.Background()
	}
	set := t.balanceCache
	if cache == cacheLinks {
		set = t.linkCache
	}
	counter := t.inst.cacheMisses
	if hit {
		counter = t.inst.cacheHits
	}
	if counter.Enabled(ctx) {
		counter.Add(ctx, 1, metric.WithAttributeSet(set))
	}
	if !hit || !t.tracing() {
		return
	}
	attrs := t.userAttrs([]attribute.KeyValue{attrOperation.String(operationName(route)), attrCache.String(cache), attrCacheHit.Bool(true)}, userID)
	_, span := t.tracer.Start(ctx, operationName(route), trace.WithAttributes(attrs...))
	span.End()
}

// evictions returns the function a cache calls when it drops an entry to
// make room (ttlCache.onEvict).
func (t *telemetry) evictions(cache string) func() {
	set := t.balanceCache
	if cache == cacheLinks {
		set = t.linkCache
	}
	return func() {
		ctx := context.Background()
		if t.inst.cacheEvictions.Enabled(ctx) {
			t.inst.cacheEvictions.Add(ctx, 1, metric.WithAttributeSet(set))
		}
	}
}

// followObs follows one Follow or Wait: a span for the build, an event
// per phase, and the delivery latency of each event. nil does nothing.
type followObs struct {
	t       *telemetry
	ctx     context.Context
	span    trace.Span // nil when tracing is off
	metrics bool
	source  attribute.Set // sheen.build.event_source
	phase   Phase
	err     error // the error the reading stopped with
}

// noFollowEnd is what traced returns when nothing is observed.
func noFollowEnd() {}

// traced starts the telemetry of f's reading on ctx: the context for its
// fetches (carrying its span), yield wrapped to see the error it ends
// with, and the function that closes it.
func (f *follower) traced(ctx context.Context, yield func(BuildEvent, error) bool) (context.Context, func(BuildEvent, error) bool, func()) {
	t := f.tel
	tracing, metrics := t.tracing(), t.followMetering(ctx)
	if !tracing && !metrics {
		return ctx, yield, noFollowEnd
	}
	o := &followObs{t: t, metrics: metrics, source: attribute.NewSet(attrEventSource.String(sourceName(f.cfg.source)))}
	if tracing {
		attrs := t.userAttrs([]attribute.KeyValue{attrOperation.String(f.op), attrBuildID.String(f.buildID)}, f.userID)
		ctx, o.span = t.tracer.Start(ctx, f.op, trace.WithAttributes(attrs...))
	}
	o.ctx, f.obs = ctx, o
	watch := func(ev BuildEvent, err error) bool {
		if err != nil && o.err == nil {
			o.err = err
		}
		return yield(ev, err)
	}
	return ctx, watch, func() { o.end(f) }
}

// sourceName names an event source for sheen.build.event_source: "worker"
// for the worker's HTTP endpoint, else the source's type.
func sourceName(src EventSource) string {
	if _, ok := src.(*httpEventSource); ok {
		return "worker"
	}
	if t := reflect.TypeOf(src); t != nil {
		return t.String()
	}
	return "unknown"
}

// event records a delivered event: its latency since the worker made it
// (by clock's time), and a span event when it starts a phase.
func (o *followObs) event(ev BuildEvent, clock Clock) {
	if o == nil {
		return
	}
	if o.metrics && !ev.CreatedAt.IsZero() {
		o.t.inst.eventLatency.Record(o.ctx, max(clock.Now().Sub(ev.CreatedAt), 0).Seconds(), metric.WithAttributeSet(o.source))
	}
	if o.span == nil || ev.Phase == "" || ev.Phase == o.phase {
		return
	}
	o.phase = ev.Phase
	o.span.AddEvent("sheen.build.phase", trace.WithAttributes(
		attrPhase.String(string(ev.Phase)), attrEventID.Int64(ev.ID), attrEventType.String(ev.Type)))
}

// end closes the span with how the build ended.
func (o *followObs) end(f *follower) {
	if o.span == nil {
		return
	}
	result := "unfinished"
	switch {
	case f.failure != nil:
		result = "failed"
	case f.success != nil:
		result = "succeeded"
	}
	attrs := []attribute.KeyValue{attrBuildResult.String(result), attrEvents.Int(f.count), attrEventID.Int64(f.cursor)}
	if f.failure != nil {
		code := f.failure.Code
		if f.failure.Error != nil && f.failure.Error.Code != "" {
			code = f.failure.Error.Code
		}
		if code != "" {
			attrs = append(attrs, attrErrorCode.String(code))
		}
		attrs = append(attrs, attrPhase.String(string(f.failure.Phase)))
	}
	o.span.SetAttributes(attrs...)
	switch {
	case o.err != nil:
		endSpan(o.span, o.err, outcomeOf(o.err))
	case f.failure != nil:
		endSpan(o.span, ErrBuildFailed, "build_failed")
	default:
		o.span.End()
	}
}

// downloadObs follows one download: a span with its bytes, attempts,
// resumes and format, an event per interrupted attempt, and the bytes and
// throughput metrics. nil does nothing.
type downloadObs struct {
	t       *telemetry
	ctx     context.Context
	span    trace.Span
	metrics bool
	start   time.Time
}

// startDownload starts the telemetry of a download: nil, and ctx as it is,
// when no provider records.
func (t *telemetry) startDownload(ctx context.Context) (context.Context, *downloadObs) {
	tracing, metrics := t.tracing(), t.downloadMetering(ctx)
	if !tracing && !metrics {
		return ctx, nil
	}
	o := &downloadObs{t: t, metrics: metrics, start: time.Now()}
	if tracing {
		ctx, o.span = t.tracer.Start(ctx, opDownload, trace.WithAttributes(attrOperation.String(opDownload)))
	}
	o.ctx = ctx
	return ctx, o
}

// interrupted records an attempt that ended before the archive did, at
// offset bytes, after an answer of status (0 for none): why (never the URL
// or the error's text), and whether the download goes on.
func (o *downloadObs) interrupted(f *failure, offset int64, status int) {
	if o == nil || o.span == nil || f == nil || f.terminate {
		return
	}
	o.span.AddEvent("sheen.download.interrupted", trace.WithAttributes(
		semconv.ErrorTypeKey.String(downloadFailureType(f, status)), attrDLOffset.Int64(offset),
		attribute.Bool("sheen.download.retry", f.retry || f.expired)))
}

// downloadFailureType is the class of an interrupted attempt whose last
// answer had status.
func downloadFailureType(f *failure, status int) string {
	var te *transportError
	switch {
	case f.expired:
		return "link_expired"
	case errors.Is(f.err, errStalled):
		return "stalled"
	case errors.Is(f.err, ErrTruncated):
		return "truncated"
	case errors.Is(f.err, context.Canceled), errors.Is(f.err, context.DeadlineExceeded):
		return "canceled"
	case errors.As(f.err, &te):
		return "transport"
	case status >= 400:
		return strconv.Itoa(status)
	}
	return "other"
}

// end closes the download with its result.
func (o *downloadObs) end(res *DownloadResult, err error) {
	if o == nil {
		return
	}
	format := attrDLFormat.String(string(res.Format))
	if o.metrics {
		o.t.inst.downloadBytes.Add(o.ctx, res.Written, metric.WithAttributes(format))
		if secs := time.Since(o.start).Seconds(); err == nil && secs > 0 {
			o.t.inst.downloadThroughput.Record(o.ctx, float64(res.Written)/secs, metric.WithAttributes(format))
		}
	}
	if o.span == nil {
		return
	}
	o.span.SetAttributes(format, attrDLBytes.Int64(res.Written), attrDLTotal.Int64(res.Total),
		attrDLAttempts.Int(res.Attempts), attrDLResumes.Int(res.Resumes), attrDLRestarts.Int(res.Restarts),
		attrDLRefreshed.Bool(res.LinkRefreshed))
	endSpan(o.span, err, downloadErrorType(err))
}

// downloadErrorType is the class of a failed download.
func downloadErrorType(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrTruncated):
		return "truncated"
	case errors.Is(err, ErrLinkExpired):
		return "link_expired"
	case errors.Is(err, ErrPayloadTooLarge):
		return "too_large"
	}
	return outcomeOf(err)
}

// proxyWriter remembers the status the browser got.
type proxyWriter struct {
	http.ResponseWriter
	status int
}

func (w *proxyWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *proxyWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the writer's Flush.
func (w *proxyWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// proxyObs follows one forwarded request: a callObs whose attempt is the
// request to the worker, and the writer that sees the browser's status.
type proxyObs struct {
	*callObs
	w *proxyWriter
}

// startProxy starts the telemetry of a request the proxy forwards on
// route (its pattern) for userID. The trace goes on from the span in r's
// context, else from the W3C trace context r carries. It returns w and r
// as they are, and nil, when no provider records.
func (t *telemetry) startProxy(w http.ResponseWriter, r *http.Request, route, userID string) (http.ResponseWriter, *http.Request, *proxyObs) {
	ctx := r.Context()
	tracing, metrics := t.tracing(), t.callMetering(ctx)
	if !tracing && !metrics {
		return w, r, nil
	}
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	method, path := r.Method, routePath(route)
	o := &callObs{t: t, op: opProxy, route: path, method: method, start: time.Now(), metrics: metrics, server: t.server}
	o.opSet = attribute.NewSet(attrOperation.String(opProxy))
	if tracing {
		attrs := append(o.httpAttrs(), attrOperation.String(opProxy), attrProxyRoute.String(route))
		ctx, o.span = t.tracer.Start(ctx, opProxy, trace.WithAttributes(t.userAttrs(attrs, userID)...))
	}
	pw := &proxyWriter{ResponseWriter: w}
	return pw, r.WithContext(context.WithValue(ctx, callObsKey{}, o)), &proxyObs{callObs: o, w: pw}
}

// answered closes the attempt to the worker with its answer, or its
// failure.
func (o *proxyObs) answered(resp *http.Response, err error) {
	if o == nil {
		return
	}
	a := attempt{n: o.attemptN, err: err}
	if resp != nil {
		a.status = resp.StatusCode
	}
	o.endAttempt(context.Background(), a, resp, nil, false, 0)
}

// end closes the forwarded request with the status the browser got.
func (o *proxyObs) end(ctx context.Context) {
	if o == nil {
		return
	}
	o.endOpenAttempt()
	status := o.w.status
	outcome := statusOutcome(status)
	if o.metrics {
		o.t.inst.callDuration.Record(ctx, time.Since(o.start).Seconds(),
			metric.WithAttributes(attrOperation.String(opProxy), attrOutcome.String(outcome)))
	}
	if o.span == nil {
		return
	}
	if status != 0 {
		o.span.SetAttributes(semconv.HTTPResponseStatusCode(status))
	}
	o.span.SetAttributes(attrOutcome.String(outcome), attrAttempts.Int(o.attemptN))
	var err error
	if status >= 500 || status == 0 {
		err = errors.New(outcome) // the span is an error; the text is not recorded
	}
	endSpan(o.span, err, outcome)
}

// statusOutcome is sheen.outcome for the status the proxy answered (0: it
// answered nothing, the browser having gone).
func statusOutcome(status int) string {
	switch {
	case status == 0:
		return "canceled"
	case status == http.StatusTooManyRequests:
		return "rate_limited"
	case status >= 500:
		return "server_error"
	case status >= 400:
		return "client_error"
	}
	return "ok"
}
