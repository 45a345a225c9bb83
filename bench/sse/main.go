// Command sse measures sheenhttp.NewBuildStream under load, against a
// throwaway PostgreSQL server (internal/pgtest) read through one pgevents
// Source with its NOTIFY trigger, on loopback:
//
//   - 1,000 browsers (SSE subscribers) watching one build;
//   - 100 builds with 10 browsers each.
//
// Each build gets 10 events, one every -interval, written by INSERTs into
// project_build_events whose title carries the wall time just before the
// INSERT. The browsers are a child process (this program re-run with
// -child), so the memory measured in this process is the server's alone.
// For each scenario it prints:
//
//   - memory per browser: heap and stacks in use with every browser
//     connected and waiting, minus before they connected, divided by their
//     number (after a GC), and goroutines per browser;
//   - delivery latency p50, p99 and max, from just before the INSERT to the
//     moment a browser has read the event off its stream;
//   - upstream queries per second while the events are written (every
//     statement the Source's pool sent, counted by a pgx tracer), and per
//     event delivered;
//   - that every browser got every event once, in order, and the end.
//
// The baseline, measured in the same run on the same scenarios, is the
// handler an application would write without BuildStream: one
// Builds.Follow per request, writing each event as it comes ("naive").
// A "bare" handler that only holds the connection open gives the floor of
// memory per browser (net/http's own per-connection cost), so the
// stream's own share is the difference. Ratios close the output.
//
// Run it with: go run ./bench/sse [-interval 100ms]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/pgtest"
	"github.com/sheenapps/sheen-go/pgevents"
	"github.com/sheenapps/sheen-go/sheenhttp"
)

// steps are the 10 events of every build: the last two end its metadata
// phase, which ends the streams.
var steps = []struct {
	typ, phase string
	progress   float64
	finished   bool
}{
	{"started", "development", 0.05, false},
	{"progress", "development", 0.20, false},
	{"progress", "development", 0.30, false},
	{"progress", "dependencies", 0.45, false},
	{"progress", "build", 0.60, false},
	{"progress", "build", 0.70, false},
	{"progress", "deploy", 0.85, false},
	{"completed", "deploy", 1, true},
	{"progress", "metadata", 0.60, false},
	{"completed", "metadata", 1, true},
}

type scenario struct {
	name             string
	builds, perBuild int
}

var scenarios = []scenario{
	{"1 build x 1,000 browsers", 1, 1000},
	{"100 builds x 10 browsers", 100, 10},
}

