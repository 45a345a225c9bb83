package sheen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Every row of the retry table that retries has its own reason, and the
// reason is the row's.
func TestRetryReasonNamesTheRetriedRow(t *testing.T) {
	rule := retryRule{maxAttempts: 4, maxWait: time.Minute, backoffBase: time.Millisecond}
	now := time.Unix(1_700_000_000, 0)
	cut := &bodyReadError{io.ErrUnexpectedEOF}
	refused := &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		a    attempt
		want string
	}{
		{attempt{status: 200, err: cut}, "cut_short"},
		{attempt{err: refused}, "connect"},
		{attempt{err: &AttemptTimeoutError{Timeout: time.Second, Err: errors.New("read: i/o timeout")}}, "timeout"},
		{attempt{err: syscall.ECONNRESET}, "transport"},
		{attempt{status: 429}, "rate_limited"},
		{attempt{status: 408, corrected: true}, "signing_corrected"},
		{attempt{status: 503}, "server_error"},
		{attempt{status: 500}, "server_error"},
	} {
		tc.a.n, tc.a.now = 1, now
		if retry, _, _ := decideRetry(tc.a, true, rule); !retry {
			t.Errorf("%+v is not retried: the case is wrong", tc.a)
		}
		if got := retryReason(tc.a); got != tc.want {
			t.Errorf("retryReason(%+v) = %q, want %q", tc.a, got, tc.want)
		}
	}
}

