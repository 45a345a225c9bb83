// Command fleet measures fleet mode (package sheenredis) against the same
// fleet without Redis, in one run on one machine:
//
//  1. quota: 4 replica processes (this binary run again with -replica) x 16
//     goroutines send a bounded number of calls to one strict fixed-window
//     worker on loopback (limit requests per window, x-ratelimit-* headers
//     with millisecond resets, 429 past the limit): 429s the worker sent and
//     the share of its quota used, without Redis (each replica follows the
//     window alone) and with the shared limiter;
//  2. one link: 4 replicas x 250 concurrent VersionLink calls for one link:
//     how many times the worker was asked, without Redis and with the
//     shared cache;
//  3. latency: what Redis on loopback adds to one call, p50 and p99: a
//     worker call under the shared limiter against the local limiter, and a
//     cached balance from the shared cache against the local cache.
//
// It starts its own redis-server (internal/redistest, loopback TCP) and
// stops by itself. Run it with: go run ./bench/fleet
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/redistest"
	"github.com/sheenapps/sheen-go/sheenredis"
)

const secret = "bench-secret-0123456789abcdef0123456789"

// The fleet and its load.
const (
	replicaCount  = 4
	goroutines    = 16
	callsEach     = 10 // calls per goroutine in the quota scenario
	windowLimit   = 40
	window        = time.Second
	linkCallers   = 250 // concurrent link calls per replica
	latencyCalls  = 2000
	linkAnswerLag = 50 * time.Millisecond // the worker's time to answer a link
)

func main() {
	replica := flag.String("replica", "", "run as a replica: quota or link (used by the benchmark itself)")
	workerURL := flag.String("worker", "", "the worker's URL (replica)")
	redisAddr := flag.String("redis", "", "Redis host:port, empty for none (replica)")
	prefix := flag.String("prefix", "", "Redis key prefix (replica)")
	flag.Parse()
	log.SetFlags(0)
	if *replica != "" {
		if err := runReplica(*replica, *workerURL, *redisAddr, *prefix); err != nil {
			log.Fatalf("replica: %v", err)
		}
		return
	}
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx := context.Background()
	srv, err := redistest.Start(ctx, redistest.Options{TCP: true})
	if err != nil {
		return err
	}
	defer srv.Stop()
	fmt.Printf("fleet: %d replica processes; Redis %s on %s\n\n", replicaCount, redisVersion(srv), srv.Addr())

	fmt.Printf("1. quota: %d replicas x %d goroutines x %d calls, worker window %d per %s (strict, 429 past it)\n", replicaCount, goroutines, callsEach, windowLimit, window)
	fmt.Printf("   %-14s %8s %8s %10s %9s %8s\n", "", "calls ok", "failed", "429s sent", "quota use", "time")
	for i, redisOn := range []bool{false, true} {
		w := newWorker()
		res, err := fleet("quota", w, srv, redisOn, fmt.Sprintf("q%d", i))
		if err != nil {
			return err
		}
		fmt.Printf("   %-14s %8d %8d %10d %8.1f%% %8s\n", label(redisOn), res.OK, res.Failed, w.refused.Load(), 100*w.quotaUse(), res.Elapsed.Round(100*time.Millisecond))
	}

	fmt.Printf("\n2. one link: %d replicas x %d concurrent VersionLink calls\n", replicaCount, linkCallers)
	var base int32
	for i, redisOn := range []bool{false, true} {
		w := newWorker()
		res, err := fleet("link", w, srv, redisOn, fmt.Sprintf("l%d", i))
		if err != nil {
			return err
		}
		n := w.links.Load()
		ratio := ""
		if redisOn && n > 0 {
			ratio = fmt.Sprintf("  (%.2fx the calls without Redis)", float64(n)/float64(base))
		}
		base = cmpOr(base, n)
		fmt.Printf("   %-14s worker asked %d time(s); %d calls ok, %d failed%s\n", label(redisOn), n, res.OK, res.Failed, ratio)
	}

	fmt.Printf("\n3. latency per call, %d sequential calls each, Redis on loopback TCP\n", latencyCalls)
	return latency(srv)
}

func label(redisOn bool) string {
	if redisOn {
		return "with Redis"
	}
	return "without Redis"
}

func cmpOr(a, b int32) int32 {
	if a != 0 {
		return a
	}
	return b
}

func redisVersion(srv *redistest.Server) string {
	out, err := exec.Command(srv.Binary, "--version").Output()
	if err != nil {
		return "?"
	}
	for f := range strings.FieldsSeq(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return v
		}
	}
	return "?"
}

// result is what one replica (or the fleet) reports.
type result struct {
	OK, Failed int
	Elapsed    time.Duration
}