func main() {
	child := flag.Bool("child", false, "internal: run the browsers")
	base := flag.String("url", "", "internal: the server's URL")
	user := flag.String("user", "", "internal: the user id")
	builds := flag.String("builds", "", "internal: comma-separated build ids")
	per := flag.Int("per", 0, "internal: browsers per build")
	interval := flag.Duration("interval", 100*time.Millisecond, "time between two events of a build")
	rounds := flag.Int("rounds", 3, "runs of each configuration; the figures are their medians")
	flag.Parse()
	log.SetFlags(0)
	if *child {
		runBrowsers(*base, *user, strings.Split(*builds, ","), *per)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute) // bounded, whatever happens
	defer cancel()
	cluster, err := pgtest.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Stop()

	fmt.Printf("%d events per build, one every %s; PostgreSQL %s through one pgevents.Source with NOTIFY; %d CPUs; medians of %d rounds\n\n",
		len(steps), *interval, cluster.Version, runtime.NumCPU(), *rounds)
	fmt.Printf("%-26s %-7s %9s %11s %8s %9s %9s %9s %10s %9s  %s\n",
		"scenario", "handler", "browsers", "bytes/brws", "gor/brws", "p50", "p99", "max", "queries/s", "q/event", "delivery")
	// Each configuration runs -rounds times, interleaved, and each figure
	// is the median of its rounds: the machine is shared and noisy.
	runs := map[string]map[string][]result{}
	for round := range *rounds {
		for _, sc := range scenarios {
			if runs[sc.name] == nil {
				runs[sc.name] = map[string][]result{}
			}
			for _, handler := range []string{"stream", "naive", "bare"} {
				r, err := run(ctx, cluster, sc, handler, *interval, round)
				if err != nil {
					cluster.Stop()
					log.Fatalf("%s, %s: %v", sc.name, handler, err)
				}
				runs[sc.name][handler] = append(runs[sc.name][handler], r)
			}
		}
	}
	results := map[string]map[string]result{}
	for _, sc := range scenarios {
		results[sc.name] = map[string]result{}
		for _, handler := range []string{"stream", "naive", "bare"} {
			r := median(runs[sc.name][handler])
			results[sc.name][handler] = r
			if handler == "bare" {
				fmt.Printf("%-26s %-7s %9d %11.0f %8.2f  (memory only)\n", sc.name, handler, r.browsers, r.bytesPer, r.goroutinesPer)
				continue
			}
			fmt.Printf("%-26s %-7s %9d %11.0f %8.2f %9s %9s %9s %10.0f %9.2f  %s\n", sc.name, handler, r.browsers,
				r.bytesPer, r.goroutinesPer, ms(r.p50), ms(r.p99), ms(r.max), r.queriesPerSec, r.queriesPerEvent, r.delivery)
		}
	}
	fmt.Println("\nstream vs naive (one Builds.Follow per request), same run:")
	for _, sc := range scenarios {
		s, n, b := results[sc.name]["stream"], results[sc.name]["naive"], results[sc.name]["bare"]
		fmt.Printf("  %-26s memory/browser x%.2f, p50 x%.2f, p99 x%.2f, queries/s x%.3f\n", sc.name,
			s.bytesPer/n.bytesPer, float64(s.p50)/float64(n.p50), float64(s.p99)/float64(n.p99), s.queriesPerSec/n.queriesPerSec)
		fmt.Printf("  %-26s memory/browser over a bare held connection: stream %+.0f B (x%.2f), naive %+.0f B (x%.2f)\n", "",
			s.bytesPer-b.bytesPer, s.bytesPer/b.bytesPer, n.bytesPer-b.bytesPer, n.bytesPer/b.bytesPer)
	}
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + "ms" }

type result struct {
	browsers                       int
	bytesPer, goroutinesPer        float64
	p50, p99, max                  time.Duration
	queriesPerSec, queriesPerEvent float64
	delivery                       string
}

// median returns, figure by figure, the median of rs.
func median(rs []result) result {
	pick := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	m := rs[0]
	m.bytesPer = pick(func(r result) float64 { return r.bytesPer })
	m.goroutinesPer = pick(func(r result) float64 { return r.goroutinesPer })
	m.p50 = time.Duration(pick(func(r result) float64 { return float64(r.p50) }))
	m.p99 = time.Duration(pick(func(r result) float64 { return float64(r.p99) }))
	m.max = time.Duration(pick(func(r result) float64 { return float64(r.max) }))
	m.queriesPerSec = pick(func(r result) float64 { return r.queriesPerSec })
	m.queriesPerEvent = pick(func(r result) float64 { return r.queriesPerEvent })
	return m
}

// counter is a pgx tracer counting the statements sent.
type counter struct{ n atomic.Int64 }

