package sheenhttp

import (
	"bytes"
	"cmp"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/signing"
)

// BenchmarkProxy measures the proxy's throughput against baselines from
// the same run: httputil.ReverseProxy whose transport signs each request
// the same way (the client's own signer, SigningDual: timestamp, nonce, v1
// and v2 signatures) and that asks the same Authorize first, as it comes
// (reverseproxy, which allocates a 32 KiB buffer per request) and with a
// pooled BufferPool (pooledproxy). All stand between the same kind of
// loopback front server and one loopback worker, and are driven by 8
// concurrent browsers; the sides run in turn, eleven rounds (the order
// rotated every round, so a machine that slows down or speeds up favours
// none), and the medians are reported. Its ns/op means nothing and shows
// as 0.
//
//   - small: a GET answered with a 150-byte JSON body with Content-Length,
//     the proxy's usual answer.
//   - 1MiB: a GET answered with 1 MiB of JSON with Content-Length.
//   - chunked: a GET answered with 256 KiB of JSON written in 8 KiB pieces
//     without Content-Length, which all flush as they arrive.
//
// proxy/reverseproxy-x is the proxy's throughput over the baseline's: the
// median over the rounds of the baseline's wall time per request divided by
// the proxy's (issue #13 wants >= 0.95). cpu-proxy/reverseproxy-x is the
// same for the process's CPU time per request (user and system), which a
// busy shared machine disturbs less: what a saturated server's throughput
// follows. The same pairs for pooledproxy. *-us are wall microseconds per
// request and *-allocs allocations per request, of the whole process
// (browser, front, proxy and worker).
//
// Run it with: go test -run '^$' -bench Proxy ./sheenhttp
func BenchmarkProxy(b *testing.B) {
	small := []byte(`{"balance":{"welcomeBonus":3000,"dailyGift":900,"paid":0,"total":3900},"usage":{"todayUsed":0,"lifetimeUsed":120},"plan":"free","ok":true}`)
	big := bytes.Repeat([]byte(`{"a":"0123456789abcdef"},`), (1<<20)/25)
	for _, tc := range []struct {
		name    string
		body    []byte
		chunked bool
	}{
		{"small", small, false},
		{"1MiB", big, false},
		{"chunked", big[:256<<10], true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			rig := newProxyBenchRig(b, tc.body, tc.chunked)
			defer rig.close()
			res := rig.compare(b)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(res[0].cost.ns/1e3, "proxy-us")
			b.ReportMetric(res[0].cost.allocs, "proxy-allocs")
			for _, r := range res[1:] {
				b.ReportMetric(r.cost.ns/1e3, r.name+"-us")
				b.ReportMetric(r.cost.allocs, r.name+"-allocs")
				b.ReportMetric(r.ratio, "proxy/"+r.name+"-x")
				b.ReportMetric(r.cpuRatio, "cpu-proxy/"+r.name+"-x")
			}
		})
	}
}

type proxyBenchRig struct {
	worker     *httptest.Server
	sides      []benchSide // the proxy first, then the baselines
	browser    *http.Client
	transports []*http.Transport
	want       int
}

type benchSide struct {
	name  string
	front *httptest.Server
}

const benchProxySecret = "bench-proxy-secret-0123456789abcdef0123"

func newProxyBenchRig(b *testing.B, body []byte, chunked bool) *proxyBenchRig {
	b.Helper()
	rig := &proxyBenchRig{want: len(body)}
	rig.worker = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		if !chunked {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			_, _ = w.Write(body)
			return
		}
		for rest := body; len(rest) > 0; {
			n := min(len(rest), 8<<10)
			_, _ = w.Write(rest[:n])
			rest = rest[n:]
			http.NewResponseController(w).Flush()
		}
	}))
	newTransport := func() *http.Transport {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		rig.transports = append(rig.transports, t)
		return t
	}
	authorize := func(r *http.Request) (string, error) { return pxBenchUser, nil }

	client, err := sheen.NewWorkerClient(sheen.WithBaseURL(rig.worker.URL), sheen.WithSecret(benchProxySecret), sheen.WithSigning(sheen.SigningDual),
		sheen.WithRateLimit(1_000_000_000), sheen.WithRetry(sheen.RetryConfig{MaxAttempts: 1, MaxWait: time.Second}), sheen.WithHTTPClient(&http.Client{Transport: newTransport()}))
	if err != nil {
		b.Fatal(err)
	}
	h, err := NewProxy(client, ProxyConfig{Authorize: authorize})
	if err != nil {
		b.Fatal(err)
	}
	rig.sides = append(rig.sides, benchSide{"proxy", httptest.NewServer(h)})

	target, _ := url.Parse(rig.worker.URL)
	s := signing.NewKey([]byte(benchProxySecret))
	for _, name := range []string{"reverseproxy", "pooledproxy"} {
		rp := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.Out.Header.Del("Cookie")
			},
			Transport: signingRoundTripper{base: newTransport(), key: s},
		}
		if name == "pooledproxy" {
			rp.BufferPool = benchBufferPool{}
		}
		rig.sides = append(rig.sides, benchSide{name, httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := authorize(r); err != nil {
				http.Error(w, "sign in", http.StatusUnauthorized)
				return
			}
			rp.ServeHTTP(w, r)
		}))})
	}
	rig.browser = &http.Client{Transport: newTransport()}
	return rig
}

