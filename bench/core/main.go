// Command core measures the SDK's request path against baselines measured in
// the same run:
//
//  1. one WorkerClient.Do call (signing, limiter, retry wrapper, decoding)
//     against a bare net/http request signed by hand, to the same loopback
//     server: time and allocations per call, and their ratio;
//  2. 32 goroutines sending 400 requests through one client to a server that
//     enforces a strict fixed window (40 requests per 500 ms) and sends
//     accurate x-ratelimit-* headers: 429s received and share of the quota
//     used, beside a naive client that only reacts to 429s.
//
// Run it with: go run ./bench/core
package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sheen "github.com/sheenapps/sheen-go"
)

const secret = "bench-secret-0123456789abcdef0123456789"

func main() {
	rounds := flag.Int("rounds", 5, "rounds of the Do benchmark (the median is reported)")
	flag.Parse()
	log.SetFlags(0)
	overhead(*rounds)
	fmt.Println()
	quota()
}

// overhead compares Do with a hand-signed net/http request.
func overhead(rounds int) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"balance":{"welcomeBonus":3000,"dailyGift":900,"paid":0,"total":3900},"usage":{"todayUsed":0,"lifetimeUsed":120}}`)
	}))
	defer srv.Close()

	client, err := sheen.NewWorkerClient(sheen.WithBaseURL(srv.URL), sheen.WithSecret(secret), sheen.WithRateLimit(1_000_000_000))
	if err != nil {
		log.Fatal(err)
	}
	type balance struct {
		Balance struct{ Total int } `json:"balance"`
	}
	const path = "/v1/billing/balance/7d1f7e52-5b0e-4c7a-9a59-2f2d0f0a6b11"
	sdk := func(b *testing.B) {
		b.ReportAllocs()
		ctx := context.Background()
		for b.Loop() {
			var out balance
			if err := client.Do(ctx, "GET", path, nil, &out); err != nil {
				b.Fatal(err)
			}
		}
	}
	bare := func(b *testing.B) {
		b.ReportAllocs()
		hc := &http.Client{}
		for b.Loop() {
			req, _ := http.NewRequest("GET", srv.URL+path, nil)
			m := hmac.New(sha256.New, []byte(secret))
			m.Write([]byte(path))
			req.Header.Set("X-Sheen-Signature", hex.EncodeToString(m.Sum(nil)))
			req.Header.Set("Accept", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var out balance
			if err := json.Unmarshal(body, &out); err != nil {
				b.Fatal(err)
			}
		}
	}
	var ratios []float64
	var lastSDK, lastBare testing.BenchmarkResult
	for range rounds {
		lastBare = testing.Benchmark(bare)
		lastSDK = testing.Benchmark(sdk)
		ratios = append(ratios, float64(lastSDK.NsPerOp())/float64(lastBare.NsPerOp()))
	}
	sort.Float64s(ratios)
	fmt.Println("1. One GET through WorkerClient.Do vs a hand-signed net/http request (loopback)")
	fmt.Printf("   bare net/http + HMAC  %8d ns/op %6d allocs/op %7d B/op\n", lastBare.NsPerOp(), lastBare.AllocsPerOp(), lastBare.AllocedBytesPerOp())
	fmt.Printf("   sheen Do              %8d ns/op %6d allocs/op %7d B/op\n", lastSDK.NsPerOp(), lastSDK.AllocsPerOp(), lastSDK.AllocedBytesPerOp())
	fmt.Printf("   time ratio sheen/bare: median %.3f over %d rounds (min %.3f, max %.3f); goal <= 1.10\n",
		ratios[len(ratios)/2], rounds, ratios[0], ratios[len(ratios)-1])
	fmt.Printf("   the SDK's own cost per call, without the network: %s\n", sdkCost())
}

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

// sdkCost measures Do and the hand-signed request over a transport that
// answers from memory, and reports the difference per call.
func sdkCost() string {
	client, err := sheen.NewWorkerClient(sheen.WithBaseURL("https://worker.invalid"), sheen.WithSecret(secret),
		sheen.WithRateLimit(1_000_000_000), sheen.WithHTTPClient(&http.Client{Transport: cannedTransport{}}))
	if err != nil {
		log.Fatal(err)
	}
	const path = "/v1/billing/balance/u1"
	var out struct {
		Balance struct{ Total int } `json:"balance"`
	}
	sdk := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := client.Do(context.Background(), "GET", path, nil, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
	hc := &http.Client{Transport: cannedTransport{}}
	bare := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			req, _ := http.NewRequest("GET", "https://worker.invalid"+path, nil)
			m := hmac.New(sha256.New, []byte(secret))
			m.Write([]byte(path))
			req.Header.Set("X-Sheen-Signature", hex.EncodeToString(m.Sum(nil)))
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err := json.Unmarshal(body, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
	return fmt.Sprintf("%.1f µs and %d allocations more than the bare request (%d ns/op vs %d ns/op)",
		float64(sdk.NsPerOp()-bare.NsPerOp())/1000, sdk.AllocsPerOp()-bare.AllocsPerOp(), sdk.NsPerOp(), bare.NsPerOp())
}

// windowServer enforces a fixed window of limit requests per window and
// reports it accurately in x-ratelimit-* headers (reset in fractional
// seconds, since the window is shorter than a second).
type windowServer struct {
	limit  int
	window time.Duration
	start  time.Time

	mu       sync.Mutex
	current  int64 // window index
	used     int
	ok       atomic.Int64
	refused  atomic.Int64
	firstOK  atomic.Int64 // unix nanos
	lastOK   atomic.Int64
	windowOK map[int64]int
}

func (s *windowServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	s.mu.Lock()
	idx := int64(now.Sub(s.start) / s.window)
	if idx != s.current {
		s.current, s.used = idx, 0
	}
	reset := s.start.Add(time.Duration(idx+1) * s.window).Sub(now)
	allowed := s.used < s.limit
	if allowed {
		s.used++
		s.windowOK[idx]++
	}
	remaining := s.limit - s.used
	s.mu.Unlock()

	h := w.Header()
	h.Set("X-Ratelimit-Limit", strconv.Itoa(s.limit))
	h.Set("X-Ratelimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-Ratelimit-Reset", strconv.FormatFloat(reset.Seconds(), 'f', 3, 64))
	h.Set("Content-Type", "application/json")
	if !allowed {
		s.refused.Add(1)
		h.Set("Retry-After", strconv.FormatFloat(reset.Seconds(), 'f', 3, 64))
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"error":"Rate limit exceeded"}`)
		return
	}
	s.ok.Add(1)
	s.firstOK.CompareAndSwap(0, now.UnixNano())
	s.lastOK.Store(now.UnixNano())
	io.WriteString(w, `{"ok":true}`)
}

