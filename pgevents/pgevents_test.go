package pgevents

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Main(m))
}

// readerApp names the readers' connections, so tests can find and kill
// them.
const readerApp = "sheen-reader"

type testDB struct {
	writer *pgxpool.Pool // the worker's side
	reader *pgxpool.Pool // the SDK's side
	admin  *pgxpool.Pool // for killing connections

	readerQueries *queryCounter // statements the reader's pool sent
	connString    string
}

// queryCounter is a pgx tracer counting the statements sent.
type queryCounter struct{ n atomic.Int64 }

func (c *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (c *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// newTestDB makes a database of its own with the table, and pools on it.
func newTestDB(t testing.TB, trigger bool) *testDB {
	t.Helper()
	return newTestDBOn(t, pgtest.Shared(t), trigger)
}

// newTestDBOn is newTestDB on a cluster of the test's own.
func newTestDBOn(t testing.TB, cluster *pgtest.Cluster, trigger bool) *testDB {
	t.Helper()
	connString := cluster.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	counter := &queryCounter{}
	pool := func(app string) *pgxpool.Pool {
		cfg, err := pgxpool.ParseConfig(connString)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ConnConfig.RuntimeParams["application_name"] = app
		if app == readerApp {
			cfg.ConnConfig.Tracer = counter
		}
		cfg.MaxConns = 8
		p, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	db := &testDB{writer: pool("worker"), reader: pool(readerApp), admin: pool("admin"), readerQueries: counter, connString: connString}
	if _, err := db.writer.Exec(ctx, pgtest.BuildEventsDDL); err != nil {
		t.Fatal(err)
	}
	if trigger {
		if err := InstallNotifyTrigger(ctx, db.writer); err != nil {
			t.Fatal(err)
		}
		// Installing twice is fine.
		if err := InstallNotifyTrigger(ctx, db.writer); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// row is one event as the worker writes it.
type row struct {
	build, user, typ, phase, title string
	progress                       *float64
	finished                       bool
	preview, errCode, errMessage   string
	versionID, versionName         string
	data                           string // event_data JSON; empty for the default
	hidden                         bool   // user_visible false
}

func (db *testDB) insert(ctx context.Context, r row) (int64, error) {
	var data *string
	if r.data != "" {
		data = &r.data
	}
	var id int64
	err := db.writer.QueryRow(ctx, `INSERT INTO project_build_events
		(build_id, event_type, event_data, user_id, user_visible, event_phase, event_title, overall_progress, finished,
		 preview_url, error_code, user_error_message, version_id, version_name)
		VALUES ($1, $2, COALESCE($3::jsonb, '{}'), $4, $5, NULLIF($6, ''), NULLIF($7, ''), $8, $9,
		 NULLIF($10, ''), NULLIF($11, ''), NULLIF($12, ''), NULLIF($13, ''), NULLIF($14, ''))
		RETURNING id`,
		r.build, r.typ, data, r.user, !r.hidden, r.phase, r.title, r.progress, r.finished,
		r.preview, r.errCode, r.errMessage, r.versionID, r.versionName).Scan(&id)
	return id, err
}

func (db *testDB) mustInsert(t testing.TB, r row) int64 {
	t.Helper()
	id, err := db.insert(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func pct(p float64) *float64 { return &p }

// newClient is a client whose worker is never reached: events come from
// the database.
func newClient(t testing.TB) *sheen.WorkerClient {
	t.Helper()
	c, err := sheen.NewWorkerClient(sheen.WithSecret("pgevents-test-secret-0123456789abcdef"), sheen.WithBaseURL("https://worker.invalid"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSourceReadsCleanAndLegacyRowsOfTheUser(t *testing.T) {
	db := newTestDB(t, false)
	user, other := uuid.NewString(), uuid.NewString()
	id1 := db.mustInsert(t, row{build: "B1", user: user, typ: "plan_started", data: `{"message":"Planning your app"}`})
	db.mustInsert(t, row{build: "B1", user: user, typ: "progress", phase: "build", title: "internal", hidden: true})
	db.mustInsert(t, row{build: "B1", user: other, typ: "progress", phase: "build", title: "someone else's"})
	db.mustInsert(t, row{build: "B2", user: user, typ: "progress", phase: "build", title: "another build"})
	id2 := db.mustInsert(t, row{build: "B1", user: user, typ: "progress", phase: "build", title: "Building", progress: pct(0.8)})
	id3 := db.mustInsert(t, row{build: "B1", user: user, typ: "ai_progress", data: `{"message":"Writing code","progress":60}`})
	id4 := db.mustInsert(t, row{build: "B1", user: user, typ: "completed", phase: "deploy", title: "Live", progress: pct(1), finished: true,
		preview: "https://preview.example/B1", versionID: "V1", versionName: "First"})

	src := New(db.reader)
	events, more, err := src.FetchEvents(context.Background(), "B1", user, 0)
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		ID                int64
		Kind              sheen.EventKind
		Phase             sheen.Phase
		Title             string
		Progress          float64
		Preview, Version  string
		Success, HasPrgrs bool
	}
	var got []seen
	for _, e := range events {
		got = append(got, seen{e.ID, e.Kind, e.Phase, e.Title, e.Progress, e.PreviewURL, e.VersionName, e.DeploySucceeded(), e.HasProgress})
		if e.UserID != user || e.BuildID != "B1" || e.CreatedAt.IsZero() {
			t.Errorf("event %d: user %q build %q created %v", e.ID, e.UserID, e.BuildID, e.CreatedAt)
		}
	}
	want := []seen{
		{id1, sheen.KindStarted, "setup", "Planning your app", 0, "", "", false, false},
		{id2, sheen.KindProgress, "build", "Building", 0.8, "", "", false, true},
		{id3, sheen.KindProgress, "development", "Writing code", 0.6, "", "", false, true},
		{id4, sheen.KindCompleted, "deploy", "Live", 1, "https://preview.example/B1", "First", true, true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if more {
		t.Error("more is true for a page that was not full")
	}

	// Pages and the cursor.
	small := New(db.reader, WithPageSize(2))
	page, more, err := small.FetchEvents(context.Background(), "B1", user, 0)
	if err != nil || len(page) != 2 || !more {
		t.Fatalf("first page: %d events, more %v, err %v; want 2, true", len(page), more, err)
	}
	page, _, err = small.FetchEvents(context.Background(), "B1", user, page[1].ID)
	if err != nil || len(page) != 2 || page[0].ID != id3 {
		t.Fatalf("second page: %v, %v; want events %d and %d", page, err, id3, id4)
	}

	if _, _, err := src.FetchEvents(context.Background(), "B1", "not-a-uuid", 0); err == nil {
		t.Error("a user id that is not a UUID was accepted")
	}
}

func TestSourceQueryUsesThePollingIndex(t *testing.T) {
	db := newTestDB(t, false)
	ctx := context.Background()
	conn, err := db.reader.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "EXPLAIN "+selectEvents, "B1", uuid.NewString(), int64(0), 500)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if !strings.Contains(text, "idx_build_events_polling") || strings.Contains(text, "Sort") {
		t.Errorf("the query is not answered by idx_build_events_polling in index order:\n%s", text)
	}
	if _, err := conn.Exec(ctx, "RESET enable_seqscan"); err != nil {
		t.Fatal(err)
	}
}

// buildPlan is what one writer writes for one build.
type buildPlan struct {
	id      string
	outcome string // "success", "failure" or "metadata-failure"
}

// writeBuild writes a build of n visible events (and some rows the reader
// must not see), sleeping a little between inserts, and returns the ids of
// the visible ones.
func (db *testDB) writeBuild(ctx context.Context, p buildPlan, user string, n int) ([]int64, error) {
	var ids []int64
	add := func(r row) error {
		r.build, r.user = p.id, cmpOr(r.user, user)
		id, err := db.insert(ctx, r)
		if err == nil && !r.hidden && r.user == user {
			ids = append(ids, id)
		}
		time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond)
		return err
	}
	phases := []string{"setup", "development", "dependencies", "build", "deploy"}
	if err := add(row{typ: "started", phase: "setup", title: "Starting", progress: pct(0)}); err != nil {
		return nil, err
	}
	tail := 2 // the events that end the build
	if p.outcome == "failure" {
		tail = 1
	}
	for i := 1; i < n-tail; i++ {
		phase := phases[min(i*len(phases)/n, len(phases)-1)]
		r := row{typ: "progress", phase: phase, title: fmt.Sprintf("step %d", i), progress: pct(float64(i) / float64(n))}
		if i%10 == 0 {
			r = row{typ: "task_completed", data: fmt.Sprintf(`{"message":"task %d done"}`, i)} // legacy
		}
		if err := add(r); err != nil {
			return nil, err
		}
		if i%7 == 0 {
			if err := add(row{typ: "progress", phase: phase, title: "hidden", hidden: true}); err != nil {
				return nil, err
			}
			if err := add(row{typ: "progress", phase: phase, title: "other user", user: uuid.NewString()}); err != nil {
				return nil, err
			}
		}
	}
	switch p.outcome {
	case "failure":
		err := add(row{typ: "failed", phase: "build", title: "Build failed", errCode: "BUILD_FAILED", errMessage: "Module not found"})
		return ids, err
	case "metadata-failure":
		if err := add(row{typ: "completed", phase: "deploy", progress: pct(1), finished: true, preview: "https://preview.example/" + p.id}); err != nil {
			return nil, err
		}
		err := add(row{typ: "failed", phase: "metadata", errCode: "METADATA_FAILED", errMessage: "no name"})
		return ids, err
	default:
		if err := add(row{typ: "completed", phase: "deploy", progress: pct(1), finished: true, preview: "https://preview.example/" + p.id}); err != nil {
			return nil, err
		}
		err := add(row{typ: "completed", phase: "metadata", progress: pct(1), versionName: "Version of " + p.id})
		return ids, err
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestConcurrentBuildsAreEachDeliveredOnceInOrder(t *testing.T) {
	for _, mode := range []struct {
		name     string
		trigger  bool
		interval func(sheen.Phase) time.Duration
		srcOpts  []Option
	}{
		// With the trigger, readers keep the default intervals (1 to 3 s)
		// and are woken by notifications.
		{name: "notifications", trigger: true},
		{name: "polling", srcOpts: []Option{WithoutNotifications()},
			interval: func(sheen.Phase) time.Duration { return 20 * time.Millisecond }},
	} {
		t.Run(mode.name, func(t *testing.T) {
			db := newTestDB(t, mode.trigger)
			client := newClient(t)
			src := New(db.reader, mode.srcOpts...)
			user := uuid.NewString()
			const builds, perBuild = 10, 100
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			plans := make([]buildPlan, builds)
			for i := range plans {
				plans[i] = buildPlan{id: fmt.Sprintf("01JBUILD%02d", i), outcome: "success"}
				switch i {
				case 7, 8:
					plans[i].outcome = "failure"
				case 9:
					plans[i].outcome = "metadata-failure"
				}
			}
			type reading struct {
				ids []int64
				res *sheen.BuildResult
				err error
			}
			readings := make([]reading, builds)
			written := make([][]int64, builds)
			var wg sync.WaitGroup
			for i, p := range plans {
				wg.Go(func() {
					readings[i].res, readings[i].err = client.Builds.Wait(ctx, p.id, user, &sheen.FollowOptions{
						Source:       src,
						PollInterval: mode.interval,
						OnEvent:      func(e sheen.BuildEvent) { readings[i].ids = append(readings[i].ids, e.ID) },
					})
				})
			}
			var werr atomic.Value
			for i, p := range plans {
				wg.Go(func() {
					ids, err := db.writeBuild(ctx, p, user, perBuild)
					if err != nil {
						werr.Store(err)
						cancel()
					}
					written[i] = ids
				})
			}
			wg.Wait()
			if err, _ := werr.Load().(error); err != nil {
				t.Fatal(err)
			}
			for i, p := range plans {
				r := readings[i]
				if len(written[i]) != perBuild {
					t.Fatalf("%s: wrote %d visible events, want %d", p.id, len(written[i]), perBuild)
				}
				if diff := cmp.Diff(written[i], r.ids); diff != "" {
					t.Errorf("%s: events delivered (-written +read): every event once, in order:\n%s", p.id, diff)
				}
				switch p.outcome {
				case "failure":
					var bf *sheen.BuildFailedError
					if !errors.As(r.err, &bf) || bf.Code != "BUILD_FAILED" || bf.Message != "Module not found" {
						t.Errorf("%s: got %v, want the build's failure", p.id, r.err)
					}
				case "metadata-failure":
					if r.err != nil || r.res.MetadataError == nil || r.res.MetadataError.Code != "METADATA_FAILED" || r.res.PreviewURL == "" {
						t.Errorf("%s: got %+v, %v; want success with the metadata failure reported", p.id, r.res, r.err)
					}
				default:
					if r.err != nil || !r.res.MetadataDone || r.res.VersionName != "Version of "+p.id || r.res.PreviewURL != "https://preview.example/"+p.id {
						t.Errorf("%s: got %+v, %v; want success with its version name", p.id, r.res, r.err)
					}
				}
			}
		})
	}
}

// killReaders ends every backend of the readers' pool and reports how many
// it ended.
func (db *testDB) killReaders(ctx context.Context, onlyListener bool) (int, error) {
	q := `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`
	if onlyListener {
		q += ` AND ` + isListener
	}
	var n int
	err := db.admin.QueryRow(ctx, q, readerApp).Scan(&n)
	return n, err
}

// isListener picks the listening connection out of pg_stat_activity: its
// latest query is LISTEN or the trigger check.
const isListener = `(query ILIKE 'LISTEN%' OR query LIKE '%sheen_build_events_notify%')`

// listenerPID is the pid of a listening connection of the readers other
// than exclude, 0 when there is none.
func (db *testDB) listenerPID(ctx context.Context, exclude int) (int, error) {
	var pid int
	err := db.admin.QueryRow(ctx, `SELECT COALESCE(max(pid), 0) FROM pg_stat_activity
		WHERE application_name = $1 AND `+isListener+` AND state = 'idle' AND pid <> $2`, readerApp, exclude).Scan(&pid)
	return pid, err
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestReaderSurvivesKilledConnections(t *testing.T) {
	db := newTestDB(t, true)
	client := newClient(t)
	src := New(db.reader, WithLogger(slog.New(slog.NewTextHandler(tWriter{t}, nil))))
	user := uuid.NewString()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var read []int64
	done := make(chan error, 1)
	go func() {
		_, err := client.Builds.Wait(ctx, "01JKILLED", user, &sheen.FollowOptions{
			Source:       src,
			MetadataWait: -1,
			PollInterval: func(sheen.Phase) time.Duration { return 10 * time.Millisecond },
			OnEvent:      func(e sheen.BuildEvent) { read = append(read, e.ID) },
		})
		done <- err
	}()
	var written []int64
	kills := 0
	for i := range 300 {
		r := row{build: "01JKILLED", user: user, typ: "progress", phase: "build", title: fmt.Sprint(i)}
		if i == 299 {
			r = row{build: "01JKILLED", user: user, typ: "completed", phase: "deploy", finished: true, preview: "https://p.example/k"}
		}
		written = append(written, db.mustInsert(t, r))
		if i%50 == 25 {
			n, err := db.killReaders(ctx, false)
			if err != nil {
				t.Fatal(err)
			}
			kills += n
		}
		time.Sleep(time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatalf("the reader stopped: %v", err)
	}
	if kills == 0 {
		t.Fatal("no reader connection was killed; the test proved nothing")
	}
	t.Logf("killed %d reader connections mid-stream", kills)
	if diff := cmp.Diff(written, read); diff != "" {
		t.Errorf("events (-written +read): every event once, in order, across the kills:\n%s", diff)
	}
}

func TestNotificationsWakeTheReader(t *testing.T) {
	db := newTestDB(t, true)
	client := newClient(t)
	src := New(db.reader)
	user := uuid.NewString()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The readers' interval is an hour: anything delivered within the
	// test's deadline came by notification.
	delivered := make(chan sheen.BuildEvent, 16)
	done := make(chan error, 1)
	go func() {
		_, err := client.Builds.Wait(ctx, "01JNOTIFY", user, &sheen.FollowOptions{
			Source:       src,
			MetadataWait: -1,
			PollInterval: func(sheen.Phase) time.Duration { return time.Hour },
			OnEvent:      func(e sheen.BuildEvent) { delivered <- e },
		})
		done <- err
	}()
	waitFor(t, ctx, "the source to listen", func() bool { return src.Listening() })

	deliver := func(r row) sheen.BuildEvent {
		t.Helper()
		start := time.Now()
		id := db.mustInsert(t, r)
		select {
		case e := <-delivered:
			if e.ID != id {
				t.Fatalf("delivered event %d, want %d", e.ID, id)
			}
			t.Logf("event %d delivered %s after its insert", id, time.Since(start))
			return e
		case <-ctx.Done():
			t.Fatalf("event %d was not delivered: the notification did not wake the reader", id)
		}
		return sheen.BuildEvent{}
	}
	deliver(row{build: "01JNOTIFY", user: user, typ: "started", phase: "build"})

	// Kill the listening connection: the Source listens again on a new
	// one, and notifications keep coming.
	old, err := db.listenerPID(ctx, 0)
	if err != nil || old == 0 {
		t.Fatalf("no listening connection found (pid %d, %v)", old, err)
	}
	if n, err := db.killReaders(ctx, true); err != nil || n != 1 {
		t.Fatalf("killed %d listeners (%v), want 1", n, err)
	}
	waitFor(t, ctx, "a new listening connection", func() bool {
		pid, err := db.listenerPID(ctx, old)
		return err == nil && pid != 0 && src.Listening()
	})
	deliver(row{build: "01JNOTIFY", user: user, typ: "progress", phase: "deploy"})
	deliver(row{build: "01JNOTIFY", user: user, typ: "completed", phase: "deploy", finished: true, preview: "https://p.example/n"})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestTriggerCanBeRemoved(t *testing.T) {
	db := newTestDB(t, true)
	ctx := context.Background()
	if err := UninstallNotifyTrigger(ctx, db.writer); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.writer.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgname = 'sheen_build_events_notify'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d triggers left after uninstalling", n)
	}
	if err := UninstallNotifyTrigger(ctx, db.writer); err != nil {
		t.Errorf("uninstalling twice: %v", err)
	}
}

func TestSourceErrorsThatRetriesCannotFix(t *testing.T) {
	db := newTestDB(t, false)
	ctx := context.Background()
	if _, err := db.writer.Exec(ctx, "DROP TABLE project_build_events"); err != nil {
		t.Fatal(err)
	}
	src := New(db.reader)
	start := time.Now()
	_, _, err := src.FetchEvents(ctx, "B1", uuid.NewString(), 0)
	if err == nil || !strings.Contains(err.Error(), "project_build_events") {
		t.Fatalf("error %v, want the missing table named", err)
	}
	t.Logf("failed after %s", time.Since(start))
	// The reader stops with it, once.
	var errs []error
	for _, err := range newClient(t).Builds.Follow(ctx, "B1", uuid.NewString(), &sheen.FollowOptions{Source: src}) {
		errs = append(errs, err)
	}
	if len(errs) != 1 || errs[0] == nil {
		t.Errorf("iterator yielded %v, want one error", errs)
	}
}

// waitFor polls cond until it holds, failing t when ctx ends first.
func waitFor(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
