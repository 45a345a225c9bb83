package pgevents

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	sheen "github.com/sheenapps/sheen-go"
)

// FeedMigrationSQL creates the completion feed's tables:
// sheen_feed_state (one row per feed: how far it has read
// project_build_events) and sheen_build_completions (one row per feed and
// finished build: its outcome and the state of its handling, with
// partial indexes for due work, leases and dead letters). Run it once in a
// migration, or call InstallFeed; it can be run again safely. Operators can
// read sheen_build_completions directly (state pending, running, done or
// dead; attempts; last_error holds the text of the handler's last error).
//
//go:embed feed.sql
var FeedMigrationSQL string

// CompletionsChannel is the notification channel a feed's replicas wake
// each other on when completions are recorded or replayed (the payload is
// the feed's name).
const CompletionsChannel = "sheen_build_completions"

// InstallFeed creates the completion feed's tables; see FeedMigrationSQL.
func InstallFeed(ctx context.Context, db Execer) error {
	if db == nil {
		return errors.New("pgevents: installing the feed's tables: no database")
	}
	if _, err := db.Exec(ctx, FeedMigrationSQL); err != nil {
		return fmt.Errorf("pgevents: installing the feed's tables: %w", err)
	}
	return nil
}

// Defaults of a Feed.
const (
	DefaultFeedConcurrency = 4
	DefaultFeedLease       = 30 * time.Second
	DefaultFeedMaxAttempts = 5
	DefaultFeedPoll        = 10 * time.Second
	DefaultFeedDrain       = 10 * time.Second
)

// Completion is a build that finished, as a Feed hands it to its handler.
// Exactly one of Result and Failure is set.
type Completion struct {
	// Key is the same for every run of this build's handling, on any
	// replica, after crashes, retries and replays:
	// "sheen-build-finished:<feed>:<build id>". Pass it as the idempotency
	// key of the side effect (an email provider's Idempotency-Key, a
	// unique column) to make the effect happen once.
	Key string
	// Feed is the feed's name.
	Feed string
	// BuildID and UserID name the build and its user ("" when the row
	// has none).
	BuildID, UserID string
	// Result is how a successful build ended, as Builds.Wait returns it
	// (the preview URL, the version, the metadata phase's outcome).
	Result *sheen.BuildResult
	// Failure is how a failed build ended, as Builds.Wait returns it.
	Failure *sheen.BuildFailedError
	// FinishedAt is when the worker wrote the event that decided the
	// outcome (created_at, read as UTC).
	FinishedAt time.Time
	// Attempt counts the runs of this handling, 1 for the first; a run
	// that crashed counts, a Replay or ReplayAll starts again from 1.
	Attempt int
}

// Succeeded reports whether the build's deploy succeeded.
func (c Completion) Succeeded() bool { return c.Result != nil }

// Handler acts on a finished build. A nil error records the build as done;
// an error makes the Feed run it again later, with backoff, and park it as
// a dead letter after the last attempt. The context ends when the Feed
// shuts down (after its drain timeout) or loses the claim: return then.
type Handler func(ctx context.Context, c Completion) error

// TxHandler acts on a finished build inside a transaction of the feed's
// database that also records the build as done: what it writes through tx
// happens exactly once. Keep it short: it holds the completion's row lock
// and an open transaction (which holds back the gap rule of every Source
// and Feed on the database) while it runs. The row lock keeps other
// replicas off the build even past its lease; a replica that dies
// mid-transaction releases it, and the build is taken over once the lease
// has run out.
type TxHandler func(ctx context.Context, tx pgx.Tx, c Completion) error

// DeadLetter is a completion whose handler failed on every attempt.
type DeadLetter struct {
	BuildID, UserID string
	// Outcome is "succeeded" or "failed".
	Outcome string
	// EventID is the event that decided the outcome.
	EventID int64
	// Attempts is how many runs failed.
	Attempts int
	// LastError is the text of the last run's error.
	LastError string
	// DiscoveredAt is when the feed recorded the completion;
	// LastAttemptAt when the last run started.
	DiscoveredAt, LastAttemptAt time.Time
}

// FeedOption configures a Feed.
type FeedOption func(*Feed)

// FeedConcurrency sets how many handlers run at once in this replica
// (default 4). The pool needs that many connections and two more: NewFeed
// lowers the number to the pool's MaxConns less two (pgxpool's default
// MaxConns is 4 or the number of CPUs, whichever is larger), and refuses a
// pool of fewer than 3 connections.
func FeedConcurrency(n int) FeedOption {
	return func(f *Feed) {
		if n > 0 {
			f.concurrency = n
		}
	}
}

// FeedLease sets how long a claim lasts without renewal (default 30 s;
// at least 1 s). A replica renews its claims every third of it while
// handlers run, and cancels a handler's context before its lease can run
// out unrenewed; after a crash, the builds it held are taken over when
// their leases run out.
func FeedLease(d time.Duration) FeedOption {
	return func(f *Feed) {
		if d > 0 {
			f.lease = max(d, time.Second)
		}
	}
}

// FeedMaxAttempts sets how many runs of a handling may fail before it is
// parked as a dead letter (default 5). Only the handler's failures count:
// when the database cannot give the build's events, the handling is tried
// again after the first retry backoff without spending an attempt.
func FeedMaxAttempts(n int) FeedOption {
	return func(f *Feed) {
		if n > 0 {
			f.maxAttempts = n
		}
	}
}

// FeedRetryBackoff sets the wait after a failed run: first, doubling up to
// most (default 1 s to 5 minutes).
func FeedRetryBackoff(first, most time.Duration) FeedOption {
	return func(f *Feed) {
		if first > 0 {
			f.backoffMin = first
		}
		if most > 0 {
			f.backoffMax = most
		}
		f.backoffMax = max(f.backoffMax, f.backoffMin)
	}
}

