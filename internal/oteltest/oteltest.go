// Package oteltest records what a sheen client sends to OpenTelemetry, for
// the tests of every package of the module: in-memory providers, the
// client's traffic with the secrets it carried, and span lookups.
package oteltest

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	sheen "github.com/sheenapps/sheen-go"
)

// Recorded is what a test's providers received.
type Recorded struct {
	Spans   *tracetest.SpanRecorder
	Reader  *sdkmetric.ManualReader // metrics as deltas since the last collection
	TP      *sdktrace.TracerProvider
	MP      *sdkmetric.MeterProvider
	Traffic *TrafficLog
}

// New makes in-memory providers, shut down when the test ends.
func New(t testing.TB) *Recorded {
	t.Helper()
	r := &Recorded{Spans: tracetest.NewSpanRecorder(), Traffic: &TrafficLog{}}
	r.TP = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.Spans))
	r.Reader = sdkmetric.NewManualReader(sdkmetric.WithTemporalitySelector(func(sdkmetric.InstrumentKind) metricdata.Temporality {
		return metricdata.DeltaTemporality
	}))
	r.MP = sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.Reader))
	t.Cleanup(func() {
		_ = r.TP.Shutdown(context.Background())
		_ = r.MP.Shutdown(context.Background())
	})
	return r
}

// Options are the client options that send telemetry to r (cfg's
// providers are replaced by r's) and the client's traffic through r's log.
func (r *Recorded) Options(cfg sheen.TelemetryConfig) []sheen.Option {
	cfg.TracerProvider, cfg.MeterProvider = r.TP, r.MP
	return []sheen.Option{sheen.WithTelemetry(cfg), sheen.WithHTTPClient(&http.Client{Transport: r.Traffic})}
}

// TrafficLog records every request the client sends (to the worker and to
// the object store), with the secrets it carries: signatures, signed
// queries and the trace context.
type TrafficLog struct {
	mu   sync.Mutex
	reqs []*http.Request
}

// RoundTrip records r and sends it over http.DefaultTransport.
func (l *TrafficLog) RoundTrip(r *http.Request) (*http.Response, error) {
	l.mu.Lock()
	l.reqs = append(l.reqs, r.Clone(context.Background()))
	l.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

// Requests returns the requests recorded so far.
func (l *TrafficLog) Requests() []*http.Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*http.Request(nil), l.reqs...)
}

// Secrets are the values no telemetry may hold: every signature header
// sent and every signed query to the object store (sheentest's /_store/).
func (l *TrafficLog) Secrets() []string {
	var out []string
	for _, r := range l.Requests() {
		for k, vs := range r.Header {
			if strings.HasPrefix(strings.ToLower(k), "x-sheen-sig") {
				out = append(out, vs...)
			}
		}
		if strings.HasPrefix(r.URL.Path, "/_store/") {
			out = append(out, r.URL.RawQuery, r.URL.Query().Get("X-Signature"))
		}
	}
	return out
}

// SpansNamed returns the spans called name.
func SpansNamed(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// Attr is the value of a span's attribute key, "" when absent.
func Attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}
