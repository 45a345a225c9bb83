package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// collector is a span processor that keeps every ended span, to draw them
// as a tree.
type collector struct {
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
}

func (c *collector) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (c *collector) OnEnd(s sdktrace.ReadOnlySpan) {
	c.mu.Lock()
	c.spans = append(c.spans, s)
	c.mu.Unlock()
}
func (c *collector) Shutdown(context.Context) error   { return nil }
func (c *collector) ForceFlush(context.Context) error { return nil }

// shown are the attributes the tree prints, in this order, with short
// names.
var shown = []struct{ key, as string }{
	{"sheen.cache.hit", "cache hit"},
	{"http.response.status_code", "status"},
	{"sheen.error.code", "code"},
	{"sheen.limiter.wait_seconds", "limiter wait"},
	{"sheen.retry.reason", "retry"},
	{"sheen.retry.wait_seconds", "backoff"},
	{"sheen.attempts", "attempts"},
	{"sheen.outcome", "outcome"},
	{"sheen.build.outcome", "build"},
	{"sheen.build.events", "events"},
	{"sheen.download.bytes", "bytes"},
	{"sheen.download.resumes", "resumes"},
	{"sheen.download.format", "format"},
}

// printTree draws the spans, each under its parent in start order, with
// their duration, the attributes above and their events.
func (c *collector) printTree(out io.Writer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	ids := map[trace.SpanID]bool{}
	for _, s := range c.spans {
		ids[s.SpanContext().SpanID()] = true
	}
	var roots []sdktrace.ReadOnlySpan
	for _, s := range c.spans {
		if p := s.Parent().SpanID(); ids[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	var draw func(s sdktrace.ReadOnlySpan, indent string)
	draw = func(s sdktrace.ReadOnlySpan, indent string) {
		fmt.Fprintf(out, "%s%s  %s%s\n", indent, s.Name(), s.EndTime().Sub(s.StartTime()).Round(100*time.Microsecond), describe(s.Attributes()))
		for _, e := range s.Events() {
			fmt.Fprintf(out, "%s    · %s%s\n", indent, e.Name, describeAll(e.Attributes))
		}
		kids := children[s.SpanContext().SpanID()]
		slices.SortFunc(kids, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
		for _, k := range kids {
			draw(k, indent+"  ")
		}
	}
	for _, r := range roots {
		draw(r, "")
	}
}

// describe lists the shown attributes of a span.
func describe(attrs []attribute.KeyValue) string {
	var parts []string
	for _, sh := range shown {
		for _, a := range attrs {
			if string(a.Key) == sh.key {
				v := a.Value.String()
				if strings.HasSuffix(sh.key, "_seconds") {
					d := time.Duration(a.Value.AsFloat64() * float64(time.Second)).Round(100 * time.Microsecond)
					if d == 0 {
						continue // no wait worth showing
					}
					v = d.String()
				}
				parts = append(parts, sh.as+"="+v)
			}
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "  [" + strings.Join(parts, " ") + "]"
}

// describeAll lists an event's attributes.
func describeAll(attrs []attribute.KeyValue) string {
	var parts []string
	for _, a := range attrs {
		parts = append(parts, string(a.Key)+"="+a.Value.String())
	}
	if len(parts) == 0 {
		return ""
	}
	return "  [" + strings.Join(parts, " ") + "]"
}

// printMetrics prints what the reader collected: a line per data point,
// the value of a sum, or the count and sum of a histogram.
func printMetrics(ctx context.Context, out io.Writer, reader *sdkmetric.ManualReader) error {
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		return err
	}
	var lines []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					lines = append(lines, fmt.Sprintf("  %-27s %-69s %d %s", m.Name, labels(dp.Attributes), dp.Value, m.Unit))
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					lines = append(lines, fmt.Sprintf("  %-27s %-69s count %d, sum %.3g %s", m.Name, labels(dp.Attributes), dp.Count, dp.Sum, m.Unit))
				}
			}
		}
	}
	slices.Sort(lines)
	_, err := fmt.Fprintln(out, strings.Join(lines, "\n"))
	return err
}

func labels(s attribute.Set) string {
	var parts []string
	for _, kv := range s.ToSlice() {
		parts = append(parts, string(kv.Key)+"="+kv.Value.String())
	}
	return strings.Join(parts, " ")
}
