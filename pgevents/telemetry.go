package pgevents

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	sheen "github.com/sheenapps/sheen-go"
)

// batchEvent records a delivered batch of events on the span of ctx (the
// span of the sheen Follow or Wait that reads through the Source, when its
// client records traces): how many events, their first and last ids,
// whether more wait, and how many tries the fetch took. Empty batches are
// not recorded, nor anything when the span does not record.
func batchEvent(ctx context.Context, events []sheen.BuildEvent, more bool, tries int) {
	if len(events) == 0 {
		return
	}
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.AddEvent("pgevents.batch", trace.WithAttributes(
		attribute.Int("pgevents.batch.events", len(events)),
		attribute.Int64("pgevents.batch.first_id", events[0].ID),
		attribute.Int64("pgevents.batch.last_id", events[len(events)-1].ID),
		attribute.Bool("pgevents.batch.more", more),
		attribute.Int("pgevents.fetch.tries", tries),
	))
}
