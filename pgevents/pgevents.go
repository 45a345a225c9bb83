// Package pgevents reads build events straight from the worker's Postgres
// table project_build_events, for services that can reach that database and
// would rather not spend the worker's HTTP quota following builds. Its Feed
// runs a handler once for every build that finishes (see Feed).
//
// A Source plugs into the SDK where the worker's HTTP endpoint would be:
//
//	pool, _ := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
//	src := pgevents.New(pool)
//	res, err := client.Builds.Wait(ctx, buildID, userID, &sheen.FollowOptions{Source: src})
//
// (or sheen.WithBuildEventSource(src) for every call of a client). It yields
// the same sheen.BuildEvent values as the HTTP endpoint, from clean rows and
// legacy event_data rows alike, and only the user_visible rows of the given
// user. A build's rows are read with one index-friendly query (build_id,
// user_id, user_visible, id > cursor, ORDER BY id, LIMIT page size) that the
// table's idx_build_events_polling index answers. It needs PostgreSQL 13 or
// later.
//
// # Notifications and cost
//
// Install the trigger this package ships (InstallNotifyTrigger, or run
// NotifyTriggerSQL in a migration) and readers are woken by a NOTIFY as soon
// as an event of their build commits. A Source holds one listening
// connection (taken out of the pool) while anyone follows a build through
// it, and reconnects with backoff when that connection drops.
//
// A Source reads what is new in the table for all its readers at once, with
// one query on the primary key, and a reader queries its build's rows only
// when that showed rows of its build. While the listening connection is up
// and the trigger installed, nothing new means nothing to read: readers
// that wake up on their poll interval are answered without a query, and the
// shared look at the table is repeated only every WithSafetyInterval (10 s)
// as a safety net. Following 1,000 idle builds then costs what following 10
// does. Without notifications (no trigger, WithoutNotifications, the
// listening connection down), readers poll at their interval, and their
// polls share one look at the table at most every 100 ms.
//
// # Outages
//
// The cursor lives in the reader, and a fetch is a pure read: when a
// connection dies mid-query (a restart, pg_terminate_backend), the fetch is
// retried on another connection from the same cursor, so no event is lost
// or delivered twice. While the database is unreachable, FetchEvents keeps
// trying with backoff (20 ms doubling to 1 s, one attempt per Source at a
// time) for WithOutageTolerance (5 minutes), or until its context ends, so
// a crash and restart of the database only delays Follow and Wait. Errors
// that a retry cannot fix (a missing table, a refused password) end the
// fetch at once.
//
// # Out-of-order commits
//
// Ids come from a sequence when rows are inserted, so a transaction can
// commit a smaller id after another committed a larger one. A Source never
// hands out a row while a smaller id might still commit: it delivers rows
// only up to the first gap in the ids, until the gap fills or can no longer
// fill (every transaction that was running when it was seen has ended, the
// case of a rolled-back insert, about 100 ms after it is seen), or its
// WithGapGrace (30 s) has passed. Every row is therefore delivered exactly
// once, in id order, however the worker's transactions interleave, unless a
// transaction keeps a row uncommitted for longer than the grace period
// while another transaction has committed a larger id. The ids must come
// from the table's own sequence with its default cache of 1 (as SERIAL
// makes it), and created_at is read as UTC.
//
// # Acting on finished builds
//
// A Feed runs a handler once for every build that finishes, across the
// replicas of a service and their restarts, with Postgres as the only
// coordinator: builds that finished while no replica ran are handled when
// one starts, a replica that dies mid-handler has its build taken over, and
// failing handlers are retried and then parked as dead letters. See Feed
// for the exact guarantee and InstallFeed for its tables.
package pgevents

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	sheen "github.com/sheenapps/sheen-go"
)

// NotifyTriggerSQL installs the NOTIFY trigger on project_build_events: a
// function sheen_notify_build_event and a trigger sheen_build_events_notify
// that, after each insert of a user-visible row, notifies Channel with the
// row's build_id. It can be run again safely.
//
//go:embed notify.sql
var NotifyTriggerSQL string