func (c *counter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (c *counter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// run measures one scenario with one handler, on a database of its own.
func run(ctx context.Context, cluster *pgtest.Cluster, sc scenario, handler string, interval time.Duration, round int) (result, error) {
	name := fmt.Sprintf("bench_sse_%s_%d_%d", handler, sc.builds, round)
	if err := cluster.CreateDatabase(ctx, name); err != nil {
		return result{}, err
	}
	defer cluster.DropDatabase(context.WithoutCancel(ctx), name)
	admin, err := pgx.Connect(ctx, cluster.ConnString(name))
	if err != nil {
		return result{}, err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if _, err := admin.Exec(ctx, pgtest.BuildEventsDDL); err != nil {
		return result{}, err
	}
	if err := pgevents.InstallNotifyTrigger(ctx, admin); err != nil {
		return result{}, err
	}
	cfg, err := pgxpool.ParseConfig(cluster.ConnString(name))
	if err != nil {
		return result{}, err
	}
	queries := &counter{}
	cfg.ConnConfig.Tracer = queries
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return result{}, err
	}
	defer pool.Close()
	src := pgevents.New(pool)
	client, err := sheen.NewWorkerClient(sheen.WithSecret("bench-secret-0123456789abcdef0123456789"), sheen.WithBaseURL("https://worker.invalid"))
	if err != nil {
		return result{}, err
	}
	h, closeHandler, err := newHandler(handler, client, src)
	if err != nil {
		return result{}, err
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer closeHandler()

	user := uuid.NewString()
	builds := make([]string, sc.builds)
	for i := range builds {
		builds[i] = fmt.Sprintf("01JSSE%s%05d", strings.ToUpper(handler[:1]), i)
	}
	heap0, gor0 := memory()
	exe, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	cmd := exec.CommandContext(ctx, exe, "-child", "-url", srv.URL, "-user", user,
		"-builds", strings.Join(builds, ","), "-per", strconv.Itoa(sc.perBuild))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return result{}, err
	}
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "ready" {
		return result{}, fmt.Errorf("the browsers did not connect: %q", lines.Text())
	}
	browsers := sc.builds * sc.perBuild
	heap1, gor1 := memory()
	if handler == "bare" {
		return result{browsers: browsers, bytesPer: float64(heap1-heap0) / float64(browsers), goroutinesPer: float64(gor1-gor0) / float64(browsers)}, nil
	}

	q0, start := queries.n.Load(), time.Now()
	if err := writeEvents(ctx, admin, builds, user, interval); err != nil {
		return result{}, err
	}
	if !lines.Scan() {
		return result{}, fmt.Errorf("the browsers reported nothing: %v", lines.Err())
	}
	elapsed, q1 := time.Since(start), queries.n.Load()
	var sum summary
	if err := json.Unmarshal(lines.Bytes(), &sum); err != nil {
		return result{}, fmt.Errorf("the browsers' report %q: %v", lines.Text(), err)
	}
	if sum.Error != "" {
		return result{}, errors.New("browsers: " + sum.Error)
	}
	delivered := float64(browsers * len(steps))
	return result{
		browsers:        browsers,
		bytesPer:        float64(heap1-heap0) / float64(browsers),
		goroutinesPer:   float64(gor1-gor0) / float64(browsers),
		p50:             sum.P50,
		p99:             sum.P99,
		max:             sum.Max,
		queriesPerSec:   float64(q1-q0) / elapsed.Seconds(),
		queriesPerEvent: float64(q1-q0) / delivered,
		delivery:        fmt.Sprintf("%d/%d events, %d/%d ends, in order", sum.Messages, int(delivered), sum.Ends, browsers),
	}, nil
}

// newHandler returns the handler under test: the BuildStream, or the
// baseline that follows the build once per request.
func newHandler(kind string, client *sheen.WorkerClient, src sheen.EventSource) (http.Handler, func(), error) {
	authorize := func(r *http.Request) (string, error) { return r.Header.Get("X-User"), nil }
	if kind == "stream" {
		s, err := sheenhttp.NewBuildStream(client, sheenhttp.BuildStreamConfig{Authorize: authorize, Follow: &sheen.FollowOptions{Source: src}})
		if err != nil {
			return nil, nil, err
		}
		return s, s.Close, nil
	}
	if kind == "bare" {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("retry: 2000\n\n"))
			_ = http.NewResponseController(w).Flush()
			<-r.Context().Done()
		}), func() {}, nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("retry: 2000\n\n"))
		_ = rc.Flush()
		user, _ := authorize(r)
		for ev, err := range client.Builds.Follow(r.Context(), r.URL.Query().Get("buildId"), user, &sheen.FollowOptions{Source: src}) {
			if err != nil {
				return
			}
			data, _ := json.Marshal(map[string]any{"id": ev.ID, "title": ev.Title, "phase": ev.Phase, "progress": ev.Progress})
			fmt.Fprintf(w, "id: %d\ndata: %s\n\n", ev.ID, data)
			_ = rc.Flush()
		}
		_, _ = w.Write([]byte("event: end\ndata: {}\n\n"))
	}), func() {}, nil
}

// memory returns the heap and stacks in use, and the goroutines, after a
// GC.
func memory() (bytes uint64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse, runtime.NumGoroutine()
}