// fleet runs the scenario in replicaCount processes, started together.
func fleet(mode string, w *worker, srv *redistest.Server, redisOn bool, prefix string) (result, error) {
	hs := httptest.NewServer(w)
	defer hs.Close()
	self, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	addr := ""
	if redisOn {
		addr = srv.Addr()
	}
	type proc struct {
		cmd *exec.Cmd
		in  io.WriteCloser
		out *bufio.Reader
	}
	var procs []proc
	defer func() {
		for _, p := range procs {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	}()
	for range replicaCount {
		cmd := exec.Command(self, "-replica", mode, "-worker", hs.URL, "-redis", addr, "-prefix", prefix)
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return result{}, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return result{}, err
		}
		if err := cmd.Start(); err != nil {
			return result{}, err
		}
		p := proc{cmd, in, bufio.NewReader(out)}
		procs = append(procs, p)
		if line, err := p.out.ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
			return result{}, fmt.Errorf("replica did not get ready: %q %v", line, err)
		}
	}
	start := time.Now()
	for _, p := range procs {
		if _, err := io.WriteString(p.in, "go\n"); err != nil {
			return result{}, err
		}
	}
	var total result
	for _, p := range procs {
		line, err := p.out.ReadString('\n')
		if err != nil {
			return result{}, fmt.Errorf("replica's result: %w", err)
		}
		var r result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return result{}, fmt.Errorf("replica's result %q: %w", line, err)
		}
		total.OK += r.OK
		total.Failed += r.Failed
	}
	total.Elapsed = time.Since(start)
	return total, nil
}

// newClient makes one replica's client, in fleet mode when rdb is set.
func newClient(workerURL string, rdb *redis.Client, prefix string, extra ...sheen.Option) (*sheen.WorkerClient, error) {
	opts := []sheen.Option{sheen.WithBaseURL(workerURL), sheen.WithSecret(secret), sheen.WithRateLimit(600_000)}
	if rdb != nil {
		quiet := sheenredis.Options{Prefix: prefix, Logger: slog.New(slog.DiscardHandler)}
		lim, err := sheenredis.NewLimiter(rdb, sheenredis.LimiterOptions{Options: quiet, PerMinute: 600_000})
		if err != nil {
			return nil, err
		}
		cache, err := sheenredis.NewCache(rdb, secret, sheenredis.CacheOptions{Options: quiet})
		if err != nil {
			return nil, err
		}
		opts = append(opts, sheen.WithSharedLimiter(lim), sheen.WithCache(sheen.CacheConfig{Shared: cache}))
	}
	return sheen.NewWorkerClient(append(opts, extra...)...)
}