// A call's outcome names the kind of failure, in a few values.
func TestOutcomeOf(t *testing.T) {
	api := func(status int) *APIError { return &APIError{StatusCode: status} }
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{&RateLimitError{APIError: api(429)}, "rate_limited"},
		{api(503), "server_error"},
		{&AuthError{APIError: api(401)}, "client_error"},
		{api(200), "refused"},
		{&OutcomeUnknownError{Err: api(502)}, "outcome_unknown"},
		{&BuildStalledError{ID: "b1", LastEventID: 3, Quiet: time.Minute}, "build_stalled"},
		{&ResponseError{StatusCode: 200, Err: errors.New("bad JSON")}, "invalid_response"},
		{&ValidationError{Field: "path"}, "invalid_request"},
		{fmt.Errorf("sheen: GET /x: %w", context.Canceled), "canceled"},
		{fmt.Errorf("sheen: GET /x: %w", context.DeadlineExceeded), "timeout"},
		{&clientAbort{errors.New("limiter")}, "client_abort"},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, "connect"},
		{errors.New("connection reset"), "transport"},
	} {
		if got := outcomeOf(tc.err); got != tc.want {
			t.Errorf("outcomeOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// Spans are made for a recording provider, and not for the API's no-op
// provider or the global one while none is installed.
func TestTelemetryTracingSwitch(t *testing.T) {
	sdk := sdktrace.NewTracerProvider()
	defer sdk.Shutdown(context.Background())
	for _, tc := range []struct {
		name string
		opts []Option
		want bool
	}{
		{"default (global, none installed)", nil, false},
		{"the unset global given", []Option{WithTelemetry(TelemetryConfig{TracerProvider: otel.GetTracerProvider()})}, false},
		{"no-op", []Option{WithTelemetry(TelemetryConfig{TracerProvider: tracenoop.NewTracerProvider()})}, false},
		{"SDK", []Option{WithTelemetry(TelemetryConfig{TracerProvider: sdk})}, true},
	} {
		c, err := NewWorkerClient(append([]Option{WithSecret(testSecret)}, tc.opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.core.tel.tracing(); got != tc.want {
			t.Errorf("%s: tracing() = %v, want %v", tc.name, got, tc.want)
		}
	}
	// A nil provider is the global one, as with no WithTelemetry at all.
	c, err := NewWorkerClient(WithSecret(testSecret), WithTelemetry(TelemetryConfig{UserIDs: true}))
	if err != nil || c.core.tel.tracing() {
		t.Errorf("nil providers with the unset global: %v, tracing %v", err, err == nil && c.core.tel.tracing())
	}
}

// A client made before the program installs its global tracer provider
// records into it from then on. (In a child process: installing a global
// provider here would change the other tests.)
func TestTelemetryGlobalInstalledLater(t *testing.T) {
	if os.Getenv("SHEEN_TEST_GLOBAL_OTEL") == "1" {
		c, err := NewWorkerClient(WithBaseURL("https://worker.invalid"), WithSecret(testSecret),
			WithHTTPClient(&http.Client{Transport: cannedTransport{}}))
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Do(context.Background(), "GET", "/v1/billing/balance/u1", nil, nil) // before: nothing to record
		sr := tracetest.NewSpanRecorder()
		otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr)))
		if err := c.Do(context.Background(), "GET", "/v1/billing/balance/u1", nil, nil); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range sr.Ended() {
			names = append(names, s.Name())
		}
		if fmt.Sprint(names) != "[GET sheen.Do]" {
			t.Fatalf("spans %v, want [GET sheen.Do]", names)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestTelemetryGlobalInstalledLater$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "SHEEN_TEST_GLOBAL_OTEL=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestTelemetryGlobalInstalledLater") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// The W3C trace context header is no part of any signature: a request
// signed with each scheme verifies with a traceparent added, as the
// deployed worker's checks (which read only the x-sheen-* headers, the
// target and the body) and sheentest's verifier see it.
func TestTraceparentIsNotSigned(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("t").Start(context.Background(), "attempt")
	defer span.End()
	body := []byte(`{"userId":"u1","operationType":"main_build"}`)
	const target = "/v1/billing/check-sufficient?x=1"
	for _, scheme := range []Signing{SigningBodyPath, SigningTimestamp, SigningDual} {
		s := newSigner(scheme, false, testSecret, "", systemClock{}, slog.New(slog.DiscardHandler))
		h := http.Header{"Content-Type": {"application/json"}}
		if err := s.sign(h, http.MethodPost, target, body); err != nil {
			t.Fatal(err)
		}
		propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(h))
		if h.Get("Traceparent") == "" {
			t.Fatal("no traceparent injected")
		}
		v := &testVerifier{Secret: testSecret, Scheme: scheme}
		if err := v.Verify(http.MethodPost, target, h, body); err != nil {
			t.Errorf("%v: a signed request with a traceparent is refused: %v", scheme, err)
		}
	}
}

// An entry dropped from a full cache is counted as an eviction of that
// cache.
func TestTelemetryCacheEvictions(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	c, err := NewWorkerClient(WithSecret(testSecret), WithTelemetry(TelemetryConfig{MeterProvider: mp}), WithCache(CacheConfig{MaxLinks: 1}))
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	for _, key := range []string{"a", "b", "c"} {
		c.exports.links.Set(key, &DownloadLink{}, later)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "sheen.cache.evictions" {
				for _, dp := range sum.DataPoints {
					v, _ := dp.Attributes.Value("sheen.cache")
					got = append(got, fmt.Sprintf("%s=%d", v.AsString(), dp.Value))
				}
			}
		}
	}
	if fmt.Sprint(got) != "[export_link=2]" {
		t.Errorf("evictions %v, want [export_link=2]", got)
	}
}

// WorkerClient.Do is the span sheen.Do; its attempts, whose route the SDK
// does not know, are named after the method alone and carry no path.
func TestTelemetryDoSpan(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	defer tp.Shutdown(context.Background())
	c, err := NewWorkerClient(WithBaseURL("https://worker.invalid"), WithSecret(testSecret), WithTelemetry(TelemetryConfig{TracerProvider: tp}),
		WithHTTPClient(&http.Client{Transport: cannedTransport{}}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Do(context.Background(), "GET", "/v1/billing/balance/u1?secret-ish=1", nil, nil); err != nil {
		t.Fatal(err)
	}
	spans := sr.Ended()
	if len(spans) != 2 || spans[0].Name() != "GET" || spans[1].Name() != "sheen.Do" || spans[0].SpanKind() != trace.SpanKindClient {
		t.Fatalf("spans %v, want GET (client) and sheen.Do", spans)
	}
	for _, s := range spans {
		for _, a := range s.Attributes() {
			if a.Key == "url.template" || a.Key == "url.full" || a.Key == "url.path" {
				t.Errorf("%s has %s = %s: Do's path may hold IDs", s.Name(), a.Key, a.Value.String())
			}
		}
	}
}

// A method outside HTTP's own (Do takes any token) is recorded as the
// semantic conventions say, so that it cannot grow the attribute's values:
// http.request.method "_OTHER", the span named "HTTP ...".
func TestUnknownMethodsAreOther(t *testing.T) {
	for _, tc := range []struct{ method, want, name string }{
		{"GET", "GET", "GET /v1/x/{id}"},
		{"PATCH", "PATCH", "PATCH /v1/x/{id}"},
		{"PURGE", "_OTHER", "HTTP /v1/x/{id}"},
		{"get", "_OTHER", "HTTP /v1/x/{id}"},
	} {
		o := &callObs{method: knownMethod(tc.method), route: "/v1/x/{id}"}
		if o.method != tc.want || o.attemptName() != tc.name {
			t.Errorf("%s: method %q, span %q; want %q, %q", tc.method, o.method, o.attemptName(), tc.want, tc.name)
		}
	}
}

// meterWith is a meter provider reading into a manual reader, with views.
func meterWith(t *testing.T, views ...sdkmetric.View) (*sdkmetric.MeterProvider, *sdkmetric.ManualReader) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader), sdkmetric.WithView(views...))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	return mp, reader
}

// dropView drops the instrument named name.
func dropView(name string) sdkmetric.View {
	return sdkmetric.NewView(sdkmetric.Instrument{Name: name}, sdkmetric.Stream{Aggregation: sdkmetric.AggregationDrop{}})
}

// metricTotals is what reader holds, by instrument ("name{cache}" for the
// caches'): a counter's sum, a histogram's count, over every data point.
func metricTotals(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					name := m.Name
					if v, ok := dp.Attributes.Value("sheen.cache"); ok {
						name += "{" + v.AsString() + "}"
					}
					got[name] += dp.Value
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					got[m.Name] += int64(dp.Count)
				}
			}
		}
	}
	return got
}

