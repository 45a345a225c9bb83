package sheenhttp_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sheenapps/sheen-go"
)

// The proxy's telemetry, with helpers copied from the root package's
// telemetry tests (test code only).

// A forwarded request is one span, continuing the browser's trace, whose
// child is the request to the worker; the worker gets the trace context
// of that child, and verifies the proxy's signature all the same.
func TestTelemetryProxy(t *testing.T) {
	rec := newRecorded(t)
	rg := newPxRig(t, pxOptions{scheme: sheen.SigningDual, client: rec.options()})
	const browserTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	const browserSpan = "00f067aa0ba902b7"
	a := rg.do(pxCall{method: "GET", path: pxBalance, session: "sess-alice",
		header: http.Header{"Traceparent": {"00-" + browserTrace + "-" + browserSpan + "-01"}}})
	if a.status != 200 {
		t.Fatalf("proxy answered %d: %s", a.status, a.body)
	}
	rg.front.Close() // waits for the handler, so its span has ended

	spans := rec.spans.Ended()
	proxied := spanNamed(spans, "sheen.Proxy")
	attempts := spanNamed(spans, "GET /v1/billing/balance/{userId}")
	if len(proxied) != 1 || len(attempts) != 1 {
		t.Fatalf("%d proxy spans and %d attempt spans, want 1 each", len(proxied), len(attempts))
	}
	p, at := proxied[0], attempts[0]
	if p.SpanContext().TraceID().String() != browserTrace || p.Parent().SpanID().String() != browserSpan {
		t.Errorf("proxy span in trace %s under %s; want the browser's %s under %s",
			p.SpanContext().TraceID(), p.Parent().SpanID(), browserTrace, browserSpan)
	}
	if at.Parent().SpanID() != p.SpanContext().SpanID() || at.SpanKind() != trace.SpanKindClient {
		t.Errorf("the worker request's span is not a client child of the proxy span")
	}
	for k, v := range map[string]string{"http.route": "GET /v1/billing/balance/{userId}", "http.response.status_code": "200", "sheen.outcome": "ok"} {
		if got := attrOf(p, k); got != v {
			t.Errorf("proxy span %s = %q, want %q", k, got, v)
		}
	}
	reqs := rg.srv.Requests()
	if len(reqs) != 1 || reqs[0].Status != 200 {
		t.Fatalf("worker saw %d requests (%v)", len(reqs), reqs)
	}
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(reqs[0].Header)))
	if sc.SpanID() != at.SpanContext().SpanID() || sc.TraceID().String() != browserTrace {
		t.Errorf("the worker got trace context %s/%s, want the attempt span's %s/%s", sc.TraceID(), sc.SpanID(), browserTrace, at.SpanContext().SpanID())
	}
	checkNoSecrets(t, spans, append(rec.traffic.secrets(), rg.srv.Secret, pxAlice))
}

// recorded is what a test's providers received.
type recorded struct {
	spans   *tracetest.SpanRecorder
	reader  *sdkmetric.ManualReader
	tp      *sdktrace.TracerProvider
	mp      *sdkmetric.MeterProvider
	traffic *trafficLog
}

// newRecorded makes in-memory providers: every span, and metrics as deltas
// since the last collection.
func newRecorded(t *testing.T) *recorded {
	t.Helper()
	r := &recorded{spans: tracetest.NewSpanRecorder(), traffic: &trafficLog{}}
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	r.reader = sdkmetric.NewManualReader(sdkmetric.WithTemporalitySelector(func(sdkmetric.InstrumentKind) metricdata.Temporality {
		return metricdata.DeltaTemporality
	}))
	r.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	t.Cleanup(func() {
		_ = r.tp.Shutdown(context.Background())
		_ = r.mp.Shutdown(context.Background())
	})
	return r
}

// options are the client options that send telemetry to r and the
// client's traffic through r's log.
func (r *recorded) options() []sheen.Option {
	return []sheen.Option{sheen.WithTelemetry(sheen.TelemetryConfig{TracerProvider: r.tp, MeterProvider: r.mp}),
		sheen.WithHTTPClient(&http.Client{Transport: r.traffic})}
}

// trafficLog records every request the client sends (to the worker and to
// the object store), with the secrets it carries: signatures, signed
// queries and the trace context.
type trafficLog struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (l *trafficLog) RoundTrip(r *http.Request) (*http.Response, error) {
	l.mu.Lock()
	l.reqs = append(l.reqs, r.Clone(context.Background()))
	l.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

// secrets are the values no telemetry may hold: every signature header
// sent and every signed query.
func (l *trafficLog) secrets() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.reqs {
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

// checkNoSecrets fails when a span's name, attribute, event or status, or
// a metric's attribute, holds one of secrets.
func checkNoSecrets(t *testing.T, spans []sdktrace.ReadOnlySpan, secrets []string) {
	t.Helper()
	var texts []string
	for _, s := range spans {
		texts = append(texts, s.Name(), s.Status().Description)
		for _, a := range s.Attributes() {
			texts = append(texts, a.Value.String())
		}
		for _, e := range s.Events() {
			texts = append(texts, e.Name)
			for _, a := range e.Attributes {
				texts = append(texts, a.Value.String())
			}
		}
	}
	if len(secrets) < 4 {
		t.Fatalf("only %d secrets to look for: the traffic log saw no signature or signed query", len(secrets))
	}
	for _, text := range texts {
		for _, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("telemetry holds a secret (%.12s...): %q", s, text)
			}
		}
	}
}

// spanNamed returns the ended spans called name.
func spanNamed(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// attrOf is the value of a span's attribute key, "" when absent.
func attrOf(s sdktrace.ReadOnlySpan, key string) string {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}