// uninstallSQL removes what NotifyTriggerSQL installs.
const uninstallSQL = `DROP TRIGGER IF EXISTS sheen_build_events_notify ON project_build_events;
DROP FUNCTION IF EXISTS sheen_notify_build_event();`

// Channel is the notification channel the trigger notifies.
const Channel = "sheen_build_events"

// DefaultPageSize is how many rows one fetch reads at most.
const DefaultPageSize = 500

// DefaultOutageTolerance is how long, by default, a fetch keeps trying
// while the database is unreachable.
const DefaultOutageTolerance = 5 * time.Minute

// DefaultSafetyInterval is how often, by default, a Source looks at the
// table for new rows while notifications work and nothing was notified.
const DefaultSafetyInterval = 10 * time.Second

// DefaultGapGrace is how long, by default, a gap in the ids is waited for
// while a transaction that may fill it is still running.
const DefaultGapGrace = 30 * time.Second

const (
	// gapSettle is how long after a gap is seen the running transactions
	// are judged: longer than a transaction takes from its sequence call
	// to its first write.
	gapSettle = 100 * time.Millisecond
	// pollStaleness is how old a look at the table may be for a reader
	// that cannot count on notifications.
	pollStaleness = 100 * time.Millisecond
	// defaultGapWait is how long a fetch waits for a gap in front of its
	// build's rows before returning what it has.
	defaultGapWait = time.Second
	// gapRecheck is how often a gap is looked at again while fetches wait.
	gapRecheck = 50 * time.Millisecond
	// scanPage is how many new ids one look at the table reads at most.
	scanPage = 10000
)

// Execer runs SQL: a *pgxpool.Pool, *pgx.Conn or pgx.Tx.
type Execer interface {
	Exec(ctx context.Context, sql string, arguments ...any) (pgconn.CommandTag, error)
}

// InstallNotifyTrigger installs (or reinstalls) the NOTIFY trigger; see
// NotifyTriggerSQL. It needs the right to create functions and triggers on
// the table.
func InstallNotifyTrigger(ctx context.Context, db Execer) error {
	if db == nil {
		return errors.New("pgevents: installing the notify trigger: no database")
	}
	if _, err := db.Exec(ctx, NotifyTriggerSQL); err != nil {
		return fmt.Errorf("pgevents: installing the notify trigger: %w", err)
	}
	return nil
}

// UninstallNotifyTrigger removes the NOTIFY trigger and its function.
func UninstallNotifyTrigger(ctx context.Context, db Execer) error {
	if db == nil {
		return errors.New("pgevents: removing the notify trigger: no database")
	}
	if _, err := db.Exec(ctx, uninstallSQL); err != nil {
		return fmt.Errorf("pgevents: removing the notify trigger: %w", err)
	}
	return nil
}

// Option configures a Source.
type Option func(*Source)

// WithPageSize sets how many rows one fetch reads at most (default 500).
// A full page makes the reader fetch again at once.
func WithPageSize(n int) Option {
	return func(s *Source) {
		if n > 0 {
			s.pageSize = n
		}
	}
}

// WithOutageTolerance sets how long a fetch keeps trying while the database
// is unreachable before it returns an error (default 5 minutes); a negative
// d means until the fetch's context ends. Errors that a retry cannot fix (a
// missing table, a bad user id) are returned at once.
func WithOutageTolerance(d time.Duration) Option {
	return func(s *Source) {
		if d != 0 {
			s.outage = d
		}
	}
}

// WithSafetyInterval sets how often a Source looks at the table for new
// rows while notifications work and none came (default 10 s): the bound on
// how late an event can be if a notification were lost anyway.
func WithSafetyInterval(d time.Duration) Option {
	return func(s *Source) {
		if d > 0 {
			s.safety = d
		}
	}
}

