package pgevents

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	sheen "github.com/sheenapps/sheen-go"
)

// benchPollInterval is the readers' poll interval in the benchmark. The
// reference UI polls every 1 to 3 s; a shorter interval keeps the polling
// run short, and polling latency grows with the interval (about half of it
// at p50, all of it at p99).
const benchPollInterval = 100 * time.Millisecond

// BenchmarkDeliveryLatency measures the time from an event's INSERT
// (autocommit) to its delivery by Builds.Follow, with the NOTIFY trigger and
// with polling alone, and reports p50-ms and p99-ms per mode. Each insert
// waits a random part of the poll interval first, so polling is sampled at
// every point of its cycle. For a steady p99, run enough samples:
//
//	go test -run '^$' -bench DeliveryLatency -benchtime 200x ./pgevents
func BenchmarkDeliveryLatency(b *testing.B) {
	for _, mode := range []struct {
		name    string
		trigger bool
		opts    []Option
	}{
		{"notify", true, nil},
		{"poll", false, []Option{WithoutNotifications()}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			db := newTestDB(b, mode.trigger)
			src := New(db.reader, mode.opts...)
			client := newClient(b)
			user, build := uuid.NewString(), "01JBENCH"
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()

			delivered := make(chan int64, 1)
			done := make(chan error, 1)
			go func() {
				for e, err := range client.Builds.Follow(ctx, build, user, &sheen.FollowOptions{
					Source:       src,
					MetadataWait: -1,
					PollInterval: func(sheen.Phase) time.Duration { return benchPollInterval },
				}) {
					if err != nil {
						done <- err
						return
					}
					delivered <- e.ID
				}
				done <- nil
			}()
			if mode.trigger {
				for deadline := time.Now().Add(30 * time.Second); !src.Listening(); time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						b.Fatal("the source never started listening")
					}
				}
			}

			latencies := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				time.Sleep(rand.N(benchPollInterval))
				start := time.Now()
				id, err := db.insert(ctx, row{build: build, user: user, typ: "progress", phase: "build"})
				if err != nil {
					b.Fatal(err)
				}
				if got := <-delivered; got != id {
					b.Fatalf("delivered %d, want %d", got, id)
				}
				latencies = append(latencies, time.Since(start))
			}
			b.StopTimer()
			if _, err := db.insert(ctx, row{build: build, user: user, typ: "completed", phase: "deploy", finished: true}); err != nil {
				b.Fatal(err)
			}
			<-delivered
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			slices.Sort(latencies)
			at := func(q float64) float64 {
				return float64(latencies[min(int(q*float64(len(latencies))), len(latencies)-1)]) / float64(time.Millisecond)
			}
			b.ReportMetric(at(0.50), "p50-ms")
			b.ReportMetric(at(0.99), "p99-ms")
			b.ReportMetric(0, "ns/op") // ns/op would count the random pauses
		})
	}
}