// FeedPollInterval sets how often a replica looks for work when no
// notification came (default 10 s; 1 s at most while the notify trigger is
// not installed).
func FeedPollInterval(d time.Duration) FeedOption {
	return func(f *Feed) {
		if d > 0 {
			f.poll = d
		}
	}
}

// FeedDrainTimeout sets how long Run, once its context ends, lets running
// handlers finish before cancelling their contexts (default 10 s). Claims
// whose handlers then return an error are released for another replica at
// once.
func FeedDrainTimeout(d time.Duration) FeedOption {
	return func(f *Feed) {
		if d >= 0 {
			f.drain = d
		}
	}
}

// FeedMetadataWait sets how long after a successful deploy the handling
// waits for the metadata phase (the version's name), as
// sheen.FollowOptions.MetadataWait and MetadataStartWait do for Wait:
// until the phase ends, or wait after the deploy, or startWait when no
// metadata event has shown up (defaults sheen.DefaultMetadataWait and
// sheen.DefaultMetadataStartWait; 0 here hands successes over at the
// deploy, as a negative FollowOptions.MetadataWait does).
// The times count from the deploy event's created_at, so builds that
// finished long ago are handed over at once.
func FeedMetadataWait(wait, startWait time.Duration) FeedOption {
	return func(f *Feed) {
		f.metaWait, f.metaStartWait = max(wait, 0), max(startWait, 0)
	}
}

// FeedGapGrace sets how long a gap in the event ids is waited for while a
// transaction that may fill it is running (default 30 s; see the package
// documentation on out-of-order commits). A terminal event committed after
// its gap was given up is not handled.
func FeedGapGrace(d time.Duration) FeedOption {
	return func(f *Feed) {
		if d > 0 {
			f.gaps.grace = max(d, f.gaps.settle)
		}
	}
}

// FeedStartAtEnd makes a feed that does not exist yet start with the
// builds that finish from now on. By default a new feed handles every
// finished build in the table, old ones included.
func FeedStartAtEnd() FeedOption {
	return func(f *Feed) { f.startAtEnd = true }
}

// FeedLogger sets where the feed reports failures, retries and takeovers
// (default: nowhere).
func FeedLogger(l *slog.Logger) FeedOption {
	return func(f *Feed) {
		if l != nil {
			f.logger = l
		}
	}
}

// FeedInstanceName sets the name this replica claims under (recorded in
// claimed_by; default host name, process id and a random suffix).
func FeedInstanceName(name string) FeedOption {
	return func(f *Feed) {
		if name != "" {
			f.instance = name
		}
	}
}

// Feed calls a handler once for every build that finishes (its deploy
// succeeds or the build fails, by the rules of Builds.Wait), across any
// number of replicas and their restarts, with Postgres as the only
// coordinator.
//
// The replicas of a feed share its name. One of them at a time reads new
// rows of project_build_events in id order (holding the feed's row in
// sheen_feed_state FOR UPDATE SKIP LOCKED), never past a gap in the ids
// that may still fill, and records each finished build once, in the same
// transaction that moves the feed's cursor: no finished build is skipped
// or recorded twice, including builds that finished while no replica ran.
// Each replica then claims recorded builds (FOR UPDATE SKIP LOCKED, at most
// its concurrency at a time) under a lease it renews while the handler
// runs, and records the result under the claim's token.
//
// The guarantee, precisely:
//
//   - Recording is exactly once: each finished build gets one row per feed,
//     committed with the cursor that passed its deciding event. A build is
//     missed only if its deciding event committed after its gap in the ids
//     was given up (FeedGapGrace, 30 s, while another write transaction
//     stayed open), or was deleted before the feed read it.
//   - Handling is at least once: the handler runs until a run returns nil
//     and that is recorded, or until FeedMaxAttempts runs failed (a run
//     whose replica stopped counts) and the build is parked as a dead
//     letter (DeadLetters, Replay, ReplayAll).
//   - Runs do not overlap while leases hold: a replica cancels its
//     handler's context a tenth of the lease before the lease could lapse
//     unrenewed (counting from before it asked), and only then can another
//     replica take the build over. A handler that ignores its context, or
//     a replica whose clock runs much slower than the database's, can
//     overlap with the one taking over; results are recorded under the
//     claim's token, so only the current claimant's result counts.
//   - A run whose replica crashed, was cut off, or lost its claim may have
//     made its side effect without it being recorded; the build is then
//     handled again with the same Completion.Key. The side effect happens
//     exactly once when it is idempotent on that key (an email provider's
//     idempotency key, a unique column), or when it is written through the
//     transaction OnFinishedTx passes, which commits together with the
//     record of the handling and rolls back with a run that does not
//     finish.
//
// Replicas wake on the NOTIFY trigger of the events table (see
// InstallNotifyTrigger) and on each other's notifications, and poll every
// FeedPollInterval as a safety net. Install the tables with InstallFeed
// (FeedMigrationSQL).
type Feed struct {
	pool          *pgxpool.Pool
	name          string
	instance      string
	concurrency   int
	lease         time.Duration
	maxAttempts   int
	backoffMin    time.Duration
	backoffMax    time.Duration
	poll          time.Duration
	drain         time.Duration
	metaWait      time.Duration
	metaStartWait time.Duration
	gaps          gapPolicy
	startAtEnd    bool
	logger        *slog.Logger
	retryMin      time.Duration
	retryMax      time.Duration

	mu        sync.Mutex
	handler   Handler
	txHandler TxHandler
	running   bool
}