// benchBufferPool is the BufferPool of the pooled baseline.
type benchBufferPool struct{}

var benchBuffers = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (benchBufferPool) Get() []byte { return benchBuffers.Get().(*[32 << 10]byte)[:] }

func (benchBufferPool) Put(b []byte) {
	if len(b) == 32<<10 {
		benchBuffers.Put((*[32 << 10]byte)(b))
	}
}

const pxBenchUser = "a11ce000-0000-4000-8000-000000000001"

// signingRoundTripper signs a request as the client's transport does under
// SigningDual (a fresh timestamp and nonce, the v1 and v2 signatures over
// the worker's payload, with internal/signing as the client's signer), and
// nothing else.
type signingRoundTripper struct {
	base http.RoundTripper
	key  *signing.Key
}

func (t signingRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	nonce, err := signing.NewNonce()
	if err != nil {
		return nil, err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	target := r.URL.RequestURI()
	payload := signing.Payload(r.Method, r.Header.Get("Content-Type"), body)
	r.Header.Set(sheen.HeaderTimestamp, ts)
	r.Header.Set(sheen.HeaderNonce, nonce)
	r.Header.Set(sheen.HeaderSignature, signing.SignTimestamp(t.key, ts, payload))
	r.Header.Set(sheen.HeaderSignatureV2, signing.SignV2(t.key, r.Method, target, ts, nonce, payload))
	return t.base.RoundTrip(r)
}

func (rig *proxyBenchRig) close() {
	for _, s := range rig.sides {
		s.front.Close()
	}
	rig.worker.Close()
	for _, t := range rig.transports {
		t.CloseIdleConnections()
	}
}

// sideResult is one side's median cost and, for a baseline, the medians
// of the rounds' ratios to the proxy.
type sideResult struct {
	name            string
	cost            proxyCost
	ratio, cpuRatio float64
}

// compare measures the sides in turn, eleven rounds (the order rotated
// every round), and returns each side's median cost and each baseline's
// median ratio (its time over the proxy's): on a shared machine the ratio
// of runs made side by side is steadier than the ratio of two medians.
func (rig *proxyBenchRig) compare(b *testing.B) []sideResult {
	b.Helper()
	n := len(rig.sides)
	costs := make([][]proxyCost, n)
	ratios, cpuRatios := make([][]float64, n), make([][]float64, n)
	for round := range 11 {
		got := make([]proxyCost, n)
		for k := range n {
			i := (round + k) % n
			got[i] = rig.measure(b, rig.sides[i].front.URL)
		}
		for i := range n {
			costs[i] = append(costs[i], got[i])
			ratios[i] = append(ratios[i], got[i].ns/got[0].ns)
			cpuRatios[i] = append(cpuRatios[i], got[i].cpuNs/got[0].cpuNs)
		}
	}
	res := make([]sideResult, n)
	for i, s := range rig.sides {
		res[i] = sideResult{name: s.name, cost: medianProxyCost(costs[i]), ratio: medianFloat(ratios[i]), cpuRatio: medianFloat(cpuRatios[i])}
	}
	return res
}

func medianFloat(fs []float64) float64 {
	slices.Sort(fs)
	return fs[len(fs)/2]
}

type proxyCost struct{ ns, cpuNs, allocs float64 }

func medianProxyCost(cs []proxyCost) proxyCost {
	slices.SortFunc(cs, func(a, b proxyCost) int { return cmp.Compare(a.ns, b.ns) })
	return cs[len(cs)/2]
}

// measure sends batches of growing size from 8 concurrent browsers until
// one batch takes 100ms, and returns its cost per request.
func (rig *proxyBenchRig) measure(b *testing.B, front string) proxyCost {
	b.Helper()
	const browsers = 8
	target := front + "/v1/billing/balance/" + pxBenchUser
	rig.get(b, target) // warm the connections
	for n := browsers; ; n *= 2 {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var left atomic.Int64
		left.Store(int64(n))
		var wg sync.WaitGroup
		start, cpu := time.Now(), processCPU()
		for range browsers {
			wg.Go(func() {
				for left.Add(-1) >= 0 {
					rig.get(b, target)
				}
			})
		}
		wg.Wait()
		d, used := time.Since(start), processCPU()-cpu
		runtime.ReadMemStats(&after)
		if d >= 100*time.Millisecond {
			return proxyCost{float64(d.Nanoseconds()) / float64(n), float64(used.Nanoseconds()) / float64(n), float64(after.Mallocs-before.Mallocs) / float64(n)}
		}
	}
}

func (rig *proxyBenchRig) get(b *testing.B, target string) {
	resp, err := rig.browser.Get(target)
	if err != nil {
		b.Error(err)
		return
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || int(n) != rig.want {
		b.Errorf("status %d, %d bytes of %d, %v", resp.StatusCode, n, rig.want, err)
	}
}
