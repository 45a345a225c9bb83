package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	sheen "github.com/sheenapps/sheen-go"
)

// A limiter scenario: goroutines sending a bounded number of requests to an
// in-process server that enforces a strict fixed window and reports it
// accurately in x-ratelimit-* headers. The sheen client and a naive client
// (it only waits out 429s) run side by side, each against its own server.
type scenario struct {
	title      string
	goroutines int
	requests   int
	window     time.Duration
	limit      int
	// dropTo and dropAt: from the middle of window dropAt (counted from
	// the window the run starts in) the server's limit is dropTo.
	dropTo, dropAt int
	// perMinute is the sheen client's configured rate.
	perMinute int
	// cold reports the start on its own: requests sent before the first
	// answer, the first window, the busiest second.
	cold bool
	goal string
}

var scenarios = []scenario{
	{
		title:      "32 goroutines, 400 requests, server window 40 per 500 ms, client configured at 1,000,000/min",
		goroutines: 32, requests: 400, window: 500 * time.Millisecond, limit: 40, perMinute: 1_000_000,
		goal: "0 x 429, >= 90 % quota",
	},
	{
		title:      "64 goroutines, 200 requests, server window 10 per 1 s, client configured at 1,000,000/min",
		goroutines: 64, requests: 200, window: time.Second, limit: 10, perMinute: 1_000_000, cold: true,
		goal: "0 x 429, >= 90 % quota",
	},
	{
		title:      "64 goroutines, 300 requests, server window 60 per 1 s dropping to 20 in the middle of the 4th window, client configured at 3600/min",
		goroutines: 64, requests: 300, window: time.Second, limit: 60, dropTo: 20, dropAt: 3, perMinute: 3600,
		goal: "<= 1 x 429, >= 85 % quota",
	},
	{
		title:      "cold start: 64 goroutines, 64 requests, server window 10 per 1 s, client configured at 600/min (the server's rate)",
		goroutines: 64, requests: 64, window: time.Second, limit: 10, perMinute: 600, cold: true,
		goal: "no burst beyond the configured rate before the first answer; 0 x 429",
	},
}

var onlyScenario = flag.Int("scenario", 0, "run only the limiter scenario with this number")

// limiterScenarios runs every scenario and prints one line per client.
func limiterScenarios() {
	for i, sc := range scenarios {
		if *onlyScenario != 0 && *onlyScenario != i+2 {
			continue
		}
		if i > 0 {
			fmt.Println()
		}
		fmt.Printf("%d. %s\n   goal: %s\n", i+2, sc.title, sc.goal)
		var wg sync.WaitGroup
		var sheenOut, naiveOut outcome
		wg.Add(2)
		go func() { defer wg.Done(); sheenOut = sc.run("sheen client", sheenCaller(sc)) }()
		go func() { defer wg.Done(); naiveOut = sc.run("naive client (waits out 429s)", naiveCaller) }()
		wg.Wait()
		fmt.Print(sheenOut.text, naiveOut.text)
		fmt.Printf("   sheen/naive: 429s %d/%d, time %.2fx\n", sheenOut.refused, naiveOut.refused,
			sheenOut.took.Seconds()/naiveOut.took.Seconds())
	}
}

func sheenCaller(sc scenario) func(url string, rt http.RoundTripper) func(context.Context) error {
	return func(url string, rt http.RoundTripper) func(context.Context) error {
		client, err := sheen.NewWorkerClient(sheen.WithBaseURL(url), sheen.WithSecret(secret),
			sheen.WithRateLimit(sc.perMinute), sheen.WithRetry(sheen.RetryConfig{MaxAttempts: 10, MaxWait: 5 * time.Second}),
			sheen.WithHTTPClient(&http.Client{Transport: rt}))
		if err != nil {
			log.Fatal(err)
		}
		return func(ctx context.Context) error { return client.Do(ctx, "GET", "/v1/ping", nil, nil) }
	}
}

func naiveCaller(url string, rt http.RoundTripper) func(context.Context) error {
	hc := &http.Client{Transport: rt}
	return func(ctx context.Context) error { return naiveGet(ctx, hc, url+"/v1/ping") }
}

// outcome is one client's run of a scenario.
type outcome struct {
	text    string // one line, two for a cold start
	refused int64
	took    time.Duration
}