// NewFeed returns the feed called name (letters, digits and -_.:/, up to 100
// characters) reading through pool. Register its handler with OnFinished or
// OnFinishedTx, then call Run in every replica.
func NewFeed(pool *pgxpool.Pool, name string, opts ...FeedOption) (*Feed, error) {
	if pool == nil {
		return nil, errors.New("pgevents: NewFeed: pool is nil")
	}
	if err := checkFeedName(name); err != nil {
		return nil, err
	}
	f := &Feed{
		pool:          pool,
		name:          name,
		instance:      defaultInstance(),
		concurrency:   DefaultFeedConcurrency,
		lease:         DefaultFeedLease,
		maxAttempts:   DefaultFeedMaxAttempts,
		backoffMin:    time.Second,
		backoffMax:    5 * time.Minute,
		poll:          DefaultFeedPoll,
		drain:         DefaultFeedDrain,
		metaWait:      sheen.DefaultMetadataWait,
		metaStartWait: sheen.DefaultMetadataStartWait,
		gaps:          gapPolicy{settle: gapSettle, grace: DefaultGapGrace},
		logger:        slog.New(slog.DiscardHandler),
		retryMin:      50 * time.Millisecond,
		retryMax:      5 * time.Second,
	}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("pgevents: NewFeed: an option is nil")
		}
		o(f)
	}
	// Handlers hold a connection each, and the feed keeps two more (its
	// listener and its scans): more handlers than the pool leaves room for
	// would wait on the pool instead of renewing their leases.
	maxConns := int(pool.Config().MaxConns)
	if maxConns < 3 {
		return nil, fmt.Errorf("pgevents: NewFeed: the pool allows %d connections; a feed needs at least 3 (one handler, its listener, its scans)", maxConns)
	}
	f.concurrency = min(f.concurrency, maxConns-2)
	return f, nil
}

func checkFeedName(name string) error {
	if name == "" || len(name) > 100 {
		return fmt.Errorf("pgevents: feed name %q: want 1 to 100 characters", name)
	}
	for _, r := range name {
		if !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("-_.:/", r))) {
			return fmt.Errorf("pgevents: feed name %q: want letters, digits and -_.:/ only", name)
		}
	}
	return nil
}

func defaultInstance() string {
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Name returns the feed's name.
func (f *Feed) Name() string {
	if f == nil {
		return ""
	}
	return f.name
}

var errNoFeed = errors.New("pgevents: the Feed has no pool; make it with pgevents.NewFeed")

// OnFinished registers the handler. A feed has one handler, set before Run.
func (f *Feed) OnFinished(h Handler) error {
	if h == nil {
		return errors.New("pgevents: OnFinished: handler is nil")
	}
	return f.register(h, nil)
}

// OnFinishedTx registers a handler that writes its side effect through the
// transaction that records the build as done, so that effect happens
// exactly once. A feed has one handler, set before Run.
func (f *Feed) OnFinishedTx(h TxHandler) error {
	if h == nil {
		return errors.New("pgevents: OnFinishedTx: handler is nil")
	}
	return f.register(nil, h)
}

func (f *Feed) register(h Handler, txh TxHandler) error {
	if f == nil || f.pool == nil {
		return errNoFeed
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.running:
		return errors.New("pgevents: the feed is running; register its handler before Run")
	case f.handler != nil || f.txHandler != nil:
		return errors.New("pgevents: the feed has a handler already")
	}
	f.handler, f.txHandler = h, txh
	return nil
}

// Run handles finished builds until ctx ends; call it in every replica. It
// returns nil after ctx ended and its running handlers have returned (see
// FeedDrainTimeout), or an error when it cannot start: no handler, Run
// already running, the feed's tables missing. While the database is
// unreachable it keeps trying, with backoff, until ctx ends.
func (f *Feed) Run(ctx context.Context) error {
	if f == nil || f.pool == nil {
		return errNoFeed
	}
	if ctx == nil {
		return errors.New("pgevents: Run: context is nil")
	}
	f.mu.Lock()
	switch {
	case f.handler == nil && f.txHandler == nil:
		f.mu.Unlock()
		return errors.New("pgevents: the feed has no handler; call OnFinished first")
	case f.running:
		f.mu.Unlock()
		return errors.New("pgevents: the feed is running already")
	}
	f.running = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running = false
		f.mu.Unlock()
	}()
	r := &feedRun{f: f, wake: make(chan struct{}, 1), freed: make(chan struct{}, f.concurrency)}
	if err := r.start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	return r.loop(ctx)
}

// feedRun is one Run of a feed.
type feedRun struct {
	f       *Feed
	wake    chan struct{}
	freed   chan struct{} // a handler finished
	noNote  atomic.Bool   // the notify trigger is missing: poll faster
	failing int           // consecutive failures of the loop's queries
}

func (r *feedRun) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// start makes sure the feed's row exists, retrying while the database is
// unreachable.
func (r *feedRun) start(ctx context.Context) error {
	f := r.f
	delay := f.retryMin
	for {
		err := r.ensureRow(ctx)
		if err == nil {
			return nil
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
			return fmt.Errorf("pgevents: feed %s: its tables are missing; run InstallFeed (FeedMigrationSQL) first: %w", f.name, err)
		}
		if !transient(err) || ctx.Err() != nil {
			return fmt.Errorf("pgevents: feed %s: %w", f.name, err)
		}
		f.logger.LogAttrs(ctx, slog.LevelWarn, "pgevents: feed cannot reach the database; retrying",
			slog.String("feed", f.name), slog.Duration("wait", delay), slog.String("error", err.Error()))
		if sleep(ctx, delay) != nil {
			return ctx.Err()
		}
		delay = min(2*delay, f.retryMax)
	}
}

func (r *feedRun) ensureRow(ctx context.Context) error {
	f := r.f
	var start int64
	if f.startAtEnd {
		if err := f.pool.QueryRow(ctx, `SELECT COALESCE(max(id), 0)::bigint FROM project_build_events`).Scan(&start); err != nil {
			return err
		}
	}
	_, err := f.pool.Exec(ctx, `INSERT INTO sheen_feed_state (feed, scanned_to) VALUES ($1, $2) ON CONFLICT (feed) DO NOTHING`, f.name, start)
	return err
}

