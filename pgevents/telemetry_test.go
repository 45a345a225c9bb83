package pgevents

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	sheen "github.com/sheenapps/sheen-go"
)

// A Wait that reads through a Source records each batch the Source
// delivered as an event of its span: the events' count and ids.
func TestBatchesAreEventsOfTheReadersSpan(t *testing.T) {
	db := newTestDB(t, false)
	user := uuid.NewString()
	first := db.mustInsert(t, row{build: "B1", user: user, typ: "progress", phase: "build", title: "Building", progress: pct(0.5)})
	last := db.mustInsert(t, row{build: "B1", user: user, typ: "completed", phase: "deploy", title: "Live", progress: pct(1), finished: true,
		preview: "https://preview.example/B1", versionID: "V1", versionName: "First"})

	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	defer tp.Shutdown(context.Background())
	c, err := sheen.NewWorkerClient(sheen.WithSecret("pgevents-test-secret-0123456789abcdef"), sheen.WithBaseURL("https://worker.invalid"),
		sheen.WithTelemetry(sheen.TelemetryConfig{TracerProvider: tp}))
	if err != nil {
		t.Fatal(err)
	}
	src := New(db.reader, WithoutNotifications())
	if _, err := c.Builds.Wait(context.Background(), "B1", user, &sheen.FollowOptions{Source: src, MetadataWait: -1}); err != nil {
		t.Fatal(err)
	}
	var batches []string
	for _, s := range sr.Ended() {
		if s.Name() != "sheen.Builds.Wait" {
			continue
		}
		for _, e := range s.Events() {
			if e.Name != "pgevents.batch" {
				continue
			}
			b := ""
			for _, a := range e.Attributes {
				b += fmt.Sprintf("%s=%s ", a.Key, a.Value.String())
			}
			batches = append(batches, b)
		}
	}
	want := fmt.Sprintf("pgevents.batch.events=2 pgevents.batch.first_id=%d pgevents.batch.last_id=%d pgevents.batch.more=false pgevents.fetch.tries=1 ", first, last)
	if len(batches) != 1 || batches[0] != want {
		t.Errorf("batch events %q, want [%q]", batches, want)
	}
}
