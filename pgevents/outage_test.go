package pgevents

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/pgtest"
)

// ownCluster starts a server for tests that stop and start it, so the
// shared one stays up for everyone else.
func ownCluster(t *testing.T) *pgtest.Cluster {
	t.Helper()
	if _, err := pgtest.FindBinaries(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgtest.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	return c
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}

// countingSource counts the fetches of a Source (and still notifies).
type countingSource struct {
	*Source
	fetches atomic.Int64
}

func (c *countingSource) FetchEvents(ctx context.Context, buildID, userID string, after int64) ([]sheen.BuildEvent, bool, error) {
	c.fetches.Add(1)
	return c.Source.FetchEvents(ctx, buildID, userID, after)
}

// recorder collects the ids a reader delivers.
type recorder struct {
	mu  sync.Mutex
	ids []int64
}

func (r *recorder) add(e sheen.BuildEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, e.ID)
}

func (r *recorder) get() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int64(nil), r.ids...)
}

// waitAsync runs Wait for build in the background.
func waitAsync(ctx context.Context, t testing.TB, src sheen.EventSource, build, user string, rec *recorder, opts ...sheen.CallOption) <-chan error {
	done := make(chan error, 1)
	client := newClient(t)
	go func() {
		_, err := client.Builds.Wait(ctx, build, user, &sheen.FollowOptions{
			Source:       src,
			MetadataWait: -1,
			PollInterval: func(sheen.Phase) time.Duration { return 20 * time.Millisecond },
			OnEvent:      rec.add,
		}, opts...)
		done <- err
	}()
	return done
}

func progressRow(build, user string, i int) row {
	return row{build: build, user: user, typ: "progress", phase: "build", title: fmt.Sprint(i)}
}

func completedRow(build, user string) row {
	return row{build: build, user: user, typ: "completed", phase: "deploy", finished: true, preview: "https://p.example/" + build}
}