// loop scans and claims until ctx ends, then drains.
func (r *feedRun) loop(ctx context.Context) error {
	f := r.f
	handlerBase, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	listenCtx, stopListening := context.WithCancel(ctx)
	listenDone := make(chan struct{})
	go r.listen(listenCtx, listenDone)
	defer func() {
		stopListening()
		<-listenDone
	}()

	var wg sync.WaitGroup
	inFlight := 0
	for ctx.Err() == nil {
		wait := f.poll
		if r.noNote.Load() {
			wait = min(wait, time.Second)
		}
		again, err := r.scan(ctx)
		var claims []claim
		var due time.Duration
		if err == nil {
			claims, due, err = r.claim(ctx, f.concurrency-inFlight)
		}
		switch {
		case err != nil && ctx.Err() == nil:
			r.failing++
			level := slog.LevelWarn
			if r.failing > 1 {
				level = slog.LevelDebug // said once per outage
			}
			wait = min(f.retryMin<<min(r.failing-1, 10), f.retryMax)
			f.logger.LogAttrs(ctx, level, "pgevents: feed cannot read or claim; retrying",
				slog.String("feed", f.name), slog.Duration("wait", wait), slog.String("error", err.Error()))
		case err == nil:
			if r.failing > 0 {
				f.logger.LogAttrs(ctx, slog.LevelInfo, "pgevents: feed reaches the database again", slog.String("feed", f.name))
			}
			r.failing = 0
			if due >= 0 && inFlight+len(claims) < f.concurrency {
				// Something is due (or a lease runs out) then; with every
				// slot busy, a finished handler wakes the loop instead. (A
				// TxHandler that outlasts its lease keeps the build locked
				// and due: look every 100 ms, no more.)
				wait = min(wait, max(due, 100*time.Millisecond))
			}
			if again {
				wait = min(wait, 2*gapRecheck)
			}
		}
		for _, c := range claims {
			inFlight++
			wg.Go(func() {
				defer func() { r.freed <- struct{}{} }()
				r.handle(handlerBase, c)
			})
		}
		t := time.NewTimer(max(wait, time.Millisecond))
		select {
		case <-ctx.Done():
		case <-r.wake:
		case <-r.freed:
			inFlight--
		case <-t.C:
		}
		t.Stop()
		for drained := false; !drained; {
			select {
			case <-r.freed:
				inFlight--
			default:
				drained = true
			}
		}
	}

	// Shutting down: no more claims. Running handlers get the drain
	// timeout to finish; then their contexts end, and claims they give up
	// are released.
	if inFlight > 0 {
		f.logger.LogAttrs(context.Background(), slog.LevelInfo, "pgevents: feed stopping; waiting for running handlers",
			slog.String("feed", f.name), slog.Int("running", inFlight), slog.Duration("drain", f.drain))
	}
	drain := time.NewTimer(f.drain)
	defer drain.Stop()
	for inFlight > 0 {
		select {
		case <-r.freed:
			inFlight--
		case <-drain.C:
			cancelHandlers()
		}
	}
	wg.Wait()
	return nil
}

// listen wakes the loop on notifications: new events (the trigger) and
// other replicas' recorded completions.
func (r *feedRun) listen(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	f := r.f
	keepListening(ctx, f.retryMin, f.retryMax, r.listenOnce, func(level slog.Level, wait time.Duration, err error) {
		f.logger.LogAttrs(ctx, level, "pgevents: feed's listening connection lost; polling until it is back",
			slog.String("feed", f.name), slog.Duration("wait", wait), slog.String("error", err.Error()))
		r.noNote.Store(true)
	})
}

func (r *feedRun) listenOnce(ctx context.Context) (bool, error) {
	f := r.f
	pc, err := f.pool.Acquire(ctx)
	if err != nil {
		return false, err
	}
	conn := pc.Hijack()
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{Channel}.Sanitize()+"; LISTEN "+pgx.Identifier{CompletionsChannel}.Sanitize()); err != nil {
		return false, err
	}
	for {
		var ok bool
		if err := conn.QueryRow(ctx, triggerInstalled).Scan(&ok); err != nil {
			return true, err
		}
		if !ok && !r.noNote.Load() {
			f.logger.LogAttrs(ctx, slog.LevelInfo, "pgevents: the notify trigger is not installed; the feed polls every second",
				slog.String("feed", f.name))
		}
		r.noNote.Store(!ok)
		r.poke() // whatever happened while not listening
		for {
			waitCtx, cancel := context.WithTimeout(ctx, f.poll)
			n, err := conn.WaitForNotification(waitCtx)
			cancel()
			if err == nil {
				if n.Channel == Channel || n.Payload == f.name {
					r.poke()
				}
				continue
			}
			if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) || conn.IsClosed() {
				return true, err
			}
			break // quiet for a poll interval: check the connection and the trigger
		}
	}
}

// scanPageFeed is how many new ids one scan transaction reads at most.
const scanPageFeed = 2000

// scan records the builds that finished in the rows settled since the
// last scan. again says to look again soon: another replica held the
// feed's row (its scan may have started before the rows that woke us), or
// a gap in the ids holds rows back (a rolled-back insert sends no
// notification when it becomes passable).
func (r *feedRun) scan(ctx context.Context) (again bool, err error) {
	for {
		more, again, err := r.scanOnce(ctx)
		if err != nil || again || !more {
			return again, err
		}
	}
}

const feedLockState = `SELECT scanned_to, gap_up_to, gap_seen_at, gap_xmax FROM sheen_feed_state WHERE feed = $1 FOR UPDATE SKIP LOCKED`

// feedScanIDs reads the ids above $1 with the statement's snapshot and the
// database's clock before and after it was taken.
const feedScanIDs = `SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint, statement_timestamp(), clock_timestamp(), e.id
  FROM pg_current_snapshot() AS s
  LEFT JOIN LATERAL (SELECT id FROM project_build_events WHERE id > $1 ORDER BY id LIMIT $2) AS e ON true
 ORDER BY e.id`

const feedReadRows = `SELECT ` + eventColumns + `
  FROM project_build_events
 WHERE id > $1 AND id <= $2 AND user_visible
 ORDER BY id`