// WithGapGrace sets how long a gap in the ids is waited for while a
// transaction that may fill it is still running (default 30 s). Rows after
// the gap wait with it, in every build; a row committed after its gap was
// given up is not delivered. Gaps that can no longer fill are passed about
// 100 ms after they are seen, whatever the grace.
func WithGapGrace(d time.Duration) Option {
	return func(s *Source) {
		if d > 0 {
			s.gaps.grace = max(d, s.gaps.settle)
		}
	}
}

// WithoutNotifications makes the Source never listen: readers poll only.
// For databases where the trigger is not installed, or to compare.
func WithoutNotifications() Option {
	return func(s *Source) { s.noNotify = true }
}

// WithLogger sets where the Source reports dropped connections and retries
// (default: nowhere).
func WithLogger(l *slog.Logger) Option {
	return func(s *Source) {
		if l != nil {
			s.logger = l
		}
	}
}

// Source reads build events from project_build_events through a pgx pool.
// It implements sheen.EventSource and sheen.EventNotifier, and is safe for
// concurrent use by any number of readers. Make one with New; the zero
// value returns errors.
type Source struct {
	pool     *pgxpool.Pool
	pageSize int
	outage   time.Duration
	safety   time.Duration
	noNotify bool
	logger   *slog.Logger
	gaps     gapPolicy

	retryMin, retryMax time.Duration
	gapWait            time.Duration

	refreshSem chan struct{} // one look at the table at a time

	mu       sync.Mutex
	builds   map[string]*buildState // followed builds
	nsubs    int
	listener *listenerRun
	// listenSince is when the current listening connection started to
	// listen with the trigger installed; zero while notifications cannot be
	// counted on.
	listenSince time.Time
	hz          horizonState
}

var (
	_ sheen.EventSource   = (*Source)(nil)
	_ sheen.EventNotifier = (*Source)(nil)
)

// errNoPool is what the methods of a Source not made by New return.
var errNoPool = errors.New("pgevents: the Source has no pool; make it with pgevents.New")

// New returns a Source reading through pool. The pool stays the caller's:
// close it after the last reader has stopped. A nil pool gives a Source
// whose fetches fail.
func New(pool *pgxpool.Pool, opts ...Option) *Source {
	s := &Source{
		pool:       pool,
		pageSize:   DefaultPageSize,
		outage:     DefaultOutageTolerance,
		safety:     DefaultSafetyInterval,
		logger:     slog.New(slog.DiscardHandler),
		gaps:       gapPolicy{settle: gapSettle, grace: DefaultGapGrace},
		retryMin:   20 * time.Millisecond,
		retryMax:   time.Second,
		gapWait:    defaultGapWait,
		refreshSem: make(chan struct{}, 1),
		builds:     make(map[string]*buildState),
	}
	s.hz.changed = make(chan struct{})
	for _, o := range opts {
		o(s)
	}
	return s
}

// usable reports whether s was made by New with a pool.
func (s *Source) usable() bool { return s != nil && s.pool != nil && s.refreshSem != nil }

// selectEvents is answered by idx_build_events_polling (build_id, user_id,
// user_visible, id) WHERE user_visible, in index order.
const selectEvents = `SELECT ` + eventColumns + `
  FROM project_build_events
 WHERE build_id = $1 AND user_id = $2 AND user_visible AND id > $3
 ORDER BY id
 LIMIT $4`

// eventColumns are the columns scanRow reads, in its order.
const eventColumns = `id, build_id, event_type, event_data, user_id::text, created_at,
       event_phase, event_title, event_description, overall_progress::float8, finished,
       preview_url, error_code, error_params, user_error_message, event_code, event_params,
       duration_seconds::float8, version_id, version_name`

