package sheen

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// callObs follows one call to the worker for telemetry: its span, the
// attempt under way and what its metrics need. One is made per call, and
// only when a provider records; a nil *callObs does nothing. The core
// makes it (startCall), the signing transport opens each attempt
// (beginAttempt, finding it in the request's context), the retry policy
// closes each attempt (endAttempt) and the core closes the call (endCall).
// Attempts of one call are sequential, so it needs no lock.
type callObs struct {
	t       *telemetry
	op      string
	route   string // the path template, "" when unknown
	method  string
	start   time.Time
	span    trace.Span // nil when tracing is off
	metrics bool
	opSet   attribute.Set        // sheen.operation, for the metrics
	server  []attribute.KeyValue // server.address and server.port

	attempt      trace.Span // the attempt under way, nil between attempts
	attemptN     int
	attemptStart time.Time
}

// callObsKey finds a call's *callObs in its context.
type callObsKey struct{}

// startCall starts the telemetry of a call of method on route (a Route*
// constant, "" for WorkerClient.Do) for userID: nil, and ctx as it is,
// when no provider records.
func (t *telemetry) startCall(ctx context.Context, route, method, userID string) (context.Context, *callObs) {
	return t.startCallTo(ctx, route, method, userID, nil)
}

// startGenerate starts the telemetry of a call to AI.Generate's endpoint,
// endpoint (a URL: only its host and port are recorded).
func (t *telemetry) startGenerate(ctx context.Context, endpoint string) (context.Context, *callObs) {
	var server []attribute.KeyValue
	if u, err := url.Parse(endpoint); err == nil && t.tracing() {
		server = serverAttrs(u)
	}
	return t.startCallTo(ctx, RouteGenerate, http.MethodPost, "", server)
}

// startCallTo is startCall for a server other than the worker's base URL
// (nil: the worker's).
func (t *telemetry) startCallTo(ctx context.Context, route, method, userID string, server []attribute.KeyValue) (context.Context, *callObs) {
	tracing, metrics := t.tracing(), t.callMetering(ctx)
	if !tracing && !metrics {
		return ctx, nil
	}
	o := &callObs{t: t, op: operationName(route), route: routePath(route), method: knownMethod(method), start: time.Now(), metrics: metrics, server: server}
	if o.server == nil {
		o.server = t.server
	}
	if o.method != method {
		o.server = append(append([]attribute.KeyValue(nil), o.server...), semconv.HTTPRequestMethodOriginal(method))
	}
	o.opSet = attribute.NewSet(attrOperation.String(o.op))
	if tracing {
		attrs := append(o.httpAttrs(), attrOperation.String(o.op))
		ctx, o.span = t.tracer.Start(ctx, o.op, trace.WithAttributes(t.userAttrs(attrs, userID)...))
	}
	return context.WithValue(ctx, callObsKey{}, o), o
}

// knownMethod is method as http.request.method records it: one of the
// methods of RFC 9110 and PATCH, else "_OTHER" (the semantic conventions'
// rule, which keeps the attribute's values few; the original goes in
// http.request.method_original).
func knownMethod(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete,
		http.MethodConnect, http.MethodOptions, http.MethodTrace, http.MethodPatch:
		return method
	}
	return "_OTHER"
}

// httpAttrs are the semantic-convention attributes of the call's requests.
func (o *callObs) httpAttrs() []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 8)
	attrs = append(attrs, semconv.HTTPRequestMethodKey.String(o.method))
	if o.route != "" {
		attrs = append(attrs, semconv.URLTemplate(o.route))
	}
	return append(attrs, o.server...)
}

// attemptName is the name of an attempt's span: "METHOD /path/{template}",
// or the method alone when the template is unknown, "HTTP" for a method
// outside knownMethod (semantic conventions for HTTP client spans).
func (o *callObs) attemptName() string {
	method := o.method
	if method == "_OTHER" {
		method = "HTTP"
	}
	if o.route == "" {
		return method
	}
	return method + " " + o.route
}