// TestTelemetryDroppedInstrumentLeavesOthersOn: a view that drops one of
// the client's instruments drops that one alone.
func TestTelemetryDroppedInstrumentLeavesOthersOn(t *testing.T) {
	all := map[string]int64{
		"sheen.client.call.duration":  1,
		"sheen.client.attempts":       1,
		"sheen.client.limiter.wait":   1,
		"sheen.cache.hits{balance}":   2,
		"sheen.cache.misses{balance}": 1,
	}
	for _, drop := range []string{"", "sheen.client.call.duration", "sheen.client.attempts", "sheen.cache.hits", "sheen.cache.misses"} {
		t.Run(drop, func(t *testing.T) {
			var views []sdkmetric.View
			if drop != "" {
				views = append(views, dropView(drop))
			}
			mp, reader := meterWith(t, views...)
			c, mock := newMockClient(t, WithTelemetry(TelemetryConfig{MeterProvider: mp}))
			mock.RegisterNoResponder(httpmock.NewStringResponder(200, billingTotalBody(600)))
			for range 3 {
				if _, err := c.Billing.Balance(context.Background(), "u1"); err != nil {
					t.Fatal(err)
				}
			}
			want := map[string]int64{}
			for name, v := range all {
				if name != drop && !strings.HasPrefix(name, drop+"{") {
					want[name] = v
				}
			}
			if got := metricTotals(t, reader); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("with %q dropped, recorded %v, want %v", drop, got, want)
			}
		})
	}
}

