package sheenhttp_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/oteltest"
)

// The proxy's telemetry, recorded with internal/oteltest.

// A forwarded request is one span, continuing the browser's trace, whose
// child is the request to the worker; the worker gets the trace context
// of that child, and verifies the proxy's signature all the same.
func TestTelemetryProxy(t *testing.T) {
	rec := newRecorded(t)
	rg := newPxRig(t, pxOptions{scheme: sheen.SigningDual, client: rec.Options(sheen.TelemetryConfig{})})
	const browserTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	const browserSpan = "00f067aa0ba902b7"
	a := rg.do(pxCall{method: "GET", path: pxBalance, session: "sess-alice",
		header: http.Header{"Traceparent": {"00-" + browserTrace + "-" + browserSpan + "-01"}}})
	if a.status != 200 {
		t.Fatalf("proxy answered %d: %s", a.status, a.body)
	}
	rg.front.Close() // waits for the handler, so its span has ended

	spans := rec.Spans.Ended()
	proxied := oteltest.SpansNamed(spans, "sheen.Proxy")
	attempts := oteltest.SpansNamed(spans, "GET /v1/billing/balance/{userId}")
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
		if got := oteltest.Attr(p, k); got != v {
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
	checkNoSecrets(t, spans, append(rec.Traffic.Secrets(), rg.srv.Secret, pxAlice))
}

// recorded is what a test's providers received (internal/oteltest).
type recorded = oteltest.Recorded

func newRecorded(t *testing.T) *recorded { return oteltest.New(t) }

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
