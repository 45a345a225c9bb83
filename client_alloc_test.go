package sheen

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// cannedTransport answers every request at once from memory, so the SDK's
// own work can be told apart from the network's.
type cannedTransport struct{}

func (cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{
		StatusCode: 200, Request: r,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   io.NopCloser(strings.NewReader(`{"balance":{"welcomeBonus":3000,"dailyGift":900,"paid":0,"total":3900}}`)),
	}, nil
}

// The SDK's request path costs fewer allocations per call than a
// hand-signed net/http request decoding the same answer: one fewer with Go
// 1.26 (issue #13 allowed ten more; the ceiling follows the count reached,
// so that a new allocation on the path shows), and a client with no
// attempt timeout six fewer again. Allocation counts are deterministic, so
// this is a test; time is left to bench/core.
func TestDoAllocationsOverBare(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts; .ci/run also runs this test without -race")
	}
	c, err := NewWorkerClient(WithBaseURL("https://worker.invalid"), WithSecret(testSecret),
		WithRateLimit(1_000_000_000), WithHTTPClient(&http.Client{Transport: cannedTransport{}}))
	if err != nil {
		t.Fatal(err)
	}
	const path = "/v1/billing/balance/u1"
	var out struct {
		Balance struct{ Total int } `json:"balance"`
	}
	ctx := context.Background()
	sdk := testing.AllocsPerRun(200, func() {
		if err := c.Do(ctx, "GET", path, nil, &out); err != nil {
			t.Fatal(err)
		}
	})
	hc := &http.Client{Transport: cannedTransport{}}
	bare := testing.AllocsPerRun(200, func() {
		req, _ := http.NewRequest("GET", "https://worker.invalid"+path, nil)
		m := hmac.New(sha256.New, []byte(testSecret))
		m.Write([]byte(path))
		req.Header.Set("X-Sheen-Signature", hex.EncodeToString(m.Sum(nil)))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatal(err)
		}
	})
	// Without the attempt timeout, no timer, context, request copy or
	// body wrapper is made for the attempt.
	unbounded, err := NewWorkerClient(WithBaseURL("https://worker.invalid"), WithSecret(testSecret), WithRateLimit(1_000_000_000),
		WithHTTPClient(&http.Client{Transport: cannedTransport{}}), WithRetry(RetryConfig{AttemptTimeout: -1}))
	if err != nil {
		t.Fatal(err)
	}
	sdkUnbounded := testing.AllocsPerRun(200, func() {
		if err := unbounded.Do(ctx, "GET", path, nil, &out); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("Do %.0f allocations (no attempt timeout: %.0f), bare %.0f", sdk, sdkUnbounded, bare)
	if sdk > bare-1 {
		t.Errorf("Do makes %.0f allocations per call, the bare request %.0f: want at least 1 fewer", sdk, bare)
	}
	if sdkUnbounded > sdk-6 {
		t.Errorf("Do with no attempt timeout makes %.0f allocations per call, with one %.0f: want at least 6 fewer", sdkUnbounded, sdk)
	}
}

// With no provider installed (the global ones, as a program that never
// sets up OpenTelemetry has), or with the API's no-op providers given
// explicitly, telemetry costs a call at most 2 allocations (issue #16):
// measured against the same client with its telemetry removed.
func TestDoAllocationsWithoutTelemetry(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts; .ci/run also runs this test without -race")
	}
	if otel.GetTracerProvider() != unsetGlobalTracerProvider || unsetGlobalTracerProvider == nil {
		t.Fatal("a global tracer provider is installed: this test measures a program without one")
	}
	newClient := func(opts ...Option) *WorkerClient {
		c, err := NewWorkerClient(append([]Option{WithBaseURL("https://worker.invalid"), WithSecret(testSecret),
			WithRateLimit(1_000_000_000), WithHTTPClient(&http.Client{Transport: cannedTransport{}})}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	allocs := func(c *WorkerClient) float64 {
		var out struct {
			Balance struct{ Total int } `json:"balance"`
		}
		ctx := context.Background()
		return testing.AllocsPerRun(200, func() {
			if err := c.Do(ctx, "GET", "/v1/billing/balance/u1", nil, &out); err != nil {
				t.Fatal(err)
			}
		})
	}
	none := newClient()
	none.core.tel = nil // no telemetry at all: the baseline
	base := allocs(none)
	for _, tc := range []struct {
		name string
		c    *WorkerClient
	}{
		{"global providers, none installed", newClient()},
		{"no-op providers given", newClient(WithTelemetry(TelemetryConfig{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider()}))},
	} {
		got := allocs(tc.c)
		t.Logf("%s: %.0f allocations per Do, %.0f without telemetry", tc.name, got, base)
		if got > base+2 {
			t.Errorf("%s: Do makes %.0f allocations, %.0f without telemetry: want at most 2 more", tc.name, got, base)
		}
	}
}
