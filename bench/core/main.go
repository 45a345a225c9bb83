// Command core measures the SDK's request path against baselines measured in
// the same run:
//
//  1. one WorkerClient.Do call (signing, limiter, retry wrapper, decoding)
//     against a bare net/http request signed by hand, to the same loopback
//     server: time and allocations per call, and their ratio, both for a
//     client with no attempt timeout (the same unbounded exchange as the
//     bare request) and for the default client; beside them
//     what a user writes by hand with go-retryablehttp, and the bare request
//     with the SDK's headers and attempt timeout (sameWire), and both
//     under a caller's deadline shorter than the attempt timeout;
//     1b. OpenTelemetry's cost (telemetry.go): Do with telemetry off
//     against the same client with the API's no-op providers given, and
//     with the SDK recording everything in memory;
//  2. the rate limiter (limiter.go): goroutines sending a bounded number of
//     requests through one client to in-process servers that enforce strict
//     fixed windows and send accurate x-ratelimit-* headers (steady windows,
//     a limit that drops mid-window, a cold start): 429s received and share
//     of the quota used, beside a naive client that only reacts to 429s.
//
// Run it with: go run ./bench/core (add -limiter for the limiter part
// only, -overhead for part 1 only)
package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-retryablehttp"

	sheen "github.com/sheenapps/sheen-go"
)

const secret = "bench-secret-0123456789abcdef0123456789"

