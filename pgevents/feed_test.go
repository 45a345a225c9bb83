package pgevents

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	sheen "github.com/sheenapps/sheen-go"
)

// newFeedDB is a test database with the events table, the notify trigger
// and the feed's tables.
func newFeedDB(t *testing.T) *testDB {
	t.Helper()
	db := newTestDB(t, true)
	if err := InstallFeed(context.Background(), db.writer); err != nil {
		t.Fatal(err)
	}
	if err := InstallFeed(context.Background(), db.writer); err != nil {
		t.Fatalf("installing twice: %v", err)
	}
	return db
}

// finishBuild writes a build that ends in success or failure.
func (db *testDB) finishBuild(t testing.TB, build, user string, fail bool) {
	t.Helper()
	db.mustInsert(t, row{build: build, user: user, typ: "started", phase: "setup", title: "Starting"})
	db.mustInsert(t, row{build: build, user: user, typ: "progress", phase: "build", title: "Building", progress: pct(0.5)})
	if fail {
		db.mustInsert(t, row{build: build, user: user, typ: "failed", phase: "build", title: "Build failed", errCode: "BUILD_FAILED", errMessage: "Module not found"})
		return
	}
	db.mustInsert(t, row{build: build, user: user, typ: "completed", phase: "deploy", title: "Live", progress: pct(1), finished: true,
		preview: "https://preview.example/" + build, versionName: "Version of " + build})
}

// replica is one feed instance with a pool of its own, which the test can
// cut off from the database as a crash would.
type replica struct {
	name   string
	pool   *pgxpool.Pool
	dead   atomic.Bool
	feed   *Feed
	cancel context.CancelFunc
	done   chan error
}

// newReplica makes a replica of feed (not running yet).
func newReplica(t *testing.T, db *testDB, feed, name string, opts ...FeedOption) *replica {
	t.Helper()
	return newReplicaTuned(t, db, feed, name, nil, opts...)
}

// newReplicaTuned is newReplica with its pool's configuration changed by
// tune first (nil: none).
func newReplicaTuned(t *testing.T, db *testDB, feed, name string, tune func(*pgxpool.Config), opts ...FeedOption) *replica {
	t.Helper()
	r := &replica{name: name}
	cfg, err := pgxpool.ParseConfig(db.connString)
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(cfg)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "feed-" + name
	cfg.MaxConns = 8
	cfg.BeforeConnect = func(context.Context, *pgx.ConnConfig) error {
		if r.dead.Load() {
			return errors.New("this replica is dead")
		}
		return nil
	}
	r.pool, err = pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.pool.Close)
	opts = append([]FeedOption{FeedInstanceName(name), FeedLogger(testLogger(t)), FeedPollInterval(200 * time.Millisecond)}, opts...)
	r.feed, err = NewFeed(r.pool, feed, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// run starts the replica's Run; stop ends it.
func (r *replica) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- r.feed.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
}

func (r *replica) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		t.Errorf("replica %s: Run: %v", r.name, err)
	}
}

// kill cuts the replica off from the database: its connections end and no
// new ones open, as when its process dies.
func (r *replica) kill(t *testing.T, db *testDB) {
	t.Helper()
	r.dead.Store(true)
	if _, err := db.admin.Exec(context.Background(),
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, "feed-"+r.name); err != nil {
		t.Fatal(err)
	}
}

// handled records the runs of a handler.
type handled struct {
	mu   sync.Mutex
	runs map[string][]run
}

type run struct {
	replica string
	c       Completion
}

func (h *handled) add(replica string, c Completion) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.runs == nil {
		h.runs = map[string][]run{}
	}
	h.runs[c.BuildID] = append(h.runs[c.BuildID], run{replica, c})
}

func (h *handled) of(build string) []run {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]run(nil), h.runs[build]...)
}

func (h *handled) builds() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.runs)
}

