package sheen_test

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/oteltest"
	"github.com/sheenapps/sheen-go/sheentest"
)

// telemetryCanary is the fake worker's secret in the telemetry tests: no
// span or metric may contain it.
const telemetryCanary = "canary-secret-0123456789abcdef-0123456789"

// recorded is what a test's providers received (internal/oteltest).
type recorded = oteltest.Recorded

func newRecorded(t *testing.T) *recorded { return oteltest.New(t) }

// spanShape is what the flow test compares of a span: attributes whose
// values vary from run to run (waits, ids) are compared for presence only.
type spanShape struct {
	Name, Parent string
	Kind         trace.SpanKind
	Error        bool
	Attrs        map[string]string
	Events       []string
}

// variable are the attributes whose values vary between runs.
var variable = map[string]bool{
	"sheen.limiter.wait_seconds": true, "sheen.retry.wait_seconds": true, "sheen.correlation_id": true,
	"server.port": true, "sheen.download.bytes": true, "sheen.download.total": true,
}

func shapes(spans []sdktrace.ReadOnlySpan) []spanShape {
	names := map[trace.SpanID]string{}
	for _, s := range spans {
		names[s.SpanContext().SpanID()] = s.Name()
	}
	var out []spanShape
	for _, s := range spans {
		sh := spanShape{Name: s.Name(), Parent: names[s.Parent().SpanID()], Kind: s.SpanKind(), Attrs: map[string]string{}}
		sh.Error = s.Status().Code.String() == "Error"
		for _, a := range s.Attributes() {
			v := a.Value.String()
			if variable[string(a.Key)] {
				v = "*"
			}
			sh.Attrs[string(a.Key)] = v
		}
		for _, e := range s.Events() {
			ev := e.Name
			for _, a := range e.Attributes {
				ev += " " + string(a.Key) + "=" + a.Value.String()
			}
			sh.Events = append(sh.Events, ev)
		}
		out = append(out, sh)
	}
	return out
}

// A flow with a 429, a 503, a cache hit and a resumed download: the spans
// say what happened, attempt by attempt, the metrics count it, and neither
// holds the secret, a signature, a signed query or the user's id.
func TestTelemetryFlow(t *testing.T) {
	rec := newRecorded(t)
	const user = "user-otel-1"
	worker := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithSecret(telemetryCanary), sheentest.WithUser(user, time.Hour))
	defer worker.Close()
	client, err := worker.Client(rec.Options(sheen.TelemetryConfig{})...)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	build, err := client.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: user, Prompt: "A bakery site"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Builds.Wait(ctx, build.ID, user, nil); err != nil {
		t.Fatal(err)
	}
	// The setup above is not the flow: forget its spans and metrics.
	setupSpans := len(rec.Spans.Ended())
	var rm metricdata.ResourceMetrics
	if err := rec.Reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}

	worker.AddFault(sheentest.Fault{Route: sheen.RouteBalance, Calls: []int{1}, Status: http.StatusTooManyRequests,
		Header: http.Header{"Retry-After": {"0.01"}, "Content-Type": {"application/json"}}, Body: `{"error":"Too many requests","code":"RATE_LIMITED"}`})
	worker.AddFault(sheentest.Fault{Route: sheen.RouteBalance, Calls: []int{2}, Status: http.StatusServiceUnavailable,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: `{"error":"Service unavailable","code":"SERVICE_UNAVAILABLE"}`})
	worker.AddFault(sheentest.Fault{Route: sheentest.RouteStore, Calls: []int{1}, ResetAfterBytes: 64})

	tracer := rec.TP.Tracer("test")
	ctx, root := tracer.Start(ctx, "flow")
	if _, err := client.Billing.Balance(ctx, user); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Billing.Balance(ctx, user); err != nil {
		t.Fatal(err)
	}
	link, err := client.Exports.ProjectLink(ctx, build.ProjectID, user)
	if err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	res, err := client.Exports.Download(ctx, link, &archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumes != 1 {
		t.Fatalf("the download resumed %d times; the fault should make it resume once", res.Resumes)
	}
	root.End()

	flow := rec.Spans.Ended()[setupSpans:]
	checkFlowSpans(t, flow, string(res.Format))
	checkTraceparent(t, rec, flow)
	got := checkFlowMetrics(t, rec, string(res.Format), res.Written)
	checkNoSecrets(t, rec.Spans.Ended(), got, append(rec.Traffic.Secrets(), telemetryCanary, user))
}