func main() {
	rounds := flag.Int("rounds", 5, "rounds of the Do benchmark (the median is reported)")
	limiterOnly := flag.Bool("limiter", false, "run only the rate-limiter scenarios")
	overheadOnly := flag.Bool("overhead", false, "run only the request-path comparison (part 1)")
	flag.Parse()
	log.SetFlags(0)
	if *overheadOnly {
		overhead(*rounds)
		return
	}
	if !*limiterOnly {
		overhead(*rounds)
		fmt.Println()
		telemetryCost(*rounds)
		fmt.Println()
	}
	limiterScenarios()
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
	// The same client without the per-attempt bound: each attempt is
	// bounded by the caller's context alone, like the bare request.
	unbounded, err := sheen.NewWorkerClient(sheen.WithBaseURL(srv.URL), sheen.WithSecret(secret), sheen.WithRateLimit(1_000_000_000),
		sheen.WithRetry(sheen.RetryConfig{AttemptTimeout: -1}))
	if err != nil {
		log.Fatal(err)
	}
	type balance struct {
		Balance struct{ Total int } `json:"balance"`
	}
	const path = "/v1/billing/balance/7d1f7e52-5b0e-4c7a-9a59-2f2d0f0a6b11"
	// sign and decode are what both hand-written baselines do around
	// their client's Do.
	sign := func(h http.Header) {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(path))
		h.Set("X-Sheen-Signature", hex.EncodeToString(m.Sum(nil)))
		h.Set("Accept", "application/json")
	}
	decode := func(b *testing.B, resp *http.Response) {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var out balance
		if err := json.Unmarshal(body, &out); err != nil {
			b.Fatal(err)
		}
	}
	// One call of each kind, for the benchmarks below and the call-by-call
	// comparison at the end.
	bareWith := func(hc *http.Client, headers func(http.Header)) func() {
		return func() {
			req, _ := http.NewRequest("GET", srv.URL+path, nil)
			sign(req.Header)
			headers(req.Header)
			resp, err := hc.Do(req)
			if err != nil {
				log.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var out balance
			if err := json.Unmarshal(body, &out); err != nil {
				log.Fatal(err)
			}
		}
	}
	bareOnce := bareWith(&http.Client{}, func(http.Header) {})
	// The bare request bounded the way hand-written clients usually are,
	// by http.Client.Timeout: what the default client, whose attempts are
	// bounded the same way, is compared with.
	boundedOnce := bareWith(&http.Client{Timeout: sheen.DefaultAttemptTimeout}, func(http.Header) {})
	// The bare request with the headers the SDK adds (its User-Agent in
	// place of Go's, a fresh X-Correlation-Id) and nothing else: what the
	// wire alone costs.
	sdkHeaders := func(h http.Header) {
		h.Set("User-Agent", "sheen-go/"+sheen.Version)
		h.Set("X-Correlation-Id", correlationID())
	}
	headersOnce := bareWith(&http.Client{}, sdkHeaders)
	// The same, bounded by http.Client.Timeout: the bare request that puts
	// on the wire what the default client does and bounds it the same way
	// (net/http's Timeout is a context deadline per call, as the SDK's
	// attempt timeout is). Against it, what remains is the SDK's own code.
	boundedHeadersOnce := bareWith(&http.Client{Timeout: sheen.DefaultAttemptTimeout}, sdkHeaders)
	doOnce := func(c *sheen.WorkerClient) func() {
		return func() {
			var out balance
			if err := c.Do(context.Background(), "GET", path, nil, &out); err != nil {
				log.Fatal(err)
			}
		}
	}
	loop := func(call func()) func(*testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				call()
			}
		}
	}
	bare, sdk, sdkUnbounded := loop(bareOnce), loop(doOnce(client)), loop(doOnce(unbounded))
	// What a user writes by hand with the same retry library: one
	// go-retryablehttp client, the signature set before Do (it has no
	// per-attempt hook, so a retry would resend the same signature).
	rc := retryablehttp.NewClient()
	rc.Logger = nil
	byHand := func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			req, _ := retryablehttp.NewRequest("GET", srv.URL+path, nil)
			sign(req.Header)
			resp, err := rc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			decode(b, resp)
		}
	}
	wire := loop(boundedHeadersOnce)
	// The same two calls made under a caller's deadline shorter than the
	// attempt timeout, as from a server handler: the SDK then arms no
	// timer of its own, and both sides pay for the caller's context.
	handlerCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), sheen.DefaultAttemptTimeout/2)
	}
	sdkDeadline := func(b *testing.B) {
		b.ReportAllocs()
		ctx, cancel := handlerCtx()
		defer cancel()
		for b.Loop() {
			var out balance
			if err := client.Do(ctx, "GET", path, nil, &out); err != nil {
				b.Fatal(err)
			}
		}
	}
	bareDeadline := func(b *testing.B) {
		b.ReportAllocs()
		ctx, cancel := handlerCtx()
		defer cancel()
		hc := &http.Client{}
		for b.Loop() {
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
			sign(req.Header)
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			decode(b, resp)
		}
	}
	var ratios, unboundedRatios, handRatios, wireRatios, deadlineRatios []float64
	var lastSDK, lastUnbounded, lastBare, lastHand, lastWire, lastSDKDeadline, lastBareDeadline testing.BenchmarkResult
	for range rounds {
		lastBare = testing.Benchmark(bare)
		lastUnbounded = testing.Benchmark(sdkUnbounded)
		lastSDK = testing.Benchmark(sdk)
		lastHand = testing.Benchmark(byHand)
		lastWire = testing.Benchmark(wire)
		lastBareDeadline = testing.Benchmark(bareDeadline)
		lastSDKDeadline = testing.Benchmark(sdkDeadline)
		ratios = append(ratios, float64(lastSDK.NsPerOp())/float64(lastBare.NsPerOp()))
		unboundedRatios = append(unboundedRatios, float64(lastUnbounded.NsPerOp())/float64(lastBare.NsPerOp()))
		handRatios = append(handRatios, float64(lastHand.NsPerOp())/float64(lastBare.NsPerOp()))
		wireRatios = append(wireRatios, float64(lastSDK.NsPerOp())/float64(lastWire.NsPerOp()))
		deadlineRatios = append(deadlineRatios, float64(lastSDKDeadline.NsPerOp())/float64(lastBareDeadline.NsPerOp()))
	}
	sort.Float64s(ratios)
	sort.Float64s(unboundedRatios)
	sort.Float64s(handRatios)
	sort.Float64s(wireRatios)
	sort.Float64s(deadlineRatios)
	fmt.Println("1. One GET through WorkerClient.Do vs a hand-signed net/http request (loopback)")
	fmt.Printf("   bare net/http + HMAC        %8d ns/op %6d allocs/op %7d B/op\n", lastBare.NsPerOp(), lastBare.AllocsPerOp(), lastBare.AllocedBytesPerOp())
	fmt.Printf("   go-retryablehttp + HMAC     %8d ns/op %6d allocs/op %7d B/op\n", lastHand.NsPerOp(), lastHand.AllocsPerOp(), lastHand.AllocedBytesPerOp())
	fmt.Printf("   bare, the SDK's wire        %8d ns/op %6d allocs/op %7d B/op\n", lastWire.NsPerOp(), lastWire.AllocsPerOp(), lastWire.AllocedBytesPerOp())
	fmt.Printf("   sheen Do, no attempt timeout%8d ns/op %6d allocs/op %7d B/op\n", lastUnbounded.NsPerOp(), lastUnbounded.AllocsPerOp(), lastUnbounded.AllocedBytesPerOp())
	fmt.Printf("   sheen Do (default)          %8d ns/op %6d allocs/op %7d B/op\n", lastSDK.NsPerOp(), lastSDK.AllocsPerOp(), lastSDK.AllocedBytesPerOp())
	fmt.Printf("   time ratio sheen/bare, neither bounding an attempt: median %.3f over %d rounds (min %.3f, max %.3f)\n",
		unboundedRatios[len(unboundedRatios)/2], rounds, unboundedRatios[0], unboundedRatios[len(unboundedRatios)-1])
	fmt.Printf("   time ratio sheen (default: each attempt bounded, 30 s)/bare: median %.3f (min %.3f, max %.3f)\n",
		ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1])
	fmt.Printf("   time ratio go-retryablehttp by hand/bare: median %.3f\n", handRatios[len(handRatios)/2])
	fmt.Printf("   time ratio sheen/bare with the SDK's wire (headers, attempt timeout): median %.3f (min %.3f, max %.3f)\n",
		wireRatios[len(wireRatios)/2], wireRatios[0], wireRatios[len(wireRatios)-1])
	fmt.Printf("   under a caller's deadline (as from a handler): bare %d ns/op, sheen %d ns/op; time ratio median %.3f (min %.3f, max %.3f)\n",
		lastBareDeadline.NsPerOp(), lastSDKDeadline.NsPerOp(), deadlineRatios[len(deadlineRatios)/2], deadlineRatios[0], deadlineRatios[len(deadlineRatios)-1])
	fmt.Printf("   the SDK's own cost per call, without the network: %s\n", sdkCost())
	fmt.Printf("   the same with no attempt timeout: %s\n", sdkCost(sheen.WithRetry(sheen.RetryConfig{AttemptTimeout: -1})))

	// The same ratios measured call by call, bare and sheen taking turns:
	// drift on a shared machine, which moves back-to-back benchmarks by
	// 10 % either way, then falls on both sides alike.
	var pairedUnbounded, pairedDefault, pairedHeaders, pairedBounded, ownUnbounded, ownDefault []float64
	for range rounds {
		pairedUnbounded = append(pairedUnbounded, paired(10_000, bareOnce, doOnce(unbounded)))
		pairedDefault = append(pairedDefault, paired(10_000, bareOnce, doOnce(client)))
		pairedHeaders = append(pairedHeaders, paired(10_000, bareOnce, headersOnce))
		pairedBounded = append(pairedBounded, paired(10_000, boundedOnce, doOnce(client)))
		ownUnbounded = append(ownUnbounded, paired(10_000, headersOnce, doOnce(unbounded)))
		ownDefault = append(ownDefault, paired(10_000, boundedHeadersOnce, doOnce(client)))
	}
	for _, r := range [][]float64{pairedUnbounded, pairedDefault, pairedHeaders, pairedBounded, ownUnbounded, ownDefault} {
		sort.Float64s(r)
	}
	fmt.Printf("   call by call, taking turns with bare (10,000 pairs a round): sheen with no attempt timeout/bare median %.3f (min %.3f, max %.3f)\n",
		pairedUnbounded[len(pairedUnbounded)/2], pairedUnbounded[0], pairedUnbounded[len(pairedUnbounded)-1])
	fmt.Printf("   call by call, taking turns with bare: sheen (default)/bare median %.3f (min %.3f, max %.3f)\n",
		pairedDefault[len(pairedDefault)/2], pairedDefault[0], pairedDefault[len(pairedDefault)-1])
	fmt.Printf("   call by call, taking turns with bare: bare with the SDK's two headers/bare median %.3f (min %.3f, max %.3f)\n",
		pairedHeaders[len(pairedHeaders)/2], pairedHeaders[0], pairedHeaders[len(pairedHeaders)-1])
	fmt.Printf("   call by call, each bounded: sheen (default, 30 s per attempt)/bare with http.Client.Timeout 30 s median %.3f (min %.3f, max %.3f)\n",
		pairedBounded[len(pairedBounded)/2], pairedBounded[0], pairedBounded[len(pairedBounded)-1])
	fmt.Printf("   call by call, the same wire on both sides: sheen with no attempt timeout/bare with the two headers median %.3f (min %.3f, max %.3f); goal <= 1.05\n",
		ownUnbounded[len(ownUnbounded)/2], ownUnbounded[0], ownUnbounded[len(ownUnbounded)-1])
	fmt.Printf("   call by call, the same wire and bound on both sides: sheen (default)/bare with the two headers and http.Client.Timeout median %.3f (min %.3f, max %.3f); goal <= 1.05\n",
		ownDefault[len(ownDefault)/2], ownDefault[0], ownDefault[len(ownDefault)-1])
}