// beginAttempt opens the telemetry of an attempt of the call observed in
// ctx, if any: its span, a child of the call's, in the context returned.
// The signing transport calls it before it waits for the rate limiter.
func beginAttempt(ctx context.Context) (context.Context, *callObs) {
	o, _ := ctx.Value(callObsKey{}).(*callObs)
	if o == nil {
		return ctx, nil
	}
	o.endOpenAttempt()
	o.attemptN++
	o.attemptStart = time.Now()
	if o.span != nil {
		attrs := append(o.httpAttrs(), attrAttempt.Int(o.attemptN))
		if o.attemptN > 1 {
			attrs = append(attrs, semconv.HTTPRequestResendCount(o.attemptN-1))
		}
		ctx, o.attempt = o.t.tracer.Start(ctx, o.attemptName(), trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	}
	return ctx, o
}

// acquired notes the end of the attempt's wait for the rate limiter.
func (o *callObs) acquired(ctx context.Context) {
	if o == nil {
		return
	}
	waited := time.Since(o.attemptStart)
	if o.attempt != nil {
		o.attempt.SetAttributes(attrLimiterWait.Float64(waited.Seconds()))
	}
	if o.metrics {
		o.t.inst.limiterWait.Record(ctx, waited.Seconds(), metric.WithAttributeSet(o.opSet))
	}
}

// inject writes the attempt's W3C trace context (traceparent, tracestate)
// into h, the attempt's request headers. The worker's signatures cover the
// body, the target and the x-sheen-* headers only, so these headers change
// no signature. Baggage is never sent.
func (o *callObs) inject(ctx context.Context, h http.Header) {
	if o == nil || o.attempt == nil {
		return
	}
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(h))
}

// endAttempt closes the attempt that a, the retry policy's view of it,
// describes: its answer, and whether and after how long it is retried.
// errBody is the answer's body when it was not a success.
func (o *callObs) endAttempt(ctx context.Context, a attempt, resp *http.Response, errBody []byte, retry bool, wait time.Duration) {
	if o == nil {
		return
	}
	reason := ""
	if retry {
		reason = retryReason(a)
	}
	o.attemptMetrics(ctx, a.status, reason)
	if o.attempt == nil {
		return
	}
	span := o.attempt
	o.attempt = nil
	if a.status != 0 {
		span.SetAttributes(semconv.HTTPResponseStatusCode(a.status))
	}
	if resp != nil {
		o.answerAttrs(span, resp, errBody)
	}
	if retry {
		span.SetAttributes(attrRetryReason.String(reason), attrRetryWait.Float64(wait.Seconds()))
	}
	if class := attemptErrorType(a.status, a.err); class != "" {
		span.SetAttributes(semconv.ErrorTypeKey.String(class))
		span.SetStatus(codes.Error, class)
	}
	span.End()
}

// attemptMetrics counts an attempt, its 429 and its retry.
func (o *callObs) attemptMetrics(ctx context.Context, status int, reason string) {
	if !o.metrics {
		return
	}
	o.t.inst.attempts.Add(ctx, 1, metric.WithAttributeSet(o.opSet))
	if status == http.StatusTooManyRequests {
		o.t.inst.rateLimited.Add(ctx, 1, metric.WithAttributeSet(o.opSet))
	}
	if reason != "" {
		o.t.inst.retries.Add(ctx, 1, metric.WithAttributes(attrOperation.String(o.op), attrRetryReason.String(reason)))
	}
}

// answerAttrs records the worker's correlation id and, for an answer that
// is not a success, its error code.
func (o *callObs) answerAttrs(span trace.Span, resp *http.Response, errBody []byte) {
	corr := resp.Header.Get("X-Correlation-Id")
	if corr == "" && resp.Request != nil {
		corr = resp.Request.Header.Get("X-Correlation-Id")
	}
	if corr != "" {
		span.SetAttributes(attrCorrelation.String(corr))
	}
	if resp.StatusCode >= 400 && len(errBody) > 0 {
		if code := newAPIError(resp.StatusCode, nil, errBody, time.Time{}).Code; code != "" {
			span.SetAttributes(attrErrorCode.String(string(code)))
		}
	}
}