func checkFlowSpans(t *testing.T, flow []sdktrace.ReadOnlySpan, format string) {
	t.Helper()
	attempt := func(n int, status string, extra map[string]string) map[string]string {
		m := map[string]string{
			"http.request.method": "GET", "url.template": "/v1/billing/balance/{userId}", "server.address": "127.0.0.1", "server.port": "*",
			"sheen.attempt": strconv.Itoa(n), "sheen.limiter.wait_seconds": "*", "http.response.status_code": status, "sheen.correlation_id": "*",
		}
		if n > 1 {
			m["http.request.resend_count"] = strconv.Itoa(n - 1)
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	want := []spanShape{
		{Name: "GET /v1/billing/balance/{userId}", Parent: "sheen.Billing.Balance", Kind: trace.SpanKindClient, Error: true,
			Attrs: attempt(1, "429", map[string]string{"error.type": "429", "sheen.error.code": "RATE_LIMITED",
				"sheen.retry.reason": "rate_limited", "sheen.retry.wait_seconds": "*"})},
		{Name: "GET /v1/billing/balance/{userId}", Parent: "sheen.Billing.Balance", Kind: trace.SpanKindClient, Error: true,
			Attrs: attempt(2, "503", map[string]string{"error.type": "503", "sheen.error.code": "SERVICE_UNAVAILABLE",
				"sheen.retry.reason": "server_error", "sheen.retry.wait_seconds": "*"})},
		{Name: "GET /v1/billing/balance/{userId}", Parent: "sheen.Billing.Balance", Kind: trace.SpanKindClient,
			Attrs: attempt(3, "200", nil)},
		{Name: "sheen.Billing.Balance", Parent: "flow", Kind: trace.SpanKindInternal, Attrs: map[string]string{
			"http.request.method": "GET", "url.template": "/v1/billing/balance/{userId}", "server.address": "127.0.0.1", "server.port": "*",
			"sheen.operation": "sheen.Billing.Balance", "sheen.outcome": "ok", "sheen.attempts": "3",
			"http.response.status_code": "200", "sheen.correlation_id": "*"}},
		{Name: "sheen.Billing.Balance", Parent: "flow", Kind: trace.SpanKindInternal, Attrs: map[string]string{
			"sheen.operation": "sheen.Billing.Balance", "sheen.cache": "balance", "sheen.cache.hit": "true"}},
		{Name: "GET /v1/projects/{projectId}/export", Parent: "sheen.Exports.ProjectLink", Kind: trace.SpanKindClient, Attrs: map[string]string{
			"http.request.method": "GET", "url.template": "/v1/projects/{projectId}/export", "server.address": "127.0.0.1", "server.port": "*",
			"sheen.attempt": "1", "sheen.limiter.wait_seconds": "*", "http.response.status_code": "200", "sheen.correlation_id": "*"}},
		{Name: "sheen.Exports.ProjectLink", Parent: "flow", Kind: trace.SpanKindInternal, Attrs: map[string]string{
			"http.request.method": "GET", "url.template": "/v1/projects/{projectId}/export", "server.address": "127.0.0.1", "server.port": "*",
			"sheen.operation": "sheen.Exports.ProjectLink", "sheen.outcome": "ok", "sheen.attempts": "1",
			"http.response.status_code": "200", "sheen.correlation_id": "*"}},
		{Name: "sheen.Exports.Download", Parent: "flow", Kind: trace.SpanKindInternal, Attrs: map[string]string{
			"sheen.operation": "sheen.Exports.Download", "sheen.download.format": format, "sheen.download.bytes": "*", "sheen.download.total": "*",
			"sheen.download.attempts": "2", "sheen.download.resumes": "1", "sheen.download.restarts": "0", "sheen.download.link_refreshed": "false"},
			Events: []string{"sheen.download.interrupted error.type=truncated sheen.download.offset=64 sheen.download.retry=true"}},
		{Name: "flow", Kind: trace.SpanKindInternal, Attrs: map[string]string{}},
	}
	if diff := cmp.Diff(want, shapes(flow)); diff != "" {
		t.Errorf("spans of the flow (-want +got):\n%s", diff)
	}
}

// Every attempt carried its own span's W3C trace context to the worker,
// and the worker (sheentest's verifier, as the deployed worker's) took the
// signed requests all the same.
func checkTraceparent(t *testing.T, rec *recorded, flow []sdktrace.ReadOnlySpan) {
	t.Helper()
	attempts := map[trace.SpanID]bool{}
	for _, s := range flow {
		if s.SpanKind() == trace.SpanKindClient {
			attempts[s.SpanContext().SpanID()] = true
		}
	}
	seen := 0
	for _, r := range rec.Traffic.Requests() {
		if r.Header.Get("Traceparent") == "" {
			continue
		}
		sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(r.Header)))
		if attempts[sc.SpanID()] {
			seen++
		}
		if strings.HasPrefix(r.URL.Path, "/_store/") {
			t.Errorf("the object store got a traceparent: %s", r.URL.Path)
		}
	}
	if seen != len(attempts) {
		t.Errorf("%d requests carried the traceparent of one of the %d attempt spans", seen, len(attempts))
	}
}