// TestTelemetryCacheLookupsWithSharedCache: with a shared cache (or the
// local one it falls back to while down) a call answered without this
// client asking the worker counts a hit, with its span, and one that
// asked counts a miss, for balances and links alike.
func TestTelemetryCacheLookupsWithSharedCache(t *testing.T) {
	for _, down := range []bool{false, true} {
		t.Run(fmt.Sprintf("down=%v", down), func(t *testing.T) {
			mp, reader := meterWith(t)
			spans := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
			shared := &memShared{values: map[string][]byte{}, down: down}
			c, mock := newMockClient(t, WithTelemetry(TelemetryConfig{MeterProvider: mp, TracerProvider: tp}), WithCache(CacheConfig{Shared: shared}))
			mock.RegisterResponder("GET", "https://worker.test/base/v1/billing/balance/u1", httpmock.NewStringResponder(200, billingTotalBody(600)))
			mock.RegisterResponder("GET", exportsProjectURL, httpmock.NewStringResponder(200, exportsLinkBody(1, iso(time.Now().Add(24*time.Hour)))))
			ctx := context.Background()
			for range 3 {
				if _, err := c.Billing.Balance(ctx, "u1"); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Exports.ProjectLink(ctx, "p1", "u1"); err != nil {
					t.Fatal(err)
				}
			}
			if n := mock.GetTotalCallCount(); n != 2 {
				t.Fatalf("%d requests, want 2", n)
			}
			got := metricTotals(t, reader)
			want := map[string]int64{
				"sheen.cache.hits{balance}": 2, "sheen.cache.misses{balance}": 1,
				"sheen.cache.hits{export_link}": 2, "sheen.cache.misses{export_link}": 1,
			}
			for name, v := range want {
				if got[name] != v {
					t.Errorf("%s = %d, want %d (all: %v)", name, got[name], v, got)
				}
			}
			hitSpans := map[string]int{}
			for _, s := range spans.Ended() {
				for _, kv := range s.Attributes() {
					if kv.Key == attrCacheHit && kv.Value.AsBool() {
						hitSpans[s.Name()]++
					}
				}
			}
			if fmt.Sprint(hitSpans) != "map[sheen.Billing.Balance:2 sheen.Exports.ProjectLink:2]" {
				t.Errorf("cache hit spans: %v, want 2 of each", hitSpans)
			}
		})
	}
}

// TestTelemetryNoLookupsWithCachesOff: with the caches turned off no call
// is a lookup: nothing is counted, rather than a miss for every call.
func TestTelemetryNoLookupsWithCachesOff(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			mp, reader := meterWith(t)
			cfg := CacheConfig{BalanceTTL: -1, MaxLinks: -1}
			if shared {
				cfg.Shared = &memShared{values: map[string][]byte{}}
			}
			c, mock := newMockClient(t, WithTelemetry(TelemetryConfig{MeterProvider: mp}), WithCache(cfg))
			mock.RegisterResponder("GET", "https://worker.test/base/v1/billing/balance/u1", httpmock.NewStringResponder(200, billingTotalBody(600)))
			mock.RegisterResponder("GET", exportsProjectURL, httpmock.NewStringResponder(200, exportsLinkBody(1, iso(time.Now().Add(24*time.Hour)))))
			for range 2 {
				if _, err := c.Billing.Balance(context.Background(), "u1"); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Exports.ProjectLink(context.Background(), "p1", "u1"); err != nil {
					t.Fatal(err)
				}
			}
			got := metricTotals(t, reader)
			if got["sheen.client.attempts"] != 4 {
				t.Fatalf("attempts %v, want 4: the caches are off", got)
			}
			for name := range got {
				if strings.HasPrefix(name, "sheen.cache.") {
					t.Errorf("%s = %d with the caches off", name, got[name])
				}
			}
		})
	}
}
