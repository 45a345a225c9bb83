package sheen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// strictWindow is a worker enforcing a strict fixed window in the bubble's
// fake time, reporting it in x-ratelimit-* headers with the reset in
// milliseconds, as a real server does: computed when the request is served,
// read by the client after the answer's trip back.
type strictWindow struct {
	grid   time.Time
	window time.Duration
	limit  func(time.Time) int

	mu       sync.Mutex
	admitted map[int64]int
	refused  int
}

func (s *strictWindow) serve() *http.Response {
	now := time.Now()
	idx := int64(now.Sub(s.grid) / s.window)
	limit := s.limit(now)
	s.mu.Lock()
	ok := s.admitted[idx] < limit
	if ok {
		s.admitted[idx]++
	} else {
		s.refused++
	}
	remaining := max(limit-s.admitted[idx], 0)
	s.mu.Unlock()
	reset := strconv.FormatFloat(s.grid.Add(time.Duration(idx+1)*s.window).Sub(now).Seconds(), 'f', 3, 64)
	h := http.Header{}
	h.Set("X-Ratelimit-Limit", strconv.Itoa(limit))
	h.Set("X-Ratelimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-Ratelimit-Reset", reset)
	status := http.StatusOK
	if !ok {
		status = http.StatusTooManyRequests
		h.Set("Retry-After", reset)
	}
	return &http.Response{StatusCode: status, Header: h}
}

// quota is the share of the windows' limits used, from the first window
// that admitted a request to the last (a window whose limit dropped after it
// admitted more counts what it admitted).
func (s *strictWindow) quota() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	first, last := int64(-1), int64(-1)
	for idx := range s.admitted {
		if first < 0 || idx < first {
			first = idx
		}
		last = max(last, idx)
	}
	var used, capacity int
	for idx := first; idx <= last; idx++ {
		end := s.grid.Add(time.Duration(idx+1)*s.window - time.Nanosecond)
		used += s.admitted[idx]
		capacity += max(s.limit(end), s.admitted[idx])
	}
	return float64(used) / float64(capacity)
}

// Goroutines sharing one limiter against a strict window, with answers
// delayed at random (so they come back out of order and late): the worker
// refuses nothing, and the quota is used.
func TestLimiterAgainstStrictWindow(t *testing.T) {
	for _, tc := range []struct {
		name        string
		goroutines  int
		requests    int
		window      time.Duration
		limit       int
		dropTo      int // from the middle of the 4th window
		perMinute   int
		maxRefused  int
		minQuota    float64
		maxLatency  time.Duration
		offsetShare float64 // how far into a window the run starts
	}{
		{"64 goroutines vs 10 per second", 64, 200, time.Second, 10, 0, 1_000_000, 0, 0.9, 30 * time.Millisecond, 0.4},
		{"32 goroutines vs 40 per 500 ms", 32, 400, 500 * time.Millisecond, 40, 0, 1_000_000, 0, 0.9, 20 * time.Millisecond, 0.7},
		{"limit drops from 60 to 20", 64, 300, time.Second, 60, 20, 3600, 1, 0.85, 5 * time.Millisecond, 0.4},
		{"configured at the server's rate", 64, 100, time.Second, 10, 0, 600, 0, 0.85, 30 * time.Millisecond, 0.4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				srv := &strictWindow{
					grid:     start.Add(-time.Duration(float64(tc.window) * tc.offsetShare)),
					window:   tc.window,
					admitted: map[int64]int{},
				}
				drop := srv.grid.Add(3*tc.window + tc.window/2)
				srv.limit = func(t time.Time) int {
					if tc.dropTo > 0 && !t.Before(drop) {
						return tc.dropTo
					}
					return tc.limit
				}
				l := newAdaptiveLimiter(tc.perMinute, time.Minute, systemClock{})
				rng := rand.New(rand.NewPCG(1, 2))
				var rngMu sync.Mutex
				latency := func() time.Duration {
					rngMu.Lock()
					defer rngMu.Unlock()
					return time.Duration(rng.Int64N(int64(tc.maxLatency)))
				}
				var mu sync.Mutex
				left := tc.requests
				overdrawn := "" // the first time in flight exceeded remaining
				var wg sync.WaitGroup
				for range tc.goroutines {
					wg.Go(func() {
						for {
							mu.Lock()
							if left == 0 {
								mu.Unlock()
								return
							}
							left--
							mu.Unlock()
							for {
								release, err := l.acquire(context.Background())
								if err != nil {
									t.Error(err)
									return
								}
								if s := l.snapshot(); s.AdvertisedLimit >= 0 && s.InFlight > max(s.Remaining, 1) {
									mu.Lock()
									if overdrawn == "" {
										overdrawn = fmt.Sprintf("%d in flight with %d remaining", s.InFlight, s.Remaining)
									}
									mu.Unlock()
								}
								time.Sleep(latency())
								resp := srv.serve()
								time.Sleep(latency())
								release(resp)
								if resp.StatusCode != http.StatusTooManyRequests {
									break
								}
							}
						}
					})
				}
				wg.Wait()
				if overdrawn != "" {
					t.Errorf("requests in flight outnumbered the quota remaining: %s", overdrawn)
				}
				q := srv.quota()
				t.Logf("%d refused, quota used %.1f%%, took %s", srv.refused, 100*q, time.Since(start))
				if srv.refused > tc.maxRefused {
					t.Errorf("the worker refused %d requests, want at most %d", srv.refused, tc.maxRefused)
				}
				if q < tc.minQuota {
					t.Errorf("quota used %.1f%%, want at least %.0f%%", 100*q, 100*tc.minQuota)
				}
			})
		})
	}
}