// quotaShare is successful requests over the quota of the windows the run
// spanned, from the first success's window to the last's.
func (s *windowServer) quotaShare() float64 {
	first := time.Unix(0, s.firstOK.Load()).Sub(s.start) / s.window
	last := time.Unix(0, s.lastOK.Load()).Sub(s.start) / s.window
	windows := int64(last-first) + 1
	return float64(s.ok.Load()) / float64(windows*int64(s.limit))
}

func newWindowServer() (*windowServer, *httptest.Server) {
	ws := &windowServer{limit: 40, window: 500 * time.Millisecond, start: time.Now(), windowOK: map[int64]int{}}
	return ws, httptest.NewServer(ws)
}

const (
	workers  = 32
	requests = 400
)

func quota() {
	fmt.Printf("2. %d goroutines, %d requests, server window 40 per 500 ms\n", workers, requests)

	ws, srv := newWindowServer()
	client, err := sheen.NewWorkerClient(sheen.WithBaseURL(srv.URL), sheen.WithSecret(secret),
		sheen.WithRateLimit(1_000_000), sheen.WithRetry(10, 5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	start := time.Now()
	failed := run(func(ctx context.Context) error { return client.Do(ctx, "GET", "/v1/ping", nil, nil) })
	report("sheen client", ws, time.Since(start), failed)
	srv.Close()

	ws, srv = newWindowServer()
	naive := &http.Client{}
	start = time.Now()
	failed = run(func(ctx context.Context) error { return naiveGet(ctx, naive, srv.URL+"/v1/ping") })
	report("naive client (retries after 429)", ws, time.Since(start), failed)
	srv.Close()
}

func report(name string, ws *windowServer, took time.Duration, failed int64) {
	fmt.Printf("   %-34s 429s %4d   quota used %5.1f%%   failed %d   took %s\n",
		name, ws.refused.Load(), 100*ws.quotaShare(), failed, took.Round(time.Millisecond))
}

// run sends requests from workers goroutines and counts failures.
func run(call func(context.Context) error) int64 {
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= requests {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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