// point is one metric data point: its instrument, attributes and value
// (a sum, or a histogram's count).
type point struct {
	Name  string
	Attrs string
	Value int64
}

func points(rm metricdata.ResourceMetrics) []point {
	var out []point
	attrs := func(s attribute.Set) string {
		var parts []string
		for _, kv := range s.ToSlice() {
			parts = append(parts, string(kv.Key)+"="+kv.Value.String())
		}
		return strings.Join(parts, ",")
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					out = append(out, point{m.Name, attrs(dp.Attributes), dp.Value})
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					out = append(out, point{m.Name, attrs(dp.Attributes), int64(dp.Count)})
				}
			}
		}
	}
	return out
}

func checkFlowMetrics(t *testing.T, rec *recorded, format string, written int64) []point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := rec.Reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	want := []point{
		{"sheen.client.call.duration", "sheen.operation=sheen.Billing.Balance,sheen.outcome=ok", 1},
		{"sheen.client.call.duration", "sheen.operation=sheen.Exports.ProjectLink,sheen.outcome=ok", 1},
		{"sheen.client.attempts", "sheen.operation=sheen.Billing.Balance", 3},
		{"sheen.client.attempts", "sheen.operation=sheen.Exports.ProjectLink", 1},
		{"sheen.client.retries", "sheen.operation=sheen.Billing.Balance,sheen.retry.reason=rate_limited", 1},
		{"sheen.client.retries", "sheen.operation=sheen.Billing.Balance,sheen.retry.reason=server_error", 1},
		{"sheen.client.rate_limited", "sheen.operation=sheen.Billing.Balance", 1},
		{"sheen.client.limiter.wait", "sheen.operation=sheen.Billing.Balance", 3},
		{"sheen.client.limiter.wait", "sheen.operation=sheen.Exports.ProjectLink", 1},
		{"sheen.cache.hits", "sheen.cache=balance", 1},
		{"sheen.cache.misses", "sheen.cache=balance", 1},
		{"sheen.cache.misses", "sheen.cache=export_link", 1},
		{"sheen.download.bytes", "sheen.download.format=" + format, written},
		{"sheen.download.throughput", "sheen.download.format=" + format, 1},
	}
	sortPoints := cmp.Transformer("sort", func(in []point) []point {
		out := append([]point(nil), in...)
		for i := range out {
			for j := i + 1; j < len(out); j++ {
				if out[j].Name+out[j].Attrs < out[i].Name+out[i].Attrs {
					out[i], out[j] = out[j], out[i]
				}
			}
		}
		return out
	})
	if diff := cmp.Diff(want, points(rm), sortPoints); diff != "" {
		t.Errorf("metric points of the flow (-want +got):\n%s", diff)
	}
	return points(rm)
}

// checkNoSecrets fails when a span's name, attribute, event or status, or
// a metric's attribute, holds one of secrets.
func checkNoSecrets(t *testing.T, spans []sdktrace.ReadOnlySpan, metrics []point, secrets []string) {
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
	for _, p := range metrics {
		texts = append(texts, p.Attrs)
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