// writeEvents writes each step to every build, one step every interval,
// each row titled with the wall time just before its INSERT.
func writeEvents(ctx context.Context, db *pgx.Conn, builds []string, user string, interval time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i, st := range steps {
		for _, b := range builds {
			title := "t=" + strconv.FormatInt(time.Now().UnixNano(), 10)
			if _, err := db.Exec(ctx, `INSERT INTO project_build_events
				(build_id, event_type, user_id, event_phase, event_title, overall_progress, finished, preview_url)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
				b, st.typ, user, st.phase, title, st.progress, st.finished, previewURL(st.phase == "deploy" && st.finished)); err != nil {
				return err
			}
		}
		if i < len(steps)-1 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
		}
	}
	return nil
}

func previewURL(deployed bool) *string {
	if !deployed {
		return nil
	}
	u := "https://preview.invalid/p/"
	return &u
}

// summary is what the browsers report: delivery latencies, counts, and the
// first problem seen.
type summary struct {
	Messages int           `json:"messages"`
	Ends     int           `json:"ends"`
	P50      time.Duration `json:"p50"`
	P99      time.Duration `json:"p99"`
	Max      time.Duration `json:"max"`
	Error    string        `json:"error,omitempty"`
}

// runBrowsers is the child: it opens perBuild streams on each build, says
// "ready" once every one has started, reads them to their end and prints a
// summary as one JSON line.
func runBrowsers(base, user string, builds []string, perBuild int) {
	deadline := time.Now().Add(3 * time.Minute)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: 1, DisableCompression: true}}
	total := len(builds) * perBuild
	var ready, done sync.WaitGroup
	ready.Add(total)
	var mu sync.Mutex
	var latencies []time.Duration
	var sum summary
	fail := func(err error) {
		mu.Lock()
		if sum.Error == "" {
			sum.Error = err.Error()
		}
		mu.Unlock()
	}
	for _, b := range builds {
		for range perBuild {
			done.Go(func() {
				lat, ended, err := watch(ctx, hc, base, user, b, ready.Done)
				mu.Lock()
				latencies = append(latencies, lat...)
				sum.Messages += len(lat)
				if ended {
					sum.Ends++
				}
				mu.Unlock()
				if err != nil {
					fail(err)
				}
			})
		}
	}
	ready.Wait()
	fmt.Println("ready")
	done.Wait()
	slices.Sort(latencies)
	if n := len(latencies); n > 0 {
		sum.P50, sum.P99, sum.Max = latencies[n/2], latencies[n*99/100], latencies[n-1]
	}
	if sum.Error == "" && (sum.Messages != total*len(steps) || sum.Ends != total) {
		sum.Error = fmt.Sprintf("%d of %d events and %d of %d ends delivered", sum.Messages, total*len(steps), sum.Ends, total)
	}
	line, _ := json.Marshal(sum)
	fmt.Println(string(line))
}

// watch reads one stream to its end: the latency of each event, whether
// the end came, and the first problem (an event repeated or out of order,
// a broken stream).
func watch(ctx context.Context, hc *http.Client, base, user, build string, started func()) (lat []time.Duration, ended bool, err error) {
	once := sync.OnceFunc(started)
	defer once()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/?buildId="+build, nil)
	req.Header.Set("X-User", user)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, false, fmt.Errorf("build %s: status %d", build, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	var last int64
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "retry:"):
			once()
		case strings.HasPrefix(line, "id: "):
			id, _ := strconv.ParseInt(line[4:], 10, 64)
			if id <= last {
				return lat, false, fmt.Errorf("build %s: event %d after %d", build, id, last)
			}
			last = id
		case line == "event: end":
			return lat, true, nil
		case strings.HasPrefix(line, "data: "):
			_, after, ok := strings.Cut(line, `"title":"t=`)
			if !ok {
				continue
			}
			digits, _, _ := strings.Cut(after, `"`)
			ns, _ := strconv.ParseInt(digits, 10, 64)
			lat = append(lat, time.Since(time.Unix(0, ns)))
		}
	}
	if err := sc.Err(); err != nil {
		return lat, false, err
	}
	return lat, false, fmt.Errorf("build %s: the stream ended without its end", build)
}