// runReplica is one replica process: ready, wait for go, run, report.
func runReplica(mode, workerURL, redisAddr, prefix string) error {
	var rdb *redis.Client
	if redisAddr != "" {
		rdb = redis.NewClient(&redis.Options{Addr: redisAddr, ContextTimeoutEnabled: true, PoolSize: 4 * goroutines})
		defer rdb.Close()
	}
	c, err := newClient(workerURL, rdb, prefix)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	ctx := context.Background()
	switch mode {
	case "quota":
		for range goroutines {
			wg.Go(func() {
				for range callsEach {
					if err := c.Do(ctx, http.MethodGet, "/v1/limited", nil, nil); err != nil {
						failed.Add(1)
					} else {
						ok.Add(1)
					}
				}
			})
		}
	case "link":
		for range linkCallers {
			wg.Go(func() {
				if _, err := c.Exports.VersionLink(ctx, "version-1", "user-1"); err != nil {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
			})
		}
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	wg.Wait()
	return json.NewEncoder(os.Stdout).Encode(result{OK: int(ok.Load()), Failed: int(failed.Load())})
}

// latency measures what Redis adds to one call, in this process.
func latency(srv *redistest.Server) error {
	w := newWorker()
	hs := httptest.NewServer(w)
	defer hs.Close()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	defer rdb.Close()
	local, err := newClient(hs.URL, nil, "")
	if err != nil {
		return err
	}
	shared, err := newClient(hs.URL, rdb, "lat")
	if err != nil {
		return err
	}
	ctx := context.Background()
	call := func(c *sheen.WorkerClient) func() error {
		return func() error { return c.Do(ctx, http.MethodGet, "/v1/free", nil, nil) }
	}
	balance := func(c *sheen.WorkerClient) func() error {
		return func() error { _, err := c.Billing.Balance(ctx, "user-1"); return err }
	}
	fmt.Printf("   %-42s %10s %10s\n", "", "p50", "p99")
	rows := []struct {
		name       string
		base, with func() error
	}{
		{"worker call, local limiter / shared limiter", call(local), call(shared)},
		{"cached balance, local cache / shared cache", balance(local), balance(shared)},
	}
	for _, r := range rows {
		b, s, err := percentiles(r.base, r.with)
		if err != nil {
			return err
		}
		fmt.Printf("   %-42s %10s %10s   (baseline)\n", r.name, b[0], b[1])
		fmt.Printf("   %-42s %10s %10s   (%.1fx, %.1fx; added %s, %s)\n", "  with Redis", s[0], s[1],
			ratio(s[0], b[0]), ratio(s[1], b[1]), s[0]-b[0], s[1]-b[1])
	}
	return nil
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(max(b, 1)) }

// percentiles times latencyCalls calls of base and of with, taken in turn
// so that both see the same machine (after a warm-up), and returns their
// p50 and p99.
func percentiles(base, with func() error) (b, w [2]time.Duration, err error) {
	for range 50 {
		if err := errors.Join(base(), with()); err != nil {
			return b, w, err
		}
	}
	bs, ws := make([]time.Duration, latencyCalls), make([]time.Duration, latencyCalls)
	for i := range latencyCalls {
		for _, m := range []struct {
			f func() error
			d *time.Duration
		}{{base, &bs[i]}, {with, &ws[i]}} {
			start := time.Now()
			if err := m.f(); err != nil {
				return b, w, err
			}
			*m.d = time.Since(start)
		}
	}
	pick := func(ds []time.Duration) [2]time.Duration {
		slices.Sort(ds)
		return [2]time.Duration{ds[len(ds)/2].Round(10 * time.Nanosecond), ds[len(ds)*99/100].Round(10 * time.Nanosecond)}
	}
	return pick(bs), pick(ws), nil
}

// worker is a strict fixed-window worker: /v1/limited allows windowLimit
// requests per window (aligned on the wall clock) and refuses the rest with
// 429; every answer carries x-ratelimit-* headers with a reset in seconds
// to the millisecond. Other routes are not limited and send no headers.
type worker struct {
	mu       sync.Mutex
	windows  map[int64]int // accepted requests per window
	first    int64
	started  bool
	refused  atomic.Int64
	links    atomic.Int32
	balances atomic.Int32
}

func newWorker() *worker { return &worker{windows: make(map[int64]int)} }

func (w *worker) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	rw.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path == "/v1/limited":
		w.limited(rw)
	case strings.HasPrefix(r.URL.Path, "/v1/versions/"):
		w.links.Add(1)
		time.Sleep(linkAnswerLag)
		expires := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
		fmt.Fprintf(rw, `{"success":true,"downloadUrl":"https://store.test/a.zip?X-Amz-Signature=abc","expiresAt":%q,"filename":"a.zip","size":1}`, expires)
	case strings.HasPrefix(r.URL.Path, "/v1/billing/balance/"):
		w.balances.Add(1)
		io.WriteString(rw, `{"version":"2025-09-01","plan":"free","subscriptionStatus":"inactive","totals":{"total_seconds":60,"paid_seconds":0,"bonus_seconds":60,"next_expiry_at":null},"buckets":[],"bonus":{"daily_minutes":15,"used_this_month_minutes":0,"monthly_cap_minutes":300},"catalog_version":"2025-09-01"}`)
	default:
		io.WriteString(rw, `{"ok":true}`)
	}
}

func (w *worker) limited(rw http.ResponseWriter) {
	now := time.Now()
	idx := now.UnixNano() / int64(window)
	end := time.Unix(0, (idx+1)*int64(window))
	w.mu.Lock()
	if !w.started {
		w.first, w.started = idx, true
	}
	n := w.windows[idx]
	allowed := n < windowLimit
	if allowed {
		n++
		w.windows[idx] = n
	}
	w.mu.Unlock()
	h := rw.Header()
	h.Set("X-Ratelimit-Limit", strconv.Itoa(windowLimit))
	h.Set("X-Ratelimit-Remaining", strconv.Itoa(windowLimit-n))
	left := strconv.FormatFloat(end.Sub(now).Seconds(), 'f', 3, 64)
	h.Set("X-Ratelimit-Reset", left)
	if !allowed {
		w.refused.Add(1)
		h.Set("Retry-After", left)
		rw.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(rw, `{"error":"Too many requests"}`)
		return
	}
	io.WriteString(rw, `{"ok":true}`)
}

// quotaUse is the share of the quota used in the full windows of the run:
// those after the first and before the last that saw requests.
func (w *worker) quotaUse() float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	last := w.first
	for idx := range w.windows {
		last = max(last, idx)
	}
	if last-w.first < 2 {
		return 0
	}
	used := 0
	for idx := w.first + 1; idx < last; idx++ {
		used += w.windows[idx]
	}
	return float64(used) / float64(windowLimit*int(last-w.first-1))
}