const feedRecord = `INSERT INTO sheen_build_completions (feed, build_id, user_id, outcome, event_id)
SELECT $1, b, u::uuid, o, e FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[]) AS t(b, u, o, e)
ON CONFLICT (feed, build_id) DO NOTHING`

const feedWakeWaiting = `UPDATE sheen_build_completions SET next_attempt_at = clock_timestamp()
 WHERE feed = $1 AND build_id = ANY($2) AND state = 'pending' AND next_attempt_at > clock_timestamp()`

const feedSaveState = `UPDATE sheen_feed_state SET scanned_to = $2, gap_up_to = $3, gap_seen_at = $4, gap_xmax = $5, updated_at = now() WHERE feed = $1`

// scanOnce is one scan transaction; more says it read a full page and
// settled all of it.
func (r *feedRun) scanOnce(ctx context.Context) (more, again bool, err error) {
	f := r.f
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		return false, false, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var (
		st      settled
		gapUpTo *int64
		gapSeen *time.Time
		gapXmax *int64
	)
	err = tx.QueryRow(ctx, feedLockState, f.name).Scan(&st.h, &gapUpTo, &gapSeen, &gapXmax)
	if errors.Is(err, pgx.ErrNoRows) {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sheen_feed_state WHERE feed = $1)`, f.name).Scan(&exists); err != nil {
			return false, false, err
		}
		if !exists { // deleted under us: start again
			_ = tx.Rollback(ctx)
			return false, true, r.ensureRow(ctx)
		}
		return false, true, nil
	}
	if err != nil {
		return false, false, err
	}
	if gapUpTo != nil && gapSeen != nil {
		st.pending = &gapCheck{upTo: *gapUpTo, seen: *gapSeen}
		if gapXmax != nil {
			st.pending.xmax = *gapXmax
		}
	}
	old := st.h
	rows, err := tx.Query(ctx, feedScanIDs, st.h, scanPageFeed)
	if err != nil {
		return false, false, err
	}
	var snap snapshotInfo
	var ids []int64
	for rows.Next() {
		var id *int64
		if err := rows.Scan(&snap.xmin, &snap.xmax, &snap.sent, &snap.received, &id); err != nil {
			rows.Close()
			return false, false, err
		}
		if id != nil {
			ids = append(ids, *id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, false, err
	}
	left := f.gaps.advance(&st, ids, snap)
	notify := false
	if st.h > old {
		rows, err := tx.Query(ctx, feedReadRows, old, st.h)
		if err != nil {
			return false, false, err
		}
		events, err := collectEvents(rows)
		if err != nil {
			return false, false, err
		}
		var builds, outcomes []string
		var users []*string
		var eventIDs []int64
		var metaDone []string
		seen := map[string]bool{}
		for _, ev := range events {
			if ev.MetadataDone() {
				metaDone = append(metaDone, ev.BuildID)
			}
			if seen[ev.BuildID] {
				continue
			}
			outcome := ""
			switch {
			case ev.DeploySucceeded():
				outcome = "succeeded"
			case ev.BuildFailed():
				outcome = "failed"
			default:
				continue
			}
			seen[ev.BuildID] = true
			var user *string
			if ev.UserID != "" {
				user = &ev.UserID
			}
			builds, users, outcomes, eventIDs = append(builds, ev.BuildID), append(users, user), append(outcomes, outcome), append(eventIDs, ev.ID)
		}
		if len(builds) > 0 {
			tag, err := tx.Exec(ctx, feedRecord, f.name, builds, users, outcomes, eventIDs)
			if err != nil {
				return false, false, err
			}
			notify = notify || tag.RowsAffected() > 0
		}
		if len(metaDone) > 0 {
			tag, err := tx.Exec(ctx, feedWakeWaiting, f.name, metaDone)
			if err != nil {
				return false, false, err
			}
			notify = notify || tag.RowsAffected() > 0
		}
	}
	var (
		upTo *int64
		seen *time.Time
		xmax *int64
	)
	if g := st.pending; g != nil {
		upTo, seen = &g.upTo, &g.seen
		if g.xmax != 0 {
			xmax = &g.xmax
		}
	}
	if _, err := tx.Exec(ctx, feedSaveState, f.name, st.h, upTo, seen, xmax); err != nil {
		return false, false, err
	}
	if notify {
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, CompletionsChannel, f.name); err != nil {
			return false, false, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return false, false, err
	}
	return len(ids) == scanPageFeed && len(left) == 0, st.pending != nil, nil
}

// claim is a completion this replica holds.
type claim struct {
	build, user, outcome, token string
	eventID                     int64
	attempts                    int
	discovered, dbNow           time.Time
	sent                        time.Time // local time the claim was asked for
}

const feedClaim = `UPDATE sheen_build_completions c
   SET state = 'running', attempts = c.attempts + 1, claim_token = gen_random_uuid(),
       claimed_by = $2, claimed_until = clock_timestamp() + make_interval(secs => $3), last_attempt_at = clock_timestamp()
  FROM (SELECT feed, build_id FROM sheen_build_completions
         WHERE feed = $1 AND ((state = 'pending' AND next_attempt_at <= clock_timestamp())
                           OR (state = 'running' AND claimed_until < clock_timestamp()))
         ORDER BY next_attempt_at
         LIMIT $4
         FOR UPDATE SKIP LOCKED) AS due
 WHERE c.feed = due.feed AND c.build_id = due.build_id
RETURNING c.build_id, COALESCE(c.user_id::text, ''), c.outcome, c.event_id, c.attempts, c.claim_token::text, c.discovered_at, clock_timestamp()`

// feedNextDue is how long until the next completion is due or the next
// lease runs out (NULL when there is none).
const feedNextDue = `SELECT EXTRACT(EPOCH FROM (min(t) - clock_timestamp()))::float8 FROM (
  SELECT min(next_attempt_at) AS t FROM sheen_build_completions WHERE feed = $1 AND state = 'pending'
  UNION ALL
  SELECT min(claimed_until) FROM sheen_build_completions WHERE feed = $1 AND state = 'running') AS x`

// feedParkLost parks the completions whose last attempt's replica stopped
// (its lease ran out): a build that kills the process that handles it
// would otherwise take every replica down in turn, for ever.
const feedParkLost = `UPDATE sheen_build_completions c
   SET state = 'dead', claim_token = NULL, claimed_by = NULL, claimed_until = NULL,
       last_error = 'the replica ' || COALESCE(c.claimed_by, '') || ' stopped during the last attempt (its lease ran out)'
  FROM (SELECT feed, build_id FROM sheen_build_completions
         WHERE feed = $1 AND state = 'running' AND claimed_until < clock_timestamp() AND attempts >= $2
         FOR UPDATE SKIP LOCKED) AS lost
 WHERE c.feed = lost.feed AND c.build_id = lost.build_id`

// claim takes up to n due completions, and says how long until the next
// one is due (-1: none is known).
func (r *feedRun) claim(ctx context.Context, n int) ([]claim, time.Duration, error) {
	f := r.f
	var claims []claim
	if n > 0 {
		tag, err := f.pool.Exec(ctx, feedParkLost, f.name, f.maxAttempts)
		if err != nil {
			return nil, 0, err
		}
		if tag.RowsAffected() > 0 {
			f.logger.LogAttrs(ctx, slog.LevelError, "pgevents: builds whose replica stopped during their last attempt were parked as dead letters",
				slog.String("feed", f.name), slog.Int64("builds", tag.RowsAffected()))
		}
		sent := time.Now()
		rows, err := f.pool.Query(ctx, feedClaim, f.name, f.instance, f.lease.Seconds(), n)
		if err != nil {
			return nil, 0, err
		}
		for rows.Next() {
			c := claim{sent: sent}
			if err := rows.Scan(&c.build, &c.user, &c.outcome, &c.eventID, &c.attempts, &c.token, &c.discovered, &c.dbNow); err != nil {
				rows.Close()
				return nil, 0, err
			}
			claims = append(claims, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, 0, err
		}
	}
	var secs *float64
	if err := f.pool.QueryRow(ctx, feedNextDue, f.name).Scan(&secs); err != nil {
		return claims, -1, err
	}
	if secs == nil {
		return claims, -1, nil
	}
	return claims, max(time.Duration(*secs*float64(time.Second)), 0), nil
}

// readError is a database error while reading a build's events for its
// handling: the database's failure, not the handler's.
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }
func (e readError) Unwrap() error { return e.err }

var (
	errClaimLost    = errors.New("pgevents: the claim was taken over (its lease ran out)")
	errLeaseExpired = errors.New("pgevents: the claim's lease could not be renewed in time")
)

// handle runs the handler for one claim and records how it went.
func (r *feedRun) handle(base context.Context, c claim) {
	f := r.f
	log := f.logger.With(slog.String("feed", f.name), slog.String("build_id", c.build), slog.Int("attempt", c.attempts))
	ctx, cancel := context.WithCancelCause(base)
	defer cancel(nil)
	var inTx atomic.Bool
	stopLease := r.keepLease(ctx, cancel, c, &inTx)
	comp, until, err := r.load(ctx, c)
	var unreadable readError
	switch {
	case err == nil && !until.IsZero():
		stopLease()
		r.record(log, c, feedPostpone, until)
		return
	case errors.As(err, &unreadable) && ctx.Err() == nil:
		// The database failed, not the handler, which did not run: try
		// again later without spending one of the build's attempts, so
		// that a database blip cannot park it as a dead letter.
		stopLease()
		log.LogAttrs(context.Background(), slog.LevelWarn, "pgevents: could not read the build's events; trying again without counting an attempt",
			slog.Duration("wait", f.backoffMin), slog.String("error", err.Error()))
		r.record(log, c, feedPostpone, time.Now().Add(f.backoffMin))
		return
	case err != nil:
		err = fmt.Errorf("pgevents: reading the build's events: %w", err)
	case f.txHandler != nil:
		err = r.runTx(ctx, c, comp, &inTx)
	default:
		err = r.call(log, func() error { return f.handler(ctx, comp) })
	}
	stopLease()
	cause := context.Cause(ctx)
	switch {
	case err == nil && f.txHandler != nil:
		return // recorded in the handler's transaction
	case err == nil:
		r.record(log, c, feedDone, time.Time{})
	case errors.Is(err, errClaimLost) || errors.Is(cause, errClaimLost) || errors.Is(cause, errLeaseExpired):
		log.LogAttrs(context.Background(), slog.LevelWarn, "pgevents: gave up a handling whose claim was lost; another replica runs it",
			slog.String("cause", fmt.Sprint(cause)), slog.String("error", err.Error()))
	case base.Err() != nil:
		r.record(log, c, feedRelease, time.Time{})
	default:
		log.LogAttrs(context.Background(), slog.LevelWarn, "pgevents: handler failed", slog.String("error", err.Error()))
		r.recordFailure(log, c, err)
	}
}

// call runs fn, turning a panic into an error.
func (r *feedRun) call(log *slog.Logger, fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			log.LogAttrs(context.Background(), slog.LevelError, "pgevents: handler panicked",
				slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())))
			err = fmt.Errorf("pgevents: the handler panicked: %v", p)
		}
	}()
	return fn()
}

const feedLockClaim = `SELECT true FROM sheen_build_completions
 WHERE feed = $1 AND build_id = $2 AND claim_token = $3::uuid AND state = 'running' FOR UPDATE`

// runTx runs the TxHandler in a transaction that holds the claim's row and
// records the build as done.
func (r *feedRun) runTx(ctx context.Context, c claim, comp Completion, inTx *atomic.Bool) error {
	f := r.f
	// While the transaction holds the row, no one else can claim it (claims
	// skip locked rows): the lease needs no renewing.
	inTx.Store(true)
	return pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		var ok bool
		if err := tx.QueryRow(ctx, feedLockClaim, f.name, c.build, c.token).Scan(&ok); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return errClaimLost
			}
			return err
		}
		log := f.logger.With(slog.String("feed", f.name), slog.String("build_id", c.build))
		if err := r.call(log, func() error { return f.txHandler(ctx, tx, comp) }); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, feedDone, f.name, c.build, c.token)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errClaimLost
		}
		return nil
	})
}

const feedRenew = `UPDATE sheen_build_completions SET claimed_until = clock_timestamp() + make_interval(secs => $4)
 WHERE feed = $1 AND build_id = $2 AND claim_token = $3::uuid AND state = 'running'`

// keepLease renews the claim every third of the lease until stopped, and
// cancels ctx when the claim is lost or its lease is about to run out
// unrenewed.
func (r *feedRun) keepLease(ctx context.Context, cancel context.CancelCauseFunc, c claim, inTx *atomic.Bool) (stop func()) {
	f := r.f
	stopCh, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		// Stop a tenth of the lease before the database would let
		// another replica take over.
		margin := f.lease / 10
		deadline := c.sent.Add(f.lease - margin)
		every := f.lease / 3
		t := time.NewTimer(every)
		defer t.Stop()
		for {
			select {
			case <-stopCh:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if inTx.Load() {
				return // the transaction's row lock holds the claim now
			}
			sent := time.Now()
			if !sent.Before(deadline) {
				cancel(errLeaseExpired)
				return
			}
			rctx, rcancel := context.WithDeadline(ctx, deadline)
			tag, err := f.pool.Exec(rctx, feedRenew, f.name, c.build, c.token, f.lease.Seconds())
			rcancel()
			switch {
			case err == nil && tag.RowsAffected() == 0:
				cancel(errClaimLost)
				return
			case err == nil:
				deadline = sent.Add(f.lease - margin)
				t.Reset(every)
			default:
				f.logger.LogAttrs(ctx, slog.LevelDebug, "pgevents: renewing a claim failed; retrying",
					slog.String("feed", f.name), slog.String("build_id", c.build), slog.String("error", err.Error()))
				t.Reset(min(every, max(time.Until(deadline), time.Millisecond), time.Second))
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(stopCh) })
		<-done
	}
}

const feedReadBuild = `SELECT ` + eventColumns + `
  FROM project_build_events
 WHERE build_id = $1 AND user_visible AND user_id IS NOT DISTINCT FROM NULLIF($2, '')::uuid
 ORDER BY id`

// load reads the build's events and makes its Completion, or says until
// when to wait for its metadata phase.
func (r *feedRun) load(ctx context.Context, c claim) (Completion, time.Time, error) {
	f := r.f
	rows, err := f.pool.Query(ctx, feedReadBuild, c.build, c.user)
	if err != nil {
		return Completion{}, time.Time{}, readError{err}
	}
	events, err := collectEvents(rows)
	if err != nil {
		return Completion{}, time.Time{}, readError{err}
	}
	res, ended, err := sheen.BuildOutcome(c.build, events)
	comp := Completion{
		Key:     "sheen-build-finished:" + f.name + ":" + c.build,
		Feed:    f.name,
		BuildID: c.build,
		UserID:  c.user,
		Attempt: c.attempts,
	}
	var failed *sheen.BuildFailedError
	switch {
	case errors.As(err, &failed):
		comp.Failure, comp.FinishedAt = failed, failed.Event.CreatedAt
		return comp, time.Time{}, nil
	case !ended || err != nil:
		return comp, time.Time{}, fmt.Errorf("the events of build %s no longer show how it ended (event %d is gone)", c.build, c.eventID)
	}
	comp.FinishedAt = res.Final.CreatedAt
	if f.metaWait > 0 && !res.MetadataDone {
		start := res.Final.CreatedAt
		if start.IsZero() || start.After(c.dbNow) {
			start = c.discovered // created_at is not UTC, or missing
		}
		if until := start.Add(f.metadataWait(events)); c.dbNow.Before(until) {
			return comp, until, nil
		}
	}
	comp.Result = res
	return comp, time.Time{}, nil
}

// metadataWait is how long after a deploy the feed waits for the metadata
// phase, as Wait does: the wait, or the start wait while no metadata event
// has shown up.
func (f *Feed) metadataWait(events []sheen.BuildEvent) time.Duration {
	if slices.ContainsFunc(events, func(e sheen.BuildEvent) bool { return e.Phase == sheen.PhaseMetadata }) {
		return f.metaWait
	}
	return min(f.metaWait, f.metaStartWait)
}

// Recording statements, fenced by the claim's token: a claim that was
// taken over records nothing.
const (
	feedDone = `UPDATE sheen_build_completions
   SET state = 'done', done_at = clock_timestamp(), claim_token = NULL, claimed_by = NULL, claimed_until = NULL, last_error = NULL
 WHERE feed = $1 AND build_id = $2 AND claim_token = $3::uuid AND state = 'running'`
	feedRelease = `UPDATE sheen_build_completions
   SET state = 'pending', attempts = GREATEST(attempts - 1, 0), next_attempt_at = clock_timestamp(),
       claim_token = NULL, claimed_by = NULL, claimed_until = NULL
 WHERE feed = $1 AND build_id = $2 AND claim_token = $3::uuid AND state = 'running'`
	feedPostpone = `UPDATE sheen_build_completions
   SET state = 'pending', attempts = GREATEST(attempts - 1, 0), next_attempt_at = $4,
       claim_token = NULL, claimed_by = NULL, claimed_until = NULL
 WHERE feed = $1 AND build_id = $2 AND claim_token = $3::uuid AND state = 'running'`
	feedFailed = `UPDATE sheen_build_completions
   SET state = CASE WHEN attempts >= $4 THEN 'dead' ELSE 'pending' END,
       next_attempt_at = clock_timestamp() + make_interval(secs => $5), last_error = $6,
       claim_token = NULL, claimed_by = NULL, claimed_until = NULL
 WHERE feed = $1 AND build_id = $2 AND claim_token = $3::uuid AND state = 'running'
RETURNING state`
)

// record runs a recording statement, retrying while the database is
// unreachable for up to a lease: after that the lease has run out and
// another replica takes the build over anyway.
func (r *feedRun) record(log *slog.Logger, c claim, sql string, until time.Time) {
	f := r.f
	args := []any{f.name, c.build, c.token}
	if sql == feedPostpone {
		args = append(args, until)
	}
	err := r.retry(func(ctx context.Context) error {
		tag, err := f.pool.Exec(ctx, sql, args...)
		if err == nil && tag.RowsAffected() == 0 {
			log.LogAttrs(ctx, slog.LevelWarn, "pgevents: the claim was taken over before its result was recorded; the build is handled again")
		}
		return err
	})
	if err != nil {
		log.LogAttrs(context.Background(), slog.LevelWarn, "pgevents: could not record a handling; its lease will run out and it is handled again",
			slog.String("error", err.Error()))
	}
}

func (r *feedRun) recordFailure(log *slog.Logger, c claim, herr error) {
	f := r.f
	wait := f.backoffMin
	for i := 1; i < c.attempts && wait < f.backoffMax; i++ {
		wait *= 2
	}
	wait = min(wait, f.backoffMax)
	msg := herr.Error()
	if len(msg) > 2000 {
		msg = msg[:2000]
	}
	msg = strings.ToValidUTF8(msg, "?")
	err := r.retry(func(ctx context.Context) error {
		var state string
		err := f.pool.QueryRow(ctx, feedFailed, f.name, c.build, c.token, f.maxAttempts, wait.Seconds(), msg).Scan(&state)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			log.LogAttrs(ctx, slog.LevelWarn, "pgevents: the claim was taken over before its failure was recorded")
			return nil
		case err != nil:
			return err
		case state == "dead":
			log.LogAttrs(ctx, slog.LevelError, "pgevents: handler failed on every attempt; parked as a dead letter",
				slog.Int("attempts", c.attempts), slog.String("error", msg))
		default:
			log.LogAttrs(ctx, slog.LevelInfo, "pgevents: handler will run again", slog.Duration("wait", wait))
		}
		return nil
	})
	if err != nil {
		log.LogAttrs(context.Background(), slog.LevelWarn, "pgevents: could not record a failed handling; its lease will run out and it is handled again",
			slog.String("error", err.Error()))
	}
}

// retry runs fn until it succeeds, fails for good, or a lease has passed.
func (r *feedRun) retry(fn func(context.Context) error) error {
	f := r.f
	ctx, cancel := context.WithTimeout(context.Background(), f.lease)
	defer cancel()
	delay := f.retryMin
	for {
		err := fn(ctx)
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		if sleep(ctx, delay) != nil {
			return err
		}
		delay = min(2*delay, f.retryMax)
	}
}

// DeadLetters lists the feed's completions whose handler failed on every
// attempt, oldest first.
func (f *Feed) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	if f == nil || f.pool == nil {
		return nil, errNoFeed
	}
	rows, err := f.pool.Query(ctx, `SELECT build_id, COALESCE(user_id::text, ''), outcome, event_id, attempts, COALESCE(last_error, ''),
	       discovered_at, COALESCE(last_attempt_at, discovered_at)
	  FROM sheen_build_completions WHERE feed = $1 AND state = 'dead' ORDER BY discovered_at, build_id`, f.name)
	if err != nil {
		return nil, fmt.Errorf("pgevents: listing dead letters of feed %s: %w", f.name, err)
	}
	letters, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DeadLetter, error) {
		var d DeadLetter
		err := row.Scan(&d.BuildID, &d.UserID, &d.Outcome, &d.EventID, &d.Attempts, &d.LastError, &d.DiscoveredAt, &d.LastAttemptAt)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgevents: listing dead letters of feed %s: %w", f.name, err)
	}
	return letters, nil
}

// Replay sends the dead letters of the given builds back to be handled
// (from attempt 1, with the same Completion.Key). No builds means none: an
// empty list replays nothing and returns 0; ReplayAll replays every dead
// letter. It returns how many it sent back; a build that is not a dead
// letter of the feed is skipped.
func (f *Feed) Replay(ctx context.Context, buildIDs ...string) (int64, error) {
	if len(buildIDs) == 0 {
		if f == nil || f.pool == nil {
			return 0, errNoFeed
		}
		return 0, nil
	}
	return f.replay(ctx, buildIDs)
}

// ReplayAll sends every dead letter of the feed back to be handled, as
// Replay does the given ones, and returns how many it sent back.
func (f *Feed) ReplayAll(ctx context.Context) (int64, error) {
	return f.replay(ctx, nil)
}

// replay sends back the dead letters of buildIDs, or every one for nil.
func (f *Feed) replay(ctx context.Context, buildIDs []string) (int64, error) {
	if f == nil || f.pool == nil {
		return 0, errNoFeed
	}
	all := buildIDs == nil
	var n int64
	err := pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE sheen_build_completions
		   SET state = 'pending', attempts = 0, next_attempt_at = clock_timestamp(), last_error = NULL
		 WHERE feed = $1 AND state = 'dead' AND ($2 OR build_id = ANY($3::text[]))`, f.name, all, append([]string{}, buildIDs...))
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		if n > 0 {
			_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, CompletionsChannel, f.name)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("pgevents: replaying dead letters of feed %s: %w", f.name, err)
	}
	return n, nil
}

// String describes the feed for logs.
func (f *Feed) String() string {
	if f == nil {
		return "pgevents.Feed(nil)"
	}
	return "pgevents.Feed(" + strconv.Quote(f.name) + ")"
}