// run starts a server for the scenario, sends its requests through the
// client newCall makes, and describes the outcome.
func (sc scenario) run(name string, newCall func(url string, rt http.RoundTripper) func(context.Context) error) outcome {
	// Start the run 40 % into a server window, as a client would.
	fw := &fixedWindow{sc: sc, grid: time.Now().Add(-sc.window * 4 / 10), windows: map[int64]*windowCount{}}
	srv := httptest.NewServer(fw)
	defer srv.Close()
	ct := &countingTransport{base: http.DefaultTransport}
	call := newCall(srv.URL, ct)
	fw.first = fw.index(time.Now())
	start := time.Now()
	failed := sendAll(sc.goroutines, sc.requests, call)
	took := time.Since(start)

	out := fmt.Sprintf("   %-30s 429s %4d   quota used %5.1f%%   failed %d   took %s\n",
		name, fw.refused.Load(), 100*fw.quotaShare(), failed, took.Round(time.Millisecond))
	if sc.cold {
		fw.mu.Lock()
		w := fw.windows[fw.first]
		if w == nil {
			w = &windowCount{}
		}
		busiest := 0
		for i, t := range fw.arrivals {
			n := 0
			for _, u := range fw.arrivals[i:] {
				if u.Sub(t) < time.Second {
					n++
				}
			}
			busiest = max(busiest, n)
		}
		fw.mu.Unlock()
		out += fmt.Sprintf("   %-30s before the first answer %d sent; first window %d sent, %d x 429; busiest second %d sent\n",
			"", ct.beforeFirst.Load(), w.admitted+w.refused, w.refused, busiest)
	}
	return outcome{text: out, refused: fw.refused.Load(), took: took}
}

// sendAll sends requests from goroutines and counts the calls that failed.
func sendAll(goroutines, requests int, call func(context.Context) error) int64 {
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(requests) {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				if err := call(ctx); err != nil {
					failed.Add(1)
					fmt.Fprintln(os.Stderr, err)
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	return failed.Load()
}

// countingTransport counts the requests a client sent before its first
// answer came back.
type countingTransport struct {
	base        http.RoundTripper
	started     atomic.Int64
	beforeFirst atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.started.Add(1)
	resp, err := c.base.RoundTrip(r)
	if err == nil {
		c.beforeFirst.CompareAndSwap(0, c.started.Load())
	}
	return resp, err
}

// fixedWindow is a server enforcing a strict fixed window: windows start at
// grid + k x window, and each admits limit requests (dropTo from the middle
// of window dropAt on). It reports the window in x-ratelimit-* headers,
// reset in fractional seconds since windows are a second or shorter.
type fixedWindow struct {
	sc      scenario
	grid    time.Time
	first   int64 // the window the run started in
	refused atomic.Int64

	mu       sync.Mutex
	windows  map[int64]*windowCount
	arrivals []time.Time
}

type windowCount struct{ admitted, refused int }

func (s *fixedWindow) index(t time.Time) int64 { return int64(t.Sub(s.grid) / s.sc.window) }

// limitAt is the limit in force at t.
func (s *fixedWindow) limitAt(t time.Time) int {
	if s.sc.dropTo > 0 {
		drop := s.grid.Add(time.Duration(s.first+int64(s.sc.dropAt))*s.sc.window + s.sc.window/2)
		if !t.Before(drop) {
			return s.sc.dropTo
		}
	}
	return s.sc.limit
}

func (s *fixedWindow) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	idx := s.index(now)
	limit := s.limitAt(now)
	s.mu.Lock()
	c := s.windows[idx]
	if c == nil {
		c = &windowCount{}
		s.windows[idx] = c
	}
	allowed := c.admitted < limit
	if allowed {
		c.admitted++
	} else {
		c.refused++
	}
	remaining := max(limit-c.admitted, 0)
	s.arrivals = append(s.arrivals, now)
	s.mu.Unlock()

	reset := strconv.FormatFloat(s.grid.Add(time.Duration(idx+1)*s.sc.window).Sub(now).Seconds(), 'f', 3, 64)
	h := w.Header()
	h.Set("X-Ratelimit-Limit", strconv.Itoa(limit))
	h.Set("X-Ratelimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-Ratelimit-Reset", reset)
	h.Set("Content-Type", "application/json")
	if !allowed {
		s.refused.Add(1)
		h.Set("Retry-After", reset)
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"error":"Rate limit exceeded"}`)
		return
	}
	io.WriteString(w, `{"ok":true}`)
}

// quotaShare is the requests admitted over the quota of the windows from the
// first admitted request's to the last's. A window's quota is its limit at
// its end, or what it admitted when that is more (a window whose limit
// dropped after it admitted more).
func (s *fixedWindow) quotaShare() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	first, last := int64(-1), int64(-1)
	for idx, c := range s.windows {
		if c.admitted == 0 {
			continue
		}
		if first < 0 || idx < first {
			first = idx
		}
		if idx > last {
			last = idx
		}
	}
	if first < 0 {
		return 0
	}
	var admitted, quota int
	for idx := first; idx <= last; idx++ {
		end := s.grid.Add(time.Duration(idx+1)*s.sc.window - time.Nanosecond)
		q := s.limitAt(end)
		if c := s.windows[idx]; c != nil {
			admitted += c.admitted
			q = max(q, c.admitted)
		}
		quota += q
	}
	return float64(admitted) / float64(quota)
}

// naiveGet sends a request and, on 429, waits what Retry-After says and
// tries again.
func naiveGet(ctx context.Context, hc *http.Client, url string) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests {
			return nil
		}
		wait, _ := strconv.ParseFloat(resp.Header.Get("Retry-After"), 64)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(wait * float64(time.Second))):
		}
	}
}