// FetchEvents implements sheen.EventSource: the user_visible events of
// buildID for userID (a UUID) with id > after, in id order, at most a page;
// more is true when the page is full, or when rows of the build wait behind
// a gap in the ids (see the package documentation).
func (s *Source) FetchEvents(ctx context.Context, buildID, userID string, after int64) ([]sheen.BuildEvent, bool, error) {
	if !s.usable() {
		return nil, false, errNoPool
	}
	if ctx == nil {
		return nil, false, errors.New("pgevents: context is nil")
	}
	if buildID == "" {
		return nil, false, errors.New("pgevents: build id is empty")
	}
	if _, err := uuid.Parse(userID); err != nil {
		return nil, false, fmt.Errorf("pgevents: user id %q is not a UUID (project_build_events.user_id is one)", userID)
	}
	delay := s.retryMin
	var down time.Time // when this fetch first failed to reach the database
	for attempt := 1; ; attempt++ {
		events, more, retryable, err := s.fetch(ctx, buildID, userID, after)
		if err == nil {
			batchEvent(ctx, events, more, attempt)
			return events, more, nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, false, fmt.Errorf("pgevents: reading events of build %s: %w", buildID, ctxErr)
		}
		if !retryable {
			return nil, false, fmt.Errorf("pgevents: reading events of build %s: %w", buildID, err)
		}
		now := time.Now()
		if down.IsZero() {
			down = now
		}
		if s.outage > 0 && now.Sub(down) >= s.outage {
			return nil, false, fmt.Errorf("pgevents: reading events of build %s: the database was unreachable for %s (%d attempts): %w",
				buildID, now.Sub(down).Round(time.Millisecond), attempt, err)
		}
		level := slog.LevelWarn
		if attempt > 3 {
			level = slog.LevelDebug // the listener and the first attempts said it already
		}
		s.logger.LogAttrs(ctx, level, "pgevents: fetch failed; retrying",
			slog.String("build_id", buildID), slog.Int("attempt", attempt), slog.Duration("wait", delay), slog.String("error", err.Error()))
		if err := sleep(ctx, delay); err != nil {
			return nil, false, fmt.Errorf("pgevents: reading events of build %s: %w", buildID, err)
		}
		delay = min(delay*2, s.retryMax)
	}
}

// fetch is one try of FetchEvents: a look at the table when the last one is
// too old for this reader, then the build's rows when that look showed some
// (or the build is not followed), up to the settled horizon. When rows of
// the build wait behind a gap and none could be delivered, it waits up to
// s.gapWait for the gap. retryable says a failure was the connection's.
func (s *Source) fetch(ctx context.Context, buildID, userID string, after int64) (_ []sheen.BuildEvent, more, retryable bool, _ error) {
	start := time.Now()
	waitUntil := start.Add(s.gapWait)
	target := s.target(buildID, start)
	looked := false // a look at the table that started after the rows were read
	for {
		if retryable, err := s.refresh(ctx, target); err != nil {
			return nil, false, retryable, err
		}
		s.mu.Lock()
		h := s.hz.st.h
		changed := s.hz.changed
		bs := s.builds[buildID]
		skip := false
		if bs != nil {
			hq, ok := bs.verified[verifyKey{userID, after}]
			skip = ok && hq >= bs.knownFrom && bs.lastRow <= hq
		}
		s.mu.Unlock()
		if skip {
			return nil, false, false, nil
		}
		rows, full, retryable, err := s.query(ctx, buildID, userID, after)
		if err != nil {
			return nil, false, retryable, err
		}
		n := 0
		for n < len(rows) && rows[n].ID <= h {
			n++
		}
		held := n < len(rows)
		deliver := rows[:n]
		next := after
		if n > 0 {
			next = deliver[n-1].ID
		}
		s.mu.Lock()
		if bs := s.builds[buildID]; bs != nil {
			delete(bs.verified, verifyKey{userID, after})
			if !full && !held {
				bs.verified[verifyKey{userID, next}] = h
			}
		}
		s.mu.Unlock()
		if n > 0 || !held {
			return deliver, full || held, false, nil
		}
		// Every row read is above the horizon. The first time, the look at
		// the table may just have been older than the rows: look again.
		// After that they wait behind a gap: wait for the horizon to move,
		// looking at the gap again now and then.
		now := time.Now()
		if !looked {
			looked, target = true, now
			continue
		}
		if !now.Before(waitUntil) {
			return nil, true, false, nil // rows still wait behind the gap
		}
		t := time.NewTimer(min(gapRecheck, waitUntil.Sub(now)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false, false, ctx.Err()
		case <-changed:
		case <-t.C:
		}
		t.Stop()
		target = time.Now().Add(-gapRecheck)
	}
}

// target is how recent a look at the table must be for a reader of buildID
// that started at start: with notifications working for a followed build,
// the last look needs to follow only its latest notification, the start of
// listening and the safety interval; else it may be pollStaleness old.
func (s *Source) target(buildID string, start time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	bs := s.builds[buildID]
	if bs == nil || s.listenSince.IsZero() {
		return start.Add(-pollStaleness)
	}
	t := start.Add(-s.safety)
	if s.listenSince.After(t) {
		t = s.listenSince
	}
	if bs.notified.After(t) {
		t = bs.notified
	}
	return t
}

// query reads the rows of buildID for userID after the cursor, a page at
// most; full says the page was full.
func (s *Source) query(ctx context.Context, buildID, userID string, after int64) (_ []sheen.BuildEvent, full, retryable bool, _ error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, transient(err), err
	}
	defer conn.Release()
	rows, err := conn.Query(ctx, selectEvents, buildID, userID, after, s.pageSize)
	if err != nil {
		return nil, false, conn.Conn().IsClosed() || transient(err), err
	}
	events, err := collectEvents(rows)
	if err != nil {
		return nil, false, conn.Conn().IsClosed() || transient(err), err
	}
	return events, len(events) >= s.pageSize, false, nil
}