// countState counts the feed's completions in a state.
func (db *testDB) countState(t testing.TB, feed, state string) int {
	t.Helper()
	var n int
	if err := db.admin.QueryRow(context.Background(),
		`SELECT count(*) FROM sheen_build_completions WHERE feed = $1 AND state = $2`, feed, state).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestFeedHandlesEachBuildOnceAcrossThreeReplicas(t *testing.T) {
	db := newFeedDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const builds = 500
	user := uuid.NewString()
	buildID := func(i int) string { return fmt.Sprintf("01JFEED%04d", i) }
	fails := func(i int) bool { return i%7 == 3 }
	// A fifth of the builds finished before any replica ran.
	for i := range builds / 5 {
		db.finishBuild(t, buildID(i), user, fails(i))
	}
	h := &handled{}
	var replicas []*replica
	for i := range 3 {
		r := newReplica(t, db, "emails", fmt.Sprintf("r%d", i), FeedMetadataWait(0, 0), FeedConcurrency(4))
		name := r.name
		if err := r.feed.OnFinished(func(ctx context.Context, c Completion) error {
			h.add(name, c)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, r)
		r.run(t)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := builds/5 + w; i < builds; i += 4 {
				db.finishBuild(t, buildID(i), user, fails(i))
			}
		})
	}
	wg.Wait()
	waitFor(t, ctx, "every build handled", func() bool { return db.countState(t, "emails", "done") == builds })
	for _, r := range replicas {
		r.stop(t)
	}
	perReplica := map[string]int{}
	for i := range builds {
		runs := h.of(buildID(i))
		if len(runs) != 1 {
			t.Errorf("%s handled %d times, want once", buildID(i), len(runs))
			continue
		}
		c := runs[0].c
		perReplica[runs[0].replica]++
		if c.Key != "sheen-build-finished:emails:"+buildID(i) || c.Attempt != 1 || c.UserID != user {
			t.Errorf("%s: key %q, attempt %d, user %q", buildID(i), c.Key, c.Attempt, c.UserID)
		}
		switch {
		case fails(i):
			if c.Failure == nil || c.Result != nil || c.Failure.Code != "BUILD_FAILED" || c.Failure.Message != "Module not found" || !errors.Is(c.Failure, sheen.ErrBuildFailed) {
				t.Errorf("%s: got %+v, want its failure", buildID(i), c)
			}
		default:
			if c.Result == nil || c.Failure != nil || c.Result.PreviewURL != "https://preview.example/"+buildID(i) || c.Result.VersionName != "Version of "+buildID(i) || !c.Succeeded() {
				t.Errorf("%s: got %+v, want its success", buildID(i), c)
			}
		}
	}
	t.Logf("handled per replica: %v", perReplica)
	if h.builds() != builds {
		t.Errorf("%d builds handled, want %d", h.builds(), builds)
	}
}