// TestOutages stops and crashes the database under a reader. The outage
// lasts 5 s (PGEVENTS_OUTAGE=65s runs it past a minute): longer than the
// 4 s the Source used to give up after, and long enough for the retries'
// backoff to reach its 1 s cap, so a longer outage runs the same code, up
// to WithOutageTolerance (5 minutes by default).
func TestOutages(t *testing.T) {
	cluster := ownCluster(t)
	outage := 5 * time.Second
	if v := os.Getenv("PGEVENTS_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		outage = d
	}
	for _, mode := range []struct {
		name string
		halt func(context.Context) error
	}{
		{"fast shutdown", cluster.StopServer},
		{"crash", cluster.CrashServer},
	} {
		t.Run(mode.name, func(t *testing.T) {
			db := newTestDBOn(t, cluster, true)
			src := New(db.reader, WithLogger(testLogger(t)))
			user, build := uuid.NewString(), "01JOUTAGE"
			ctx, cancel := context.WithTimeout(context.Background(), outage+2*time.Minute)
			defer cancel()
			rec := &recorder{}
			done := waitAsync(ctx, t, src, build, user, rec)
			var written []int64
			for i := range 20 {
				written = append(written, db.mustInsert(t, progressRow(build, user, i)))
			}
			waitFor(t, ctx, "the first events", func() bool { return len(rec.get()) == len(written) })

			// A transaction open when the server goes down loses its id:
			// a gap the reader must pass.
			tx, err := db.writer.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO project_build_events (build_id, event_type, user_id) VALUES ($1, 'progress', $2)`, build, user); err != nil {
				t.Fatal(err)
			}
			if err := mode.halt(ctx); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cluster.StartServer(context.Background()) }()
			time.Sleep(outage)
			select {
			case err := <-done:
				t.Fatalf("Wait ended during a %s outage: %v", outage, err)
			default:
			}
			if err := cluster.StartServer(ctx); err != nil {
				t.Fatal(err)
			}
			_ = tx.Rollback(ctx)
			db.writer.Reset() // the worker's own connections died too
			for i := range 20 {
				written = append(written, db.mustInsert(t, progressRow(build, user, 20+i)))
			}
			written = append(written, db.mustInsert(t, completedRow(build, user)))
			if err := <-done; err != nil {
				t.Fatalf("Wait failed across the outage: %v", err)
			}
			if diff := cmp.Diff(written, rec.get()); diff != "" {
				t.Errorf("events (-written +read): every event once, in order, across the outage:\n%s", diff)
			}
		})
	}

	t.Run("feed", func(t *testing.T) {
		// A feed keeps running across a crash and restart: builds that
		// finish after it are handled, each once.
		db := newTestDBOn(t, cluster, true)
		ctx, cancel := context.WithTimeout(context.Background(), outage+2*time.Minute)
		defer cancel()
		if err := InstallFeed(ctx, db.writer); err != nil {
			t.Fatal(err)
		}
		user := uuid.NewString()
		h := &handled{}
		r := newReplica(t, db, "outage", "r", FeedMetadataWait(0, 0), FeedLease(2*time.Second))
		if err := r.feed.OnFinished(func(_ context.Context, c Completion) error {
			h.add("r", c)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		r.run(t)
		db.finishBuild(t, "01JBEFORECRASH", user, false)
		waitFor(t, ctx, "the first build", func() bool { return h.builds() == 1 })
		if err := cluster.CrashServer(ctx); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cluster.StartServer(context.Background()) }()
		time.Sleep(outage)
		if err := cluster.StartServer(ctx); err != nil {
			t.Fatal(err)
		}
		db.writer.Reset()
		db.admin.Reset()
		db.finishBuild(t, "01JAFTERCRASH", user, true)
		waitFor(t, ctx, "the build after the crash", func() bool { return h.builds() == 2 })
		r.stop(t)
		// The build handled just before the crash may not have had its
		// handling recorded when the database went away: then its lease
		// runs out and it is handled again, at least once as documented,
		// with the same idempotency key so its side effect happens once.
		before := h.of("01JBEFORECRASH")
		if len(before) < 1 || len(before) > 2 {
			t.Errorf("01JBEFORECRASH handled %d times, want once (or twice when the crash beat its record)", len(before))
		}
		for _, r := range before[1:] {
			if r.c.Key != before[0].c.Key {
				t.Errorf("a repeated handling got key %q, the first %q", r.c.Key, before[0].c.Key)
			}
		}
		if n := len(h.of("01JAFTERCRASH")); n != 1 {
			t.Errorf("01JAFTERCRASH handled %d times, want once", n)
		}
	})

	t.Run("tolerance", func(t *testing.T) {
		db := newTestDBOn(t, cluster, false)
		src := New(db.reader, WithOutageTolerance(500*time.Millisecond))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		user := uuid.NewString()
		if _, _, err := src.FetchEvents(ctx, "B1", user, 0); err != nil {
			t.Fatal(err)
		}
		if err := cluster.StopServer(ctx); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cluster.StartServer(context.Background()) }()
		_, _, err := src.FetchEvents(ctx, "B1", user, 0)
		if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("fetch with the server down: %v, want an error saying the database was unreachable", err)
		}
		t.Log(err)
	})
}

func TestZeroValueSourceReturnsErrors(t *testing.T) {
	ctx := context.Background()
	for name, src := range map[string]*Source{"zero": {}, "nil": nil, "nil pool": New(nil)} {
		if _, _, err := src.FetchEvents(ctx, "B1", uuid.NewString(), 0); err == nil {
			t.Errorf("%s Source: FetchEvents succeeded", name)
		}
		ch, stop := src.Subscribe(ctx, "B1")
		if ch != nil {
			t.Errorf("%s Source: Subscribe gave a channel", name)
		}
		stop()
		if src.Listening() {
			t.Errorf("%s Source: Listening", name)
		}
		_, err := newClient(t).Builds.Wait(ctx, "B1", uuid.NewString(), &sheen.FollowOptions{Source: src})
		if err == nil || !strings.Contains(err.Error(), "pgevents.New") {
			t.Errorf("%s Source: Wait returned %v, want an error saying how to make a Source", name, err)
		}
	}
}

// insertIn inserts an event row in tx and returns its id.
func insertIn(ctx context.Context, tx pgx.Tx, r row) (int64, error) {
	var id int64
	err := tx.QueryRow(ctx, `INSERT INTO project_build_events (build_id, event_type, user_id, event_phase, event_title)
		VALUES ($1, $2, $3, $4, $5) RETURNING id`, r.build, r.typ, r.user, r.phase, r.title).Scan(&id)
	return id, err
}

func TestOutOfOrderCommits(t *testing.T) {
	t.Run("late commit", func(t *testing.T) {
		db := newTestDB(t, true)
		src := &countingSource{Source: New(db.reader)}
		src.gapWait = 100 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		user, build := uuid.NewString(), "01JLATE"
		tx, err := db.writer.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(context.Background()) }()
		late, err := insertIn(ctx, tx, progressRow(build, user, 1))
		if err != nil {
			t.Fatal(err)
		}
		early := db.mustInsert(t, progressRow(build, user, 2)) // a larger id, committed first
		rec := &recorder{}
		done := waitAsync(ctx, t, src, build, user, rec)
		waitFor(t, ctx, "a few fetches", func() bool { return src.fetches.Load() >= 4 })
		if got := rec.get(); len(got) != 0 {
			t.Fatalf("delivered %v while id %d was uncommitted: a cursor past it would never see it", got, late)
		}
		// A reader of its own is told rows wait behind the gap.
		if events, more, err := src.FetchEvents(ctx, build, user, 0); err != nil || len(events) != 0 || !more {
			t.Errorf("FetchEvents behind the gap: %d events, more %v, err %v; want none, more, no error", len(events), more, err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		last := db.mustInsert(t, completedRow(build, user))
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]int64{late, early, last}, rec.get()); diff != "" {
			t.Errorf("events (-want +read):\n%s", diff)
		}
	})

	t.Run("rolled back", func(t *testing.T) {
		// With an hour of grace, the reader passes the gap only because no
		// transaction that could fill it is left.
		db := newTestDB(t, true)
		src := New(db.reader, WithGapGrace(time.Hour))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		user, build := uuid.NewString(), "01JROLLBACK"
		rec := &recorder{}
		done := waitAsync(ctx, t, src, build, user, rec)
		want := []int64{db.mustInsert(t, progressRow(build, user, 1))}
		waitFor(t, ctx, "the first event", func() bool { return len(rec.get()) == 1 })
		tx, err := db.writer.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := insertIn(ctx, tx, progressRow(build, user, 2)); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		want = append(want, db.mustInsert(t, progressRow(build, user, 3)), db.mustInsert(t, completedRow(build, user)))
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, rec.get()); diff != "" {
			t.Errorf("events (-want +read):\n%s", diff)
		}
	})

	t.Run("grace", func(t *testing.T) {
		// A write transaction elsewhere stays open, so the gap could still
		// fill as far as Postgres can tell: the grace period passes it.
		db := newTestDB(t, true)
		src := New(db.reader, WithGapGrace(time.Second))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := db.writer.Exec(ctx, `CREATE TABLE elsewhere (x int)`); err != nil {
			t.Fatal(err)
		}
		other, err := db.writer.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = other.Rollback(context.Background()) }()
		if _, err := other.Exec(ctx, `INSERT INTO elsewhere VALUES (1)`); err != nil {
			t.Fatal(err)
		}
		user, build := uuid.NewString(), "01JGRACE"
		tx, err := db.writer.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := insertIn(ctx, tx, progressRow(build, user, 1)); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		rec := &recorder{}
		want := []int64{db.mustInsert(t, progressRow(build, user, 2)), db.mustInsert(t, completedRow(build, user))}
		if err := <-waitAsync(ctx, t, src, build, user, rec); err != nil {
			t.Fatalf("Wait with a write transaction open elsewhere: %v", err)
		}
		if diff := cmp.Diff(want, rec.get()); diff != "" {
			t.Errorf("events (-want +read):\n%s", diff)
		}
	})
}

// Writers insert each event in a transaction of its own that sleeps before
// committing, and some roll back: commits come out of id order all the
// time. Every reader still gets every committed event of its build once, in
// order.
func TestConcurrentTransactionsCommittingOutOfOrder(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts []Option
	}{
		{"notifications", nil},
		{"polling", []Option{WithoutNotifications()}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			db := newTestDB(t, true)
			src := New(db.reader, mode.opts...)
			const builds, perBuild = 8, 60
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			user := uuid.NewString()
			var (
				commitMu    sync.Mutex
				commitOrder []int64
			)
			written := make([][]int64, builds)
			recs := make([]*recorder, builds)
			dones := make([]<-chan error, builds)
			for b := range builds {
				recs[b] = &recorder{}
				dones[b] = waitAsync(ctx, t, src, fmt.Sprintf("01JOOO%02d", b), user, recs[b])
			}
			var wg sync.WaitGroup
			var werr atomic.Value
			for b := range builds {
				// Two writers per build: the build's own events commit out of
				// id order, the case a cursor would lose events in.
				for w := range 2 {
					wg.Go(func() {
						build := fmt.Sprintf("01JOOO%02d", b)
						for i := range perBuild / 2 {
							rollback := i%9 == 4
							err := pgx.BeginFunc(ctx, db.writer, func(tx pgx.Tx) error {
								id, err := insertIn(ctx, tx, progressRow(build, user, 2*i+w))
								if err != nil {
									return err
								}
								time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
								if rollback {
									return errRollback
								}
								commitMu.Lock()
								defer commitMu.Unlock()
								written[b] = append(written[b], id)
								commitOrder = append(commitOrder, id)
								return nil
							})
							if err != nil && !errors.Is(err, errRollback) {
								werr.Store(err)
								cancel()
								return
							}
						}
					})
				}
			}
			wg.Wait()
			if err, _ := werr.Load().(error); err != nil {
				t.Fatal(err)
			}
			for b := range builds {
				slices.Sort(written[b])
				written[b] = append(written[b], db.mustInsert(t, completedRow(fmt.Sprintf("01JOOO%02d", b), user)))
			}
			outOfOrder := 0
			for i := 1; i < len(commitOrder); i++ {
				if commitOrder[i] < commitOrder[i-1] {
					outOfOrder++
				}
			}
			if outOfOrder == 0 {
				t.Fatal("every commit came in id order; the test proved nothing")
			}
			t.Logf("%d of %d commits came after a larger id's", outOfOrder, len(commitOrder))
			for b := range builds {
				if err := <-dones[b]; err != nil {
					t.Fatalf("build %d: %v", b, err)
				}
				if diff := cmp.Diff(written[b], recs[b].get()); diff != "" {
					t.Errorf("build %d: events (-committed +read):\n%s", b, diff)
				}
			}
		})
	}
}

var errRollback = errors.New("roll back")