// collectEvents reads rows of eventColumns and closes them.
func collectEvents(rows pgx.Rows) ([]sheen.BuildEvent, error) {
	defer rows.Close()
	events := make([]sheen.BuildEvent, 0, 16)
	for rows.Next() {
		ev, err := scanRow(rows)
		if err != nil {
			return nil, err
		}
		events = append(events, ev)
	}
	return events, rows.Err()
}

// scanRow reads one row of eventColumns.
func scanRow(row pgx.Row) (sheen.BuildEvent, error) {
	var (
		r                                      sheen.EventRow
		data, errParams, params                []byte
		user, phase, title, desc, preview      *string
		errCode, userMsg, code, verID, verName *string
		progress, duration                     *float64
		finished                               *bool
	)
	if err := row.Scan(&r.ID, &r.BuildID, &r.EventType, &data, &user, &r.CreatedAt,
		&phase, &title, &desc, &progress, &finished,
		&preview, &errCode, &errParams, &userMsg, &code, &params,
		&duration, &verID, &verName); err != nil {
		return sheen.BuildEvent{}, err
	}
	r.EventData, r.ErrorParams, r.EventParams = data, errParams, params
	r.UserID, r.EventPhase, r.EventTitle, r.EventDescription = deref(user), deref(phase), deref(title), deref(desc)
	r.PreviewURL, r.ErrorCode, r.UserErrorMessage, r.EventCode = deref(preview), deref(errCode), deref(userMsg), deref(code)
	r.VersionID, r.VersionName = deref(verID), deref(verName)
	r.OverallProgress, r.DurationSeconds = progress, duration
	r.Finished = finished != nil && *finished
	return r.Event(), nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// transient reports errors that another attempt, on another connection,
// may not meet: the server going away, connections refused or reset.
func transient(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", // admin_shutdown (pg_terminate_backend, a fast shutdown)
			pgErr.Code == "57P02", // crash_shutdown
			pgErr.Code == "57P03", // cannot_connect_now (starting up, recovering)
			pgErr.Code == "53300", // too_many_connections
			pgErr.Code == "40001", // serialization_failure
			pgErr.Code == "40P01": // deadlock_detected
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err)
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
