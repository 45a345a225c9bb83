package sheen_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/oteltest"
	"github.com/sheenapps/sheen-go/sheentest"
)

// Wait is one span for the build with an event each time a phase starts,
// in the order the events came; its fetches are its children; every event
// delivered has its latency recorded.
func TestTelemetryWaitPhases(t *testing.T) {
	rec := newRecorded(t)
	const user = "user-otel-2"
	worker := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithUser(user, time.Hour))
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
	var seen []sheen.BuildEvent
	res, err := client.Builds.Wait(ctx, build.ID, user, &sheen.FollowOptions{OnEvent: func(ev sheen.BuildEvent) { seen = append(seen, ev) }})
	if err != nil {
		t.Fatal(err)
	}
	spans := rec.Spans.Ended()
	waits := oteltest.SpansNamed(spans, "sheen.Builds.Wait")
	if len(waits) != 1 {
		t.Fatalf("%d sheen.Builds.Wait spans, want 1", len(waits))
	}
	w := waits[0]
	var want, got []string
	last := sheen.Phase("")
	for _, ev := range seen {
		if ev.Phase != "" && ev.Phase != last {
			want = append(want, string(ev.Phase)+"@"+strconv.FormatInt(ev.ID, 10))
			last = ev.Phase
		}
	}
	for _, e := range w.Events() {
		var phase, id string
		for _, a := range e.Attributes {
			switch a.Key {
			case "sheen.build.phase":
				phase = a.Value.String()
			case "sheen.build.event_id":
				id = a.Value.String()
			}
		}
		got = append(got, phase+"@"+id)
	}
	if len(want) < 3 || !equalStrings(want, got) {
		t.Errorf("phase events %v, want one per phase start %v", got, want)
	}
	for k, v := range map[string]string{"sheen.build.id": build.ID, "sheen.build.outcome": "succeeded",
		"sheen.build.events": strconv.Itoa(res.Events), "sheen.build.event_id": strconv.FormatInt(res.LastEventID, 10)} {
		if got := oteltest.Attr(w, k); got != v {
			t.Errorf("Wait span %s = %q, want %q", k, got, v)
		}
	}
	fetches := oteltest.SpansNamed(spans, "sheen.Builds.FetchEvents")
	if len(fetches) == 0 {
		t.Fatal("no sheen.Builds.FetchEvents span")
	}
	for _, f := range fetches {
		if f.Parent().SpanID() != w.SpanContext().SpanID() {
			t.Errorf("a fetch's parent is %s, not the Wait span", f.Parent().SpanID())
		}
	}
	var rm metricdata.ResourceMetrics
	if err := rec.Reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	var latencies int64
	for _, p := range points(rm) {
		if p.Name == "sheen.build.event.latency" {
			latencies += p.Value
		}
	}
	if latencies != int64(len(seen)) {
		t.Errorf("%d event latencies recorded for %d events delivered", latencies, len(seen))
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// User IDs reach spans only when the client opts in.
func TestTelemetryUserIDsOptIn(t *testing.T) {
	const user = "user-otel-3"
	for _, optIn := range []bool{false, true} {
		rec := newRecorded(t)
		worker := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithUser(user, time.Hour))
		opts := rec.Options(sheen.TelemetryConfig{UserIDs: optIn})
		client, err := worker.Client(opts...)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for range 2 { // a miss, then a hit
			if _, err := client.Billing.Balance(ctx, user); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := client.Billing.Usage(ctx, user, ""); err != nil {
			t.Fatal(err)
		}
		worker.Close()
		calls := append(oteltest.SpansNamed(rec.Spans.Ended(), "sheen.Billing.Balance"), oteltest.SpansNamed(rec.Spans.Ended(), "sheen.Billing.Usage")...)
		if len(calls) != 3 {
			t.Fatalf("%d call spans, want 3", len(calls))
		}
		want := ""
		if optIn {
			want = user
		}
		for _, s := range calls {
			if got := oteltest.Attr(s, "user.id"); got != want {
				t.Errorf("opted in %v: %s span has user.id %q, want %q", optIn, s.Name(), got, want)
			}
		}
	}
}

// AI.Generate is a call span with an attempt per request to its endpoint,
// which carries the attempt's trace context; a 429 (the hourly budget
// spent) shows on the attempt.
func TestTelemetryGenerate(t *testing.T) {
	rec := newRecorded(t)
	worker := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithProjectFolder("u1", "p1"), sheentest.WithGenerateBudget(1))
	defer worker.Close()
	client, err := worker.Client(rec.Options(sheen.TelemetryConfig{})...)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := client.AI.Generate(ctx, sheen.GenerateRequest{UserID: "u1", ProjectID: "p1", Prompt: "Add a dark mode toggle"}); err != nil {
		t.Fatal(err)
	}
	_, err = client.AI.Generate(ctx, sheen.GenerateRequest{UserID: "u1", ProjectID: "p1", Prompt: "Add a contact form"}, sheen.WithCallAttempts(1))
	if err == nil {
		t.Fatal("the second generation passed the fake worker's budget of 1")
	}
	spans := rec.Spans.Ended()
	calls, attempts := oteltest.SpansNamed(spans, "sheen.AI.Generate"), oteltest.SpansNamed(spans, "POST /generate")
	if len(calls) != 2 || len(attempts) != 2 {
		t.Fatalf("%d calls and %d attempts, want 2 and 2", len(calls), len(attempts))
	}
	for i, want := range []string{"200", "429"} {
		if attempts[i].Parent().SpanID() != calls[i].SpanContext().SpanID() || oteltest.Attr(attempts[i], "http.response.status_code") != want {
			t.Errorf("attempt %d: status %s under %s", i+1, oteltest.Attr(attempts[i], "http.response.status_code"), attempts[i].Parent().SpanID())
		}
	}
	if got := oteltest.Attr(calls[1], "sheen.outcome"); got != "rate_limited" {
		t.Errorf("the refused generation's outcome is %q", got)
	}
	var carried int
	for _, r := range worker.Requests() {
		sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(r.Header)))
		for _, a := range attempts {
			if sc.SpanID() == a.SpanContext().SpanID() {
				carried++
			}
		}
	}
	if carried != 2 {
		t.Errorf("%d generate requests carried their attempt's trace context, want 2", carried)
	}
}
