package sheen

import (
	"context"
	"net/url"
	"reflect"
	"strconv"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Telemetry: the client's OpenTelemetry traces and metrics, on the API
// alone (no SDK, no exporter). This file holds the options, the setup, the
// metric instruments and the attribute names; telemetry_call.go follows
// calls and attempts, telemetry_feature.go the caches, Follow and Wait,
// downloads and the proxy.
//
// Nothing here runs when no provider records: each hook asks first (a
// comparison for the tracer, an atomic load per instrument for the meter)
// and allocates
// only when the answer is yes.

// instrumentationName names the tracer and the meter.
const instrumentationName = "github.com/sheenapps/sheen-go"

// TelemetryConfig says where a client's OpenTelemetry spans and metrics go;
// give it with WithTelemetry. Without it, or with a nil provider, a client
// uses the global providers (otel.GetTracerProvider, otel.GetMeterProvider),
// which record nothing until the program installs one; a client made before
// that follows them from then on.
//
// Spans: one per call to the worker (and to AI.Generate's endpoint), named
// after the service method of its route ("sheen.Billing.Balance";
// "sheen.Do" for WorkerClient.Do), with one child per attempt ("GET
// /v1/billing/balance/{userId}") carrying the HTTP semantic-convention
// attributes, the attempt number, the time waited on the rate limiter, the
// retry reason and backoff, the worker's error code and the correlation id;
// one per answer served from a cache; one per Follow or Wait (an event per
// phase; package pgevents adds one per batch it delivers), per Download,
// and per request the proxy forwards (continuing the trace of the span in
// the request's context, else of its traceparent header). Each attempt
// carries W3C trace context (traceparent) to the worker; it is not part of
// the signature. No span holds the secret, a signature, a signed download
// URL, a query string or a body, and none holds a user ID unless UserIDs is
// set.
//
// Instruments: sheen.client.call.duration (by operation and outcome),
// sheen.client.attempts, sheen.client.retries (by reason),
// sheen.client.rate_limited (429 answers), sheen.client.limiter.wait,
// sheen.cache.hits, sheen.cache.misses and sheen.cache.evictions (by
// cache), sheen.download.bytes and sheen.download.throughput (by format),
// and sheen.build.event.latency (from an event's creation to its delivery,
// by source).
type TelemetryConfig struct {
	// TracerProvider is where spans go (nil: the global provider).
	TracerProvider trace.TracerProvider
	// MeterProvider is where metrics go (nil: the global provider).
	MeterProvider metric.MeterProvider
	// UserIDs adds the user a call acts for to its spans, as the user.id
	// attribute. User IDs are personal data, so spans leave them out
	// unless this is set; metrics never carry them.
	UserIDs bool
}

// WithTelemetry sets where the client's spans and metrics go and whether
// spans name users; see TelemetryConfig. A zero field keeps its current
// value (the global provider, or an earlier WithTelemetry's).
func WithTelemetry(cfg TelemetryConfig) Option {
	return func(c *config) error {
		if cfg.TracerProvider != nil {
			c.telemetry.tp = cfg.TracerProvider
		}
		if cfg.MeterProvider != nil {
			c.telemetry.mp = cfg.MeterProvider
		}
		c.telemetry.userIDs = c.telemetry.userIDs || cfg.UserIDs
		return nil
	}
}

// telemetryConfig is what the telemetry options set.
type telemetryConfig struct {
	tp      trace.TracerProvider // nil: the global provider
	mp      metric.MeterProvider // nil: the global provider
	userIDs bool
}

// telemetry is a client's tracer and instruments.
type telemetry struct {
	tp      trace.TracerProvider // as given; nil for the global one
	noop    bool                 // tp is the API's no-op provider
	tracer  trace.Tracer
	userIDs bool
	server  []attribute.KeyValue // server.address and server.port of the worker
	inst    instruments
	// The attribute sets of the two caches, made once.
	balanceCache, linkCache attribute.Set
}

// unsetGlobalTracerProvider is the global tracer provider the API starts
// with, before any program installs one: it records nothing, so while
// otel.GetTracerProvider still returns it, the client makes no span at all
// (a span of it would cost allocations and show nowhere). It is nil when a
// provider was installed before this package was initialised, and then
// nothing is skipped.
var unsetGlobalTracerProvider = func() trace.TracerProvider {
	tp := otel.GetTracerProvider()
	if t := reflect.TypeOf(tp); t != nil && t.Kind() == reflect.Pointer && t.Elem().PkgPath() == "go.opentelemetry.io/otel/internal/global" {
		return tp
	}
	return nil
}()

func newTelemetry(cfg telemetryConfig, base *url.URL) *telemetry {
	t := &telemetry{tp: cfg.tp, userIDs: cfg.userIDs}
	tp := cfg.tp
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	_, t.noop = tp.(tracenoop.TracerProvider)
	t.tracer = tp.Tracer(instrumentationName, trace.WithInstrumentationVersion(Version), trace.WithSchemaURL(semconv.SchemaURL))
	mp := cfg.mp
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	t.inst = newInstruments(mp.Meter(instrumentationName, metric.WithInstrumentationVersion(Version), metric.WithSchemaURL(semconv.SchemaURL)))
	t.server = serverAttrs(base)
	t.balanceCache = attribute.NewSet(attrCache.String(cacheBalance))
	t.linkCache = attribute.NewSet(attrCache.String(cacheLinks))
	return t
}

// tracing reports whether spans would go anywhere: false for the API's
// no-op provider and for the global provider while none is installed.
func (t *telemetry) tracing() bool {
	switch {
	case t == nil || t.noop:
		return false
	case t.tp == nil || t.tp == unsetGlobalTracerProvider:
		// Interfaces of different dynamic types compare unequal without
		// panicking; the unset provider is a pointer.
		return otel.GetTracerProvider() != unsetGlobalTracerProvider
	}
	return true
}

// Each hook asks whether the instruments it records to are enabled, each
// for itself: a view that drops one instrument leaves the others on.

// callMetering reports whether any instrument of calls records.
func (t *telemetry) callMetering(ctx context.Context) bool {
	if t == nil {
		return false
	}
	i := &t.inst
	return i.callDuration.Enabled(ctx) || i.attempts.Enabled(ctx) || i.retries.Enabled(ctx) ||
		i.rateLimited.Enabled(ctx) || i.limiterWait.Enabled(ctx)
}

// followMetering reports whether Follow's and Wait's instrument records.
func (t *telemetry) followMetering(ctx context.Context) bool {
	return t != nil && t.inst.eventLatency.Enabled(ctx)
}

// downloadMetering reports whether any instrument of downloads records.
func (t *telemetry) downloadMetering(ctx context.Context) bool {
	return t != nil && (t.inst.downloadBytes.Enabled(ctx) || t.inst.downloadThroughput.Enabled(ctx))
}

// serverAttrs are the worker's server.address and server.port.
func serverAttrs(base *url.URL) []attribute.KeyValue {
	port := base.Port()
	if port == "" {
		port = "443"
		if base.Scheme == "http" {
			port = "80"
		}
	}
	n, _ := strconv.Atoi(port)
	return []attribute.KeyValue{semconv.ServerAddress(base.Hostname()), semconv.ServerPort(n)}
}

// Attribute keys of the SDK's own (semantic-convention keys come from
// semconv).
const (
	attrOperation   = attribute.Key("sheen.operation")
	attrOutcome     = attribute.Key("sheen.outcome")
	attrAttempt     = attribute.Key("sheen.attempt")
	attrAttempts    = attribute.Key("sheen.attempts")
	attrLimiterWait = attribute.Key("sheen.limiter.wait_seconds")
	attrRetryReason = attribute.Key("sheen.retry.reason")
	attrRetryWait   = attribute.Key("sheen.retry.wait_seconds")
	attrErrorCode   = attribute.Key("sheen.error.code")
	attrCorrelation = attribute.Key("sheen.correlation_id")
	attrCache       = attribute.Key("sheen.cache")
	attrCacheHit    = attribute.Key("sheen.cache.hit")
	attrBuildID     = attribute.Key("sheen.build.id")
	attrPhase       = attribute.Key("sheen.build.phase")
	attrEventID     = attribute.Key("sheen.build.event_id")
	attrEventType   = attribute.Key("sheen.build.event_type")
	attrBuildResult = attribute.Key("sheen.build.outcome")
	attrEvents      = attribute.Key("sheen.build.events")
	attrEventSource = attribute.Key("sheen.build.event_source")
	attrDLBytes     = attribute.Key("sheen.download.bytes")
	attrDLTotal     = attribute.Key("sheen.download.total")
	attrDLAttempts  = attribute.Key("sheen.download.attempts")
	attrDLResumes   = attribute.Key("sheen.download.resumes")
	attrDLRestarts  = attribute.Key("sheen.download.restarts")
	attrDLFormat    = attribute.Key("sheen.download.format")
	attrDLRefreshed = attribute.Key("sheen.download.link_refreshed")
	attrDLOffset    = attribute.Key("sheen.download.offset")
	attrProxyRoute  = semconv.HTTPRouteKey
)

// The caches, as the sheen.cache attribute names them.
const (
	cacheBalance = "balance"
	cacheLinks   = "export_link"
)

// instruments are the client's metric instruments.
type instruments struct {
	callDuration       metric.Float64Histogram
	attempts           metric.Int64Counter
	retries            metric.Int64Counter
	rateLimited        metric.Int64Counter
	limiterWait        metric.Float64Histogram
	cacheHits          metric.Int64Counter
	cacheMisses        metric.Int64Counter
	cacheEvictions     metric.Int64Counter
	downloadBytes      metric.Int64Counter
	downloadThroughput metric.Float64Histogram
	eventLatency       metric.Float64Histogram
}

// Bucket boundaries: seconds for calls and waits (a call may wait minutes
// for quota), bytes per second for downloads.
var (
	secondsBuckets    = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	throughputBuckets = []float64{64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20, 1 << 30}
)

func newInstruments(m metric.Meter) instruments {
	return instruments{
		callDuration: histogram(m, "sheen.client.call.duration", "s", "Duration of calls to the worker, every attempt and wait included.", secondsBuckets),
		attempts:     counter(m, "sheen.client.attempts", "{attempt}", "Requests sent to the worker, first attempts and retries."),
		retries:      counter(m, "sheen.client.retries", "{retry}", "Attempts retried, by reason."),
		rateLimited:  counter(m, "sheen.client.rate_limited", "{response}", "429 answers from the worker."),
		limiterWait:  histogram(m, "sheen.client.limiter.wait", "s", "Time an attempt waited for the client's rate limiter.", secondsBuckets),
		cacheHits:    counter(m, "sheen.cache.hits", "{lookup}", "Answers served from the client's caches."),
		cacheMisses:  counter(m, "sheen.cache.misses", "{lookup}", "Lookups in the client's caches that had to ask the worker."),
		cacheEvictions: counter(m, "sheen.cache.evictions", "{entry}",
			"Entries dropped from a full cache to make room."),
		downloadBytes: counter(m, "sheen.download.bytes", "By", "Archive bytes downloaded and written."),
		downloadThroughput: histogram(m, "sheen.download.throughput", "By/s",
			"Bytes per second of each finished download, waits included.", throughputBuckets),
		eventLatency: histogram(m, "sheen.build.event.latency", "s",
			"Time from a build event's creation by the worker to its delivery by Follow or Wait.", secondsBuckets),
	}
}

// counter makes an Int64Counter, or a no-op one when the meter refuses.
func counter(m metric.Meter, name, unit, desc string) metric.Int64Counter {
	c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	if err != nil || c == nil {
		if err != nil {
			otel.Handle(err)
		}
		return metricnoop.Int64Counter{}
	}
	return c
}

// histogram makes a Float64Histogram, or a no-op one when the meter
// refuses.
func histogram(m metric.Meter, name, unit, desc string, buckets []float64) metric.Float64Histogram {
	h, err := m.Float64Histogram(name, metric.WithUnit(unit), metric.WithDescription(desc), metric.WithExplicitBucketBoundaries(buckets...))
	if err != nil || h == nil {
		if err != nil {
			otel.Handle(err)
		}
		return metricnoop.Float64Histogram{}
	}
	return h
}

// operationName is the name of the calls made on route: the service
// method that calls it ("sheen.Do" for a route the SDK does not know, as
// with WorkerClient.Do). Calls that share a route share its name
// (RefreshBalance and WaitForBalance ask as Balance does).
func operationName(route string) string {
	switch route {
	case RouteBalance:
		return "sheen.Billing.Balance"
	case RouteLegacyBalance:
		return "sheen.Billing.LegacyBalance"
	case RouteCheckSufficient:
		return "sheen.Billing.CheckSufficient"
	case RouteCheckBatch:
		return "sheen.Billing.CheckBatch"
	case RouteUsage:
		return "sheen.Billing.Usage"
	case RouteBillingEvents:
		return "sheen.Billing.History"
	case RouteCreatePreview:
		return "sheen.Builds.CreatePreview"
	case RouteUpdateProject:
		return "sheen.Builds.UpdateProject"
	case RouteRollback:
		return "sheen.Builds.Rollback"
	case RouteRebuild:
		return "sheen.Builds.Rebuild"
	case RouteVersions:
		return "sheen.Builds.Versions"
	case RouteBuildEvents:
		return "sheen.Builds.FetchEvents"
	case RouteBuildStatus:
		return "sheen.Builds.Status"
	case RouteExportProject:
		return "sheen.Exports.ProjectLink"
	case RouteDownloadVersion:
		return "sheen.Exports.VersionLink"
	case RouteGenerate:
		return "sheen.AI.Generate"
	}
	return "sheen.Do"
}

// Names of the spans that are not a call to one route.
const (
	opFollow   = "sheen.Builds.Follow"
	opWait     = "sheen.Builds.Wait"
	opDownload = "sheen.Exports.Download"
	opProxy    = "sheen.Proxy"
)

// routePath is the path template of a route ("/v1/billing/balance/{userId}"),
// "" when there is none.
func routePath(route string) string {
	for i := 0; i < len(route); i++ {
		if route[i] == ' ' {
			return route[i+1:]
		}
	}
	return ""
}

// telemetryUserID is the user a call acts for, for TelemetryConfig.UserIDs:
// the call's userID, else its userId query parameter, else its {userId}
// path parameter; "" when telemetry leaves user IDs out.
func (t *telemetry) telemetryUserID(c *call) string {
	if t == nil || !t.userIDs {
		return ""
	}
	if c.userID != "" {
		return c.userID
	}
	if id := c.query.Get("userId"); id != "" {
		return id
	}
	if len(c.params) > 0 && hasUserIDParam(c.route) {
		return c.params[0]
	}
	return ""
}

// hasUserIDParam reports a route whose first parameter is {userId}.
func hasUserIDParam(route string) bool {
	switch route {
	case RouteBalance, RouteLegacyBalance, RouteUsage, RouteBillingEvents:
		return true
	}
	return false
}

// userAttrs is user.id for userID when the client opted in.
func (t *telemetry) userAttrs(attrs []attribute.KeyValue, userID string) []attribute.KeyValue {
	if t.userIDs && userID != "" {
		attrs = append(attrs, semconv.UserID(userID))
	}
	return attrs
}