func TestFeedTakesOverTheClaimOfAKilledReplica(t *testing.T) {
	for _, mode := range []string{"handler", "tx handler"} {
		t.Run(mode, func(t *testing.T) {
			db := newFeedDB(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if _, err := db.writer.Exec(ctx, `CREATE TABLE deployed (build_id text PRIMARY KEY, by text NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			user := uuid.NewString()
			const stuck = "01JSTUCK"
			h := &handled{}
			entered := make(chan struct{})
			ended := make(chan error, 1)
			register := func(r *replica, block bool) {
				effect := func(ctx context.Context, c Completion) error {
					h.add(r.name, c)
					if block && c.BuildID == stuck {
						close(entered)
						<-ctx.Done() // the replica dies here
						ended <- context.Cause(ctx)
						return ctx.Err()
					}
					return nil
				}
				var err error
				if mode == "handler" {
					err = r.feed.OnFinished(effect)
				} else {
					err = r.feed.OnFinishedTx(func(ctx context.Context, tx pgx.Tx, c Completion) error {
						if _, err := tx.Exec(ctx, `INSERT INTO deployed VALUES ($1, $2)`, c.BuildID, r.name); err != nil {
							return err
						}
						return effect(ctx, c)
					})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			a := newReplica(t, db, "deploys", "a", FeedLease(time.Second), FeedMetadataWait(0, 0), FeedDrainTimeout(0))
			register(a, true)
			db.finishBuild(t, stuck, user, false)
			a.run(t)
			select {
			case <-entered:
			case <-ctx.Done():
				t.Fatal("replica a never ran the handler")
			}
			b := newReplica(t, db, "deploys", "b", FeedLease(time.Second), FeedMetadataWait(0, 0))
			register(b, false)
			b.run(t)
			a.kill(t, db)
			db.finishBuild(t, "01JAFTER", user, false)
			waitFor(t, ctx, "the stuck build handled", func() bool { return db.countState(t, "deploys", "done") == 2 })
			if mode == "handler" {
				// The dead replica's handler was told to stop when its lease
				// could not be renewed.
				select {
				case cause := <-ended:
					if !errors.Is(cause, errLeaseExpired) {
						t.Errorf("the killed replica's handler ended with %v, want its lease expired", cause)
					}
				case <-ctx.Done():
					t.Fatal("the killed replica's handler was never cancelled")
				}
			}
			a.stop(t)
			b.stop(t)
			runs := h.of(stuck)
			if len(runs) != 2 || runs[0].replica != "a" || runs[1].replica != "b" {
				t.Fatalf("runs of the stuck build: %+v, want a's then b's", runs)
			}
			if runs[1].c.Attempt != 2 || runs[1].c.Key != runs[0].c.Key {
				t.Errorf("b's run: attempt %d key %q, want attempt 2 with a's key %q", runs[1].c.Attempt, runs[1].c.Key, runs[0].c.Key)
			}
			if mode == "tx handler" {
				var by []string
				rows, err := db.admin.Query(ctx, `SELECT by FROM deployed WHERE build_id = $1`, stuck)
				if err != nil {
					t.Fatal(err)
				}
				by, err = pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					t.Fatal(err)
				}
				if len(by) != 1 || by[0] != "b" {
					t.Errorf("the stuck build's effect was written by %v, want once, by b: a's transaction died with it", by)
				}
			}
		})
	}
}

func TestFeedRetriesFailuresThenParksThem(t *testing.T) {
	db := newFeedDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	user := uuid.NewString()
	db.finishBuild(t, "01JALWAYS", user, false)
	db.finishBuild(t, "01JONCE", user, true)
	db.finishBuild(t, "01JPANIC", user, false)
	h := &handled{}
	var fixed atomic.Bool
	r := newReplica(t, db, "flaky", "r", FeedMaxAttempts(3), FeedRetryBackoff(10*time.Millisecond, 40*time.Millisecond), FeedMetadataWait(0, 0))
	if err := r.feed.OnFinished(func(ctx context.Context, c Completion) error {
		h.add("r", c)
		switch {
		case c.BuildID == "01JALWAYS" && !fixed.Load():
			return errors.New("mail server says no")
		case c.BuildID == "01JONCE" && c.Attempt == 1:
			return errors.New("timeout")
		case c.BuildID == "01JPANIC" && c.Attempt == 1:
			panic("handler bug")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r.run(t)
	waitFor(t, ctx, "one dead letter and two builds done", func() bool {
		return db.countState(t, "flaky", "dead") == 1 && db.countState(t, "flaky", "done") == 2
	})
	attempts := func(build string) []int {
		var a []int
		for _, run := range h.of(build) {
			a = append(a, run.c.Attempt)
		}
		return a
	}
	if got := attempts("01JALWAYS"); fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("attempts of the always failing build: %v, want [1 2 3]", got)
	}
	if got := attempts("01JONCE"); fmt.Sprint(got) != "[1 2]" {
		t.Errorf("attempts of the build failing once: %v, want [1 2]", got)
	}
	if got := attempts("01JPANIC"); fmt.Sprint(got) != "[1 2]" {
		t.Errorf("attempts of the build whose handler panicked once: %v, want [1 2]", got)
	}
	dead, err := r.feed.DeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].BuildID != "01JALWAYS" || dead[0].Attempts != 3 || dead[0].LastError != "mail server says no" ||
		dead[0].Outcome != "succeeded" || dead[0].UserID != user || dead[0].LastAttemptAt.IsZero() {
		t.Fatalf("dead letters: %+v", dead)
	}

	fixed.Store(true)
	// No builds given replays none: everything takes ReplayAll.
	for _, ids := range [][]string{nil, {}} {
		if n, err := r.feed.Replay(ctx, ids...); err != nil || n != 0 {
			t.Errorf("Replay(%#v): %d, %v; want 0", ids, n, err)
		}
	}
	if n := db.countState(t, "flaky", "dead"); n != 1 {
		t.Fatalf("after replaying no builds, %d dead letter(s); want the 1 still there", n)
	}
	n, err := r.feed.ReplayAll(ctx)
	if err != nil || n != 1 {
		t.Fatalf("ReplayAll: %d, %v; want 1", n, err)
	}
	waitFor(t, ctx, "the replayed build done", func() bool { return db.countState(t, "flaky", "done") == 3 })
	runs := h.of("01JALWAYS")
	if last := runs[len(runs)-1].c; last.Attempt != 1 || last.Key != runs[0].c.Key {
		t.Errorf("the replayed run: attempt %d key %q, want attempt 1 with key %q", last.Attempt, last.Key, runs[0].c.Key)
	}
	if dead, err := r.feed.DeadLetters(ctx); err != nil || len(dead) != 0 {
		t.Errorf("dead letters after the replay: %v, %v", dead, err)
	}
	if n, err := r.feed.Replay(ctx, "01JONCE"); err != nil || n != 0 {
		t.Errorf("replaying a build that is done: %d, %v; want 0", n, err)
	}
}

func TestFeedHandlesBuildsThatFinishedWhileNoReplicaRan(t *testing.T) {
	db := newFeedDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	user := uuid.NewString()
	db.finishBuild(t, "01JBEFORE1", user, false)
	db.finishBuild(t, "01JBEFORE2", user, true)
	h := &handled{}
	start := func(name string, opts ...FeedOption) *replica {
		r := newReplica(t, db, "late", name, append([]FeedOption{FeedMetadataWait(0, 0)}, opts...)...)
		if err := r.feed.OnFinished(func(_ context.Context, c Completion) error {
			h.add(name, c)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		r.run(t)
		return r
	}
	first := start("first")
	waitFor(t, ctx, "the builds that finished before the feed", func() bool { return db.countState(t, "late", "done") == 2 })
	first.stop(t)
	db.finishBuild(t, "01JBETWEEN", user, false) // no replica runs
	second := start("second")
	waitFor(t, ctx, "the build that finished between runs", func() bool { return db.countState(t, "late", "done") == 3 })
	second.stop(t)
	for _, b := range []string{"01JBEFORE1", "01JBEFORE2", "01JBETWEEN"} {
		if n := len(h.of(b)); n != 1 {
			t.Errorf("%s handled %d times, want once", b, n)
		}
	}
	if runs := h.of("01JBETWEEN"); len(runs) == 1 && runs[0].replica != "second" {
		t.Errorf("01JBETWEEN handled by %s, want second", runs[0].replica)
	}

	// A new feed that starts at the end leaves the old builds alone.
	fresh := newReplica(t, db, "fresh", "fresh", FeedStartAtEnd(), FeedMetadataWait(0, 0))
	if err := fresh.feed.OnFinished(func(_ context.Context, c Completion) error {
		h.add("fresh", c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	fresh.run(t)
	waitFor(t, ctx, "the fresh feed's row", func() bool {
		var n int
		_ = db.admin.QueryRow(ctx, `SELECT count(*) FROM sheen_feed_state WHERE feed = 'fresh'`).Scan(&n)
		return n == 1
	})
	db.finishBuild(t, "01JAFTERSTART", user, false)
	waitFor(t, ctx, "the build after the fresh feed started", func() bool { return db.countState(t, "fresh", "done") == 1 })
	fresh.stop(t)
	if runs := h.of("01JAFTERSTART"); len(runs) != 1 || runs[0].replica != "fresh" {
		t.Errorf("runs of the build after the fresh feed started: %+v, want the fresh feed's", runs)
	}
	var n int
	if err := db.admin.QueryRow(ctx, `SELECT count(*) FROM sheen_build_completions WHERE feed = 'fresh'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("the fresh feed recorded %d builds (%v), want only the new one", n, err)
	}
}

func TestFeedOutOfOrderCommits(t *testing.T) {
	db := newFeedDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	user := uuid.NewString()
	h := &handled{}
	// An hour of grace: gaps pass only when they fill or cannot fill.
	r := newReplica(t, db, "ooo", "r", FeedGapGrace(time.Hour), FeedMetadataWait(0, 0))
	if err := r.feed.OnFinished(func(_ context.Context, c Completion) error {
		h.add("r", c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r.run(t)

	// P's final event takes an id, Q's a larger one and commits first.
	tx, err := db.writer.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := insertIn(ctx, tx, row{build: "01JP", user: user, typ: "failed", phase: "build"}); err != nil {
		t.Fatal(err)
	}
	db.finishBuild(t, "01JQ", user, false)
	waitFor(t, ctx, "the feed to see the gap", func() bool {
		var gap *int64
		_ = db.admin.QueryRow(ctx, `SELECT gap_up_to FROM sheen_feed_state WHERE feed = 'ooo'`).Scan(&gap)
		return gap != nil
	})
	if n := h.builds(); n != 0 {
		t.Fatalf("%d builds handled while an earlier id was uncommitted, want 0: the feed must not pass it", n)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "both builds", func() bool { return db.countState(t, "ooo", "done") == 2 })

	// A rolled-back insert leaves a gap that never fills: passed without
	// the grace period.
	tx2, err := db.writer.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := insertIn(ctx, tx2, row{build: "01JR", user: user, typ: "failed", phase: "build"}); err != nil {
		t.Fatal(err)
	}
	if err := tx2.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	db.finishBuild(t, "01JS", user, true)
	waitFor(t, ctx, "the build after the rolled-back insert", func() bool { return db.countState(t, "ooo", "done") == 3 })
	r.stop(t)
	for _, b := range []string{"01JP", "01JQ", "01JS"} {
		if n := len(h.of(b)); n != 1 {
			t.Errorf("%s handled %d times, want once", b, n)
		}
	}
	if n := len(h.of("01JR")); n != 0 {
		t.Errorf("the rolled-back build was handled %d times", n)
	}
}

func TestFeedWaitsForTheMetadataPhase(t *testing.T) {
	db := newFeedDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	user := uuid.NewString()
	h := &handled{}
	// Waits longer than the test: a build is handed over early only when
	// its metadata phase ends, or when it finished long ago.
	r := newReplica(t, db, "meta", "r", FeedMetadataWait(10*time.Minute, 10*time.Minute))
	if err := r.feed.OnFinished(func(_ context.Context, c Completion) error {
		h.add("r", c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Finished an hour ago, without a metadata phase.
	if _, err := db.writer.Exec(ctx, `INSERT INTO project_build_events (build_id, event_type, user_id, event_phase, finished, preview_url, created_at)
		VALUES ('01JOLD', 'completed', $1, 'deploy', true, 'https://preview.example/old', NOW() - interval '1 hour')`, user); err != nil {
		t.Fatal(err)
	}
	db.finishBuild(t, "01JMETA", user, false)
	r.run(t)
	waitFor(t, ctx, "the old build", func() bool { return len(h.of("01JOLD")) == 1 })
	waitFor(t, ctx, "the new build waiting for its metadata", func() bool {
		var n int
		_ = db.admin.QueryRow(ctx, `SELECT count(*) FROM sheen_build_completions
			WHERE feed = 'meta' AND build_id = '01JMETA' AND state = 'pending' AND next_attempt_at > now() + interval '1 minute'`).Scan(&n)
		return n == 1
	})
	if n := len(h.of("01JMETA")); n != 0 {
		t.Fatalf("handled before its metadata phase ended")
	}
	db.mustInsert(t, row{build: "01JMETA", user: user, typ: "completed", phase: "metadata", progress: pct(1), versionID: "V2", versionName: "Bakery v2"})
	waitFor(t, ctx, "the new build after its metadata", func() bool { return len(h.of("01JMETA")) == 1 })
	r.stop(t)
	res := h.of("01JMETA")[0].c.Result
	if res == nil || !res.MetadataDone || res.VersionName != "Bakery v2" || res.VersionID != "V2" || res.PreviewURL != "https://preview.example/01JMETA" {
		t.Errorf("result %+v, want the metadata phase's version", res)
	}
	if c := h.of("01JMETA")[0].c; c.Attempt != 1 {
		t.Errorf("attempt %d: waiting for the metadata phase counted as an attempt", c.Attempt)
	}
}

func TestFeedShutdownReleasesClaims(t *testing.T) {
	db := newFeedDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	user := uuid.NewString()
	db.finishBuild(t, "01JSLOW", user, false)
	entered := make(chan struct{})
	r := newReplica(t, db, "slow", "r", FeedDrainTimeout(50*time.Millisecond), FeedMetadataWait(0, 0))
	if err := r.feed.OnFinished(func(ctx context.Context, c Completion) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	r.run(t)
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("the handler never ran")
	}
	r.stop(t)
	var state string
	var attempts int
	var token *string
	if err := db.admin.QueryRow(ctx, `SELECT state, attempts, claim_token::text FROM sheen_build_completions WHERE feed = 'slow'`).Scan(&state, &attempts, &token); err != nil {
		t.Fatal(err)
	}
	if state != "pending" || attempts != 0 || token != nil {
		t.Errorf("after shutdown: state %s, attempts %d, token %v; want the claim released, not counted", state, attempts, token)
	}

	// Another replica takes it at once, without waiting out a lease.
	h := &handled{}
	next := newReplica(t, db, "slow", "next", FeedLease(time.Hour), FeedMetadataWait(0, 0))
	if err := next.feed.OnFinished(func(_ context.Context, c Completion) error {
		h.add("next", c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	next.run(t)
	waitFor(t, ctx, "the released build", func() bool { return db.countState(t, "slow", "done") == 1 })
	next.stop(t)
	if runs := h.of("01JSLOW"); len(runs) != 1 || runs[0].c.Attempt != 1 {
		t.Errorf("runs after the release: %+v, want one, attempt 1", runs)
	}
}

func TestFeedMisuse(t *testing.T) {
	ctx := context.Background()
	if _, err := NewFeed(nil, "x"); err == nil {
		t.Error("NewFeed(nil) succeeded")
	}
	db := newTestDB(t, false) // no feed tables
	for _, name := range []string{"", "has space", "quote'", strings.Repeat("x", 101), "é"} {
		if _, err := NewFeed(db.reader, name); err == nil {
			t.Errorf("feed name %q accepted", name)
		}
	}
	if _, err := NewFeed(db.reader, "emails", nil); err == nil {
		t.Error("a nil option was accepted")
	}
	// A pool too small for a handler, the listener and the scans is
	// refused; one smaller than the concurrency asked for lowers it.
	withMax := func(n int32) *pgxpool.Pool {
		cfg := db.reader.Config().Copy()
		cfg.MaxConns = n
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		return pool
	}
	if _, err := NewFeed(withMax(2), "emails"); err == nil || !strings.Contains(err.Error(), "at least 3") {
		t.Errorf("a pool of 2 connections: %v, want refused", err)
	}
	if f, err := NewFeed(withMax(5), "emails", FeedConcurrency(8)); err != nil {
		t.Errorf("FeedConcurrency(8) on a pool of 5: %v", err)
	} else if f.concurrency != 3 {
		t.Errorf("FeedConcurrency(8) on a pool of 5: concurrency %d, want 3 (5 less the listener and the scans)", f.concurrency)
	}
	f, err := NewFeed(db.reader, "emails")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Run(ctx); err == nil || !strings.Contains(err.Error(), "OnFinished") {
		t.Errorf("Run without a handler: %v", err)
	}
	if err := f.OnFinished(nil); err == nil {
		t.Error("a nil handler was accepted")
	}
	if err := f.OnFinished(func(context.Context, Completion) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := f.OnFinishedTx(func(context.Context, pgx.Tx, Completion) error { return nil }); err == nil {
		t.Error("a second handler was accepted")
	}
	if err := f.Run(ctx); err == nil || !strings.Contains(err.Error(), "InstallFeed") {
		t.Errorf("Run without the feed's tables: %v, want it to say to run InstallFeed", err)
	}
	var zero Feed
	if err := zero.Run(ctx); err == nil {
		t.Error("the zero Feed ran")
	}
	if _, err := zero.DeadLetters(ctx); err == nil {
		t.Error("the zero Feed listed dead letters")
	}
	if _, err := zero.Replay(ctx); err == nil {
		t.Error("the zero Feed replayed")
	}
	if _, err := zero.ReplayAll(ctx); err == nil {
		t.Error("the zero Feed replayed all")
	}
	if err := (*Feed)(nil).OnFinished(func(context.Context, Completion) error { return nil }); err == nil {
		t.Error("a nil Feed took a handler")
	}
}

// A build whose replica stopped during its last attempt (as one that
// crashes the process would) is parked, not run again.
func TestFeedParksABuildWhoseLastAttemptLostItsReplica(t *testing.T) {
	db := newFeedDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := db.writer.Exec(ctx, `INSERT INTO sheen_feed_state (feed, scanned_to) VALUES ('poison', 0);
		INSERT INTO sheen_build_completions (feed, build_id, outcome, event_id, state, attempts, claim_token, claimed_by, claimed_until)
		VALUES ('poison', '01JPOISON', 'succeeded', 1, 'running', 3, gen_random_uuid(), 'crashed-replica', now() - interval '1 second')`); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	r := newReplica(t, db, "poison", "r", FeedMaxAttempts(3))
	if err := r.feed.OnFinished(func(context.Context, Completion) error {
		calls.Add(1)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r.run(t)
	waitFor(t, ctx, "the build parked", func() bool { return db.countState(t, "poison", "dead") == 1 })
	r.stop(t)
	dead, err := r.feed.DeadLetters(ctx)
	if err != nil || len(dead) != 1 || !strings.Contains(dead[0].LastError, "crashed-replica") {
		t.Errorf("dead letters %+v, %v; want the build, naming the replica that stopped", dead, err)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the handler ran %d times, want 0", n)
	}
}

// A database that cannot give a build's events fails the reading, not the
// handler: the handling is tried again without spending an attempt, so a
// blip cannot park a build as a dead letter. The blip: the replica's reads
// of one build's events fail twice, after the handler's first run failed.
func TestFeedReadErrorsDoNotSpendAttempts(t *testing.T) {
	db := newFeedDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	user := uuid.NewString()
	db.finishBuild(t, "01JBLIP", user, false)
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	blip := &readBlip{}
	h := &handled{}
	r := newReplicaTuned(t, db, "blip", "r", func(cfg *pgxpool.Config) { cfg.ConnConfig.Tracer = blip },
		FeedMaxAttempts(2), FeedRetryBackoff(50*time.Millisecond, 50*time.Millisecond),
		FeedMetadataWait(0, 0), FeedLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err := r.feed.OnFinished(func(ctx context.Context, c Completion) error {
		h.add("r", c)
		if c.Attempt == 1 {
			blip.failNext.Store(2)
			return errors.New("mail server says no")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r.run(t)
	waitFor(t, ctx, "the build done", func() bool { return db.countState(t, "blip", "done") == 1 })
	if n := strings.Count(logs.String(), "could not read the build's events"); n != 2 {
		t.Errorf("%d failed readings logged, want 2", n)
	}
	var attempts []int
	for _, run := range h.of("01JBLIP") {
		attempts = append(attempts, run.c.Attempt)
	}
	if fmt.Sprint(attempts) != "[1 2]" {
		t.Errorf("attempts %v, want [1 2]: the failed readings must not count", attempts)
	}
	if n := db.countState(t, "blip", "dead"); n != 0 {
		t.Errorf("%d dead letter(s); want none", n)
	}
}

// readBlip fails the next failNext readings of a build's events (the
// feed's feedReadBuild query), as a database blip would.
type readBlip struct{ failNext atomic.Int32 }

func (b *readBlip) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if data.SQL == feedReadBuild && b.failNext.Add(-1) >= 0 {
		ctx, cancel := context.WithCancelCause(ctx)
		cancel(errors.New("database blip"))
		return ctx
	}
	return ctx
}

func (*readBlip) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// syncBuffer is a log sink the feed's goroutines may write while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