// endOpenAttempt ends an attempt the retry policy never saw (the HTTP
// client failed before its CheckRetry, or the call ended).
func (o *callObs) endOpenAttempt() {
	if o.attempt != nil {
		o.attempt.End()
		o.attempt = nil
	}
}

// endCall closes the call: how it ended, after how many attempts, with
// which last answer (resp, nil when none) and correlation id.
func (o *callObs) endCall(ctx context.Context, err error, resp *http.Response, attempts int, correlationID string) {
	if o == nil {
		return
	}
	o.endOpenAttempt()
	outcome := outcomeOf(err)
	if o.metrics {
		o.t.inst.callDuration.Record(ctx, time.Since(o.start).Seconds(),
			metric.WithAttributes(attrOperation.String(o.op), attrOutcome.String(outcome)))
	}
	if o.span == nil {
		return
	}
	attrs := []attribute.KeyValue{attrOutcome.String(outcome), attrAttempts.Int(attempts)}
	if resp != nil {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(resp.StatusCode))
		if id := resp.Header.Get("X-Correlation-Id"); id != "" {
			correlationID = id
		}
	}
	var ae *APIError
	if errors.As(err, &ae) && ae.Code != "" {
		attrs = append(attrs, attrErrorCode.String(string(ae.Code)))
	}
	if correlationID != "" {
		attrs = append(attrs, attrCorrelation.String(correlationID))
	}
	o.span.SetAttributes(attrs...)
	endSpan(o.span, err, outcome)
}

// endSpan ends span, marked as failed with errorType when err is set. The
// error's text is not recorded: it names paths, which hold user IDs.
func endSpan(span trace.Span, err error, errorType string) {
	if err != nil {
		span.SetAttributes(semconv.ErrorTypeKey.String(errorType))
		span.SetStatus(codes.Error, errorType)
	}
	span.End()
}

// retryReason names why an attempt is retried, for sheen.client.retries
// and the attempt's span: the rows of the retry table (retry.go).
func retryReason(a attempt) string {
	switch {
	case a.err != nil && a.status != 0:
		return "cut_short"
	case a.err != nil && neverReachedServer(a.err):
		return "connect"
	case a.err != nil && errors.Is(a.err, context.DeadlineExceeded):
		return "timeout"
	case a.err != nil:
		return "transport"
	case a.status == http.StatusTooManyRequests:
		return "rate_limited"
	case a.status == http.StatusRequestTimeout || a.status == http.StatusUnauthorized:
		return "signing_corrected"
	case a.status >= 500:
		return "server_error"
	}
	return "other"
}

// attemptErrorType is an attempt's error.type: its status when it is an
// error, else the class of its transport failure; "" for a success.
func attemptErrorType(status int, err error) string {
	switch {
	case err != nil && status != 0:
		return "cut_short"
	case err != nil:
		return transportClass(err)
	case status >= 400:
		return strconv.Itoa(status)
	}
	return ""
}

// transportClass names a failure without an answer.
func transportClass(err error) string {
	switch {
	case isClientAbort(err):
		return "client_abort"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case neverReachedServer(err):
		return "connect"
	}
	return "transport"
}

// outcomeOf is how a call ended, for sheen.outcome and error.type: "ok",
// or a low-cardinality class of its error.
func outcomeOf(err error) string {
	var (
		ae *APIError
		ve *ValidationError
	)
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrOutcomeUnknown):
		return "outcome_unknown"
	case errors.Is(err, ErrBuildStalled):
		return "build_stalled"
	case errors.Is(err, ErrInvalidResponse):
		return "invalid_response"
	case errors.As(err, &ve):
		return "invalid_request"
	case errors.As(err, &ae) && ae.StatusCode == http.StatusTooManyRequests:
		return "rate_limited"
	case ae != nil && ae.StatusCode >= 500:
		return "server_error"
	case ae != nil && ae.StatusCode >= 400:
		return "client_error"
	case ae != nil:
		return "refused" // a success status whose answer says no
	}
	return transportClass(err)
}
