// Command pgevents measures what following idle builds through
// pgevents costs: 10, 100 and 1,000 followers (Builds.Follow, each polling
// at the reference UI's pace, 1 s in the build phase) of builds where
// nothing happens, against a throwaway PostgreSQL server (internal/pgtest).
//
// For each number of followers it runs three sources, in the same run:
//
//   - naive: the baseline, a source that runs the build's query on every
//     poll (what pgevents did before it shared its looks at the table);
//   - poll: pgevents.New(pool, pgevents.WithoutNotifications());
//   - notify: pgevents.New(pool) with the NOTIFY trigger installed.
//
// and prints the statements per second the readers' pool sent (counted by a
// pgx tracer on every connection of the pool, the listening one included),
// and the CPU the Go process and the server's processes spent per second of
// wall time. (pg_stat_database's commit counts are no use here: idle
// backends report them up to 10 s late, so the setup's inserts land in the
// window.)
// Then it prints ratios: each source's cost at 1,000 followers against its
// cost at 10, and against the naive baseline.
//
// Run it with: go run ./bench/pgevents [-window 10s]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
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
)

func main() {
	window := flag.Duration("window", 10*time.Second, "how long each configuration is measured, after a warm-up")
	warmup := flag.Duration("warmup", 3*time.Second, "how long followers run before measuring")
	flag.Parse()
	log.SetFlags(0)
	// Interrupted, it still stops the server and removes its directory.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cluster, err := pgtest.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Stop()

	counts := []int{10, 100, 1000}
	modes := []string{"naive", "poll", "notify"}
	results := map[string]map[int]result{}
	fmt.Printf("idle followed builds, polling at 1 s; %s measured after %s of warm-up\n\n", *window, *warmup)
	fmt.Printf("%-7s %9s %12s %14s %16s\n", "source", "followers", "queries/s", "Go CPU ms/s", "server CPU ms/s")
	for _, n := range counts {
		for _, mode := range modes {
			r, err := measure(ctx, cluster, mode, n, *warmup, *window)
			if ctx.Err() != nil {
				cluster.Stop()
				log.Fatal("interrupted")
			}
			if err != nil {
				cluster.Stop()
				log.Fatalf("%s, %d followers: %v", mode, n, err)
			}
			if results[mode] == nil {
				results[mode] = map[int]result{}
			}
			results[mode][n] = r
			fmt.Printf("%-7s %9d %12.1f %14.1f %16s\n", mode, n, r.queries, r.goCPU, r.serverCPUText())
		}
	}
	fmt.Println()
	lo, hi := counts[0], counts[len(counts)-1]
	for _, mode := range modes {
		a, b := results[mode][hi], results[mode][lo]
		fmt.Printf("%-7s %d vs %d followers: queries/s %.1f vs %.1f (%s), Go CPU x%.2f\n", mode, hi, lo,
			a.queries, b.queries, ratioText(a.queries, b.queries), ratio(a.goCPU, b.goCPU))
	}
	for _, mode := range modes[1:] {
		fmt.Printf("%-7s vs naive at %d followers: queries/s x%.4f, Go CPU x%.2f\n", mode, hi,
			ratio(results[mode][hi].queries, results["naive"][hi].queries), ratio(results[mode][hi].goCPU, results["naive"][hi].goCPU))
	}
}