// paired times a and b call by call, alternating which goes first, and
// returns b's total time over a's.
func paired(n int, a, b func()) float64 {
	for range 200 { // warm both up: connections, pools
		a()
		b()
	}
	var ta, tb time.Duration
	for i := range n {
		first, second, tFirst, tSecond := a, b, &ta, &tb
		if i%2 == 1 {
			first, second, tFirst, tSecond = b, a, &tb, &ta
		}
		t0 := time.Now()
		first()
		t1 := time.Now()
		second()
		*tFirst += t1.Sub(t0)
		*tSecond += time.Since(t1)
	}
	return float64(tb) / float64(ta)
}

// correlationID makes a UUIDv4 the way the SDK does (math/rand/v2, not
// uuid.NewString's crypto/rand, a system call here), so that the
// hand-written baselines pay what the SDK pays for it.
func correlationID() string {
	var u uuid.UUID
	binary.LittleEndian.PutUint64(u[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(u[8:], rand.Uint64())
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u.String()
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

// sdkCost measures Do (a client made with opts) and the hand-signed
// request over a transport that answers from memory, and reports the
// difference per call.
func sdkCost(opts ...sheen.Option) string {
	client, err := sheen.NewWorkerClient(append([]sheen.Option{sheen.WithBaseURL("https://worker.invalid"), sheen.WithSecret(secret),
		sheen.WithRateLimit(1_000_000_000), sheen.WithHTTPClient(&http.Client{Transport: cannedTransport{}})}, opts...)...)
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