func ratioText(a, b float64) string {
	if b == 0 {
		return "no queries at the baseline"
	}
	return fmt.Sprintf("x%.2f", a/b)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

type result struct {
	queries, goCPU, serverCPU float64 // per second of wall time
}

func (r result) serverCPUText() string {
	if r.serverCPU < 0 {
		return "n/a"
	}
	return strconv.FormatFloat(r.serverCPU, 'f', 1, 64)
}

// counter is a pgx tracer counting the statements sent.
type counter struct{ n atomic.Int64 }

func (c *counter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (c *counter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// measure follows n idle builds through the mode's source for window.
func measure(ctx context.Context, cluster *pgtest.Cluster, mode string, n int, warmup, window time.Duration) (result, error) {
	name := fmt.Sprintf("bench_%s_%d", mode, n)
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
	if mode == "notify" {
		if err := pgevents.InstallNotifyTrigger(ctx, admin); err != nil {
			return result{}, err
		}
	}
	user := uuid.NewString()
	builds := make([]string, n)
	for i := range builds {
		builds[i] = fmt.Sprintf("01JBENCH%05d", i)
		if _, err := admin.Exec(ctx, `INSERT INTO project_build_events (build_id, event_type, user_id, event_phase, event_title, overall_progress)
			VALUES ($1, 'progress', $2, 'build', 'Building', 0.5)`, builds[i], user); err != nil {
			return result{}, err
		}
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
	var src sheen.EventSource
	switch mode {
	case "naive":
		src = naiveSource{pool}
	case "poll":
		src = pgevents.New(pool, pgevents.WithoutNotifications())
	default:
		src = pgevents.New(pool)
	}
	client, err := sheen.NewWorkerClient(sheen.WithSecret("bench-secret-0123456789abcdef0123456789"), sheen.WithBaseURL("https://worker.invalid"))
	if err != nil {
		return result{}, err
	}

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var read atomic.Int64
	errs := make(chan error, n)
	for _, b := range builds {
		wg.Go(func() {
			for _, err := range client.Builds.Follow(runCtx, b, user, &sheen.FollowOptions{Source: src}) {
				if err != nil {
					if runCtx.Err() == nil {
						errs <- err
					}
					return
				}
				read.Add(1)
			}
		})
	}
	defer func() { stop(); wg.Wait() }()
	if sleep(ctx, warmup) != nil {
		return result{}, ctx.Err()
	}
	if got := read.Load(); got != int64(n) {
		return result{}, fmt.Errorf("after the warm-up, %d of %d followers had read their build's event", got, n)
	}

	q0, go0, srv0, start := queries.n.Load(), processCPU(), serverCPU(cluster.PID()), time.Now()
	if sleep(ctx, window) != nil {
		return result{}, ctx.Err()
	}
	q1, go1, srv1, elapsed := queries.n.Load(), processCPU(), serverCPU(cluster.PID()), time.Since(start)
	select {
	case err := <-errs:
		return result{}, err
	default:
	}
	secs := elapsed.Seconds()
	r := result{
		queries:   float64(q1-q0) / secs,
		goCPU:     float64(go1-go0) / float64(time.Millisecond) / secs,
		serverCPU: -1,
	}
	if srv0 >= 0 && srv1 >= 0 {
		r.serverCPU = float64(srv1-srv0) / float64(time.Millisecond) / secs
	}
	return r, nil
}

// naiveSource is the baseline: the build's query on every fetch.
type naiveSource struct{ pool *pgxpool.Pool }

func (s naiveSource) FetchEvents(ctx context.Context, buildID, userID string, after int64) ([]sheen.BuildEvent, bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, build_id, event_type, event_phase, event_title, overall_progress::float8, finished, created_at
		  FROM project_build_events
		 WHERE build_id = $1 AND user_id = $2 AND user_visible AND id > $3
		 ORDER BY id LIMIT 500`, buildID, userID, after)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	var events []sheen.BuildEvent
	for rows.Next() {
		var r sheen.EventRow
		var phase, title *string
		var progress *float64
		var finished *bool
		if err := rows.Scan(&r.ID, &r.BuildID, &r.EventType, &phase, &title, &progress, &finished, &r.CreatedAt); err != nil {
			return nil, false, err
		}
		if phase != nil {
			r.EventPhase = *phase
		}
		if title != nil {
			r.EventTitle = *title
		}
		r.OverallProgress, r.Finished = progress, finished != nil && *finished
		events = append(events, r.Event())
	}
	return events, len(events) >= 500, rows.Err()
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverCPU is the CPU time the server's processes (the postmaster and
// its children, the backends) have used, from /proc; -1 where there is no
// /proc. Backends that ended in between are not counted.
func serverCPU(pid int) time.Duration {
	if pid == 0 {
		return -1
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return -1
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	var ticks int64
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime(14) stime(15)
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if p != pid && ppid != pid {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += ut + st
	}
	return time.Duration(ticks) * time.Second / ticksPerSecond
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
