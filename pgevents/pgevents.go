// Package pgevents reads build events straight from the worker's Postgres
// table project_build_events, for services that can reach that database and
// would rather not spend the worker's HTTP quota following builds.
//
// A Source plugs into the SDK where the worker's HTTP endpoint would be:
//
//	pool, _ := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
//	src := pgevents.New(pool)
//	res, err := client.Builds.Wait(ctx, buildID, userID, sheen.WithEventSource(src))
//
// (or sheen.WithBuildEventSource(src) for every call of a client). It yields
// the same sheen.BuildEvent values as the HTTP endpoint, from clean rows and
// legacy event_data rows alike, and only the user_visible rows of the given
// user. Each fetch is one index-friendly query (build_id, user_id,
// user_visible, id > cursor, ORDER BY id, LIMIT page size) that the table's
// idx_build_events_polling index answers.
//
// # Notifications
//
// By itself a Source is polled at the reader's interval (1 to 3 s by phase).
// Install the trigger this package ships (InstallNotifyTrigger, or run
// NotifyTriggerSQL in a migration) and readers are woken by a NOTIFY as soon
// as an event of their build commits. A Source holds one listening
// connection (taken out of the pool) while anyone follows a build through
// it, and reconnects with backoff when that connection drops. Readers keep
// polling all the while, so without the trigger, or while the listening
// connection is down, events still arrive, only later.
//
// # Dropped connections
//
// The cursor lives in the reader, and a fetch is a pure read: when a
// connection dies mid-query (a restart, pg_terminate_backend), the fetch is
// retried on another connection from the same cursor, so no event is lost
// or delivered twice.
//
// Events of one build must be committed in id order, as the worker writes
// them (one after the other); a row committed after a row with a larger id
// of the same build would be behind the cursor already.
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
	"sync/atomic"
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

// DefaultFetchAttempts is how many times a fetch is tried when connections
// fail under it.
const DefaultFetchAttempts = 10

// Execer runs SQL: a *pgxpool.Pool, *pgx.Conn or pgx.Tx.
type Execer interface {
	Exec(ctx context.Context, sql string, arguments ...any) (pgconn.CommandTag, error)
}

// InstallNotifyTrigger installs (or reinstalls) the NOTIFY trigger; see
// NotifyTriggerSQL. It needs the right to create functions and triggers on
// the table.
func InstallNotifyTrigger(ctx context.Context, db Execer) error {
	if _, err := db.Exec(ctx, NotifyTriggerSQL); err != nil {
		return fmt.Errorf("pgevents: installing the notify trigger: %w", err)
	}
	return nil
}

// UninstallNotifyTrigger removes the NOTIFY trigger and its function.
func UninstallNotifyTrigger(ctx context.Context, db Execer) error {
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

// WithFetchAttempts sets how many times a fetch is tried when its
// connection fails (default 10, about 4 s of backoff in all); errors that a
// retry cannot fix (a missing table, a bad user id) are returned at once.
func WithFetchAttempts(n int) Option {
	return func(s *Source) {
		if n > 0 {
			s.attempts = n
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
// concurrent use by any number of readers.
type Source struct {
	pool     *pgxpool.Pool
	pageSize int
	attempts int
	noNotify bool
	logger   *slog.Logger

	retryMin, retryMax time.Duration

	mu       sync.Mutex
	subs     map[string]map[*subscriber]struct{}
	nsubs    int
	listener *listenerRun

	listening atomic.Bool
}

var (
	_ sheen.EventSource   = (*Source)(nil)
	_ sheen.EventNotifier = (*Source)(nil)
)

// New returns a Source reading through pool. The pool stays the caller's:
// close it after the last reader has stopped.
func New(pool *pgxpool.Pool, opts ...Option) *Source {
	s := &Source{
		pool:     pool,
		pageSize: DefaultPageSize,
		attempts: DefaultFetchAttempts,
		logger:   slog.New(slog.DiscardHandler),
		retryMin: 20 * time.Millisecond,
		retryMax: time.Second,
		subs:     make(map[string]map[*subscriber]struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// selectEvents is answered by idx_build_events_polling (build_id, user_id,
// user_visible, id) WHERE user_visible, in index order.
const selectEvents = `SELECT id, build_id, event_type, event_data, user_id::text, created_at,
       event_phase, event_title, event_description, overall_progress::float8, finished,
       preview_url, error_code, error_params, user_error_message, event_code, event_params,
       duration_seconds::float8, version_id, version_name
  FROM project_build_events
 WHERE build_id = $1 AND user_id = $2 AND user_visible AND id > $3
 ORDER BY id
 LIMIT $4`

// FetchEvents implements sheen.EventSource: the user_visible events of
// buildID for userID (a UUID) with id > after, in id order, at most a page;
// more is true when the page is full.
func (s *Source) FetchEvents(ctx context.Context, buildID, userID string, after int64) ([]sheen.BuildEvent, bool, error) {
	if buildID == "" {
		return nil, false, errors.New("pgevents: build id is empty")
	}
	if _, err := uuid.Parse(userID); err != nil {
		return nil, false, fmt.Errorf("pgevents: user id %q is not a UUID (project_build_events.user_id is one)", userID)
	}
	delay := s.retryMin
	var last error
	for attempt := 1; ; attempt++ {
		events, retryable, err := s.fetchOnce(ctx, buildID, userID, after)
		if err == nil {
			return events, len(events) >= s.pageSize, nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, false, fmt.Errorf("pgevents: reading events of build %s: %w", buildID, ctxErr)
		}
		if !retryable {
			return nil, false, fmt.Errorf("pgevents: reading events of build %s: %w", buildID, err)
		}
		last = err
		if attempt >= s.attempts {
			return nil, false, fmt.Errorf("pgevents: reading events of build %s: giving up after %d attempts: %w", buildID, attempt, last)
		}
		s.logger.LogAttrs(ctx, slog.LevelWarn, "pgevents: fetch failed; retrying",
			slog.String("build_id", buildID), slog.Int("attempt", attempt), slog.Duration("wait", delay), slog.String("error", err.Error()))
		if err := sleep(ctx, delay); err != nil {
			return nil, false, fmt.Errorf("pgevents: reading events of build %s: %w", buildID, err)
		}
		delay = min(delay*2, s.retryMax)
	}
}

// fetchOnce runs the query once; retryable says the failure was the
// connection's, not the query's.
func (s *Source) fetchOnce(ctx context.Context, buildID, userID string, after int64) ([]sheen.BuildEvent, bool, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, transient(err), err
	}
	defer conn.Release()
	rows, err := conn.Query(ctx, selectEvents, buildID, userID, after, s.pageSize)
	if err != nil {
		return nil, conn.Conn().IsClosed() || transient(err), err
	}
	events := make([]sheen.BuildEvent, 0, 16)
	for rows.Next() {
		var (
			r                                      sheen.EventRow
			data, errParams, params                []byte
			user, phase, title, desc, preview      *string
			errCode, userMsg, code, verID, verName *string
			progress, duration                     *float64
			finished                               *bool
		)
		if err := rows.Scan(&r.ID, &r.BuildID, &r.EventType, &data, &user, &r.CreatedAt,
			&phase, &title, &desc, &progress, &finished,
			&preview, &errCode, &errParams, &userMsg, &code, &params,
			&duration, &verID, &verName); err != nil {
			rows.Close()
			return nil, conn.Conn().IsClosed(), err
		}
		r.EventData, r.ErrorParams, r.EventParams = data, errParams, params
		r.UserID, r.EventPhase, r.EventTitle, r.EventDescription = deref(user), deref(phase), deref(title), deref(desc)
		r.PreviewURL, r.ErrorCode, r.UserErrorMessage, r.EventCode = deref(preview), deref(errCode), deref(userMsg), deref(code)
		r.VersionID, r.VersionName = deref(verID), deref(verName)
		r.OverallProgress, r.DurationSeconds = progress, duration
		r.Finished = finished != nil && *finished
		events = append(events, r.Event())
	}
	if err := rows.Err(); err != nil {
		return nil, conn.Conn().IsClosed() || transient(err), err
	}
	return events, false, nil
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
			pgErr.Code == "57P01", // admin_shutdown (pg_terminate_backend)
			pgErr.Code == "57P02", // crash_shutdown
			pgErr.Code == "57P03", // cannot_connect_now (starting up)
			pgErr.Code == "53300": // too_many_connections
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

// Listening reports whether the Source currently holds a connection that
// LISTENs for notifications (only while someone follows a build).
func (s *Source) Listening() bool { return s.listening.Load() }

type subscriber struct {
	ch chan struct{}
}

func (sub *subscriber) wake() {
	select {
	case sub.ch <- struct{}{}:
	default: // a wake is pending already; one fetch reads everything new
	}
}

type listenerRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Subscribe implements sheen.EventNotifier: the channel receives when an
// event of buildID may have committed. The first subscription starts the
// Source's listening connection, the last stop ends it.
func (s *Source) Subscribe(_ context.Context, buildID string) (<-chan struct{}, func()) {
	if s.noNotify {
		return nil, func() {}
	}
	sub := &subscriber{ch: make(chan struct{}, 1)}
	s.mu.Lock()
	set := s.subs[buildID]
	if set == nil {
		set = make(map[*subscriber]struct{})
		s.subs[buildID] = set
	}
	set[sub] = struct{}{}
	s.nsubs++
	if s.listener == nil {
		// The listener outlives the subscriber that started it, so it
		// does not run on that subscriber's context.
		ctx, cancel := context.WithCancel(context.Background())
		l := &listenerRun{cancel: cancel, done: make(chan struct{})}
		s.listener = l
		go s.listen(ctx, l.done)
	}
	s.mu.Unlock()
	var once sync.Once
	return sub.ch, func() { once.Do(func() { s.unsubscribe(buildID, sub) }) }
}

func (s *Source) unsubscribe(buildID string, sub *subscriber) {
	s.mu.Lock()
	if set := s.subs[buildID]; set != nil {
		delete(set, sub)
		if len(set) == 0 {
			delete(s.subs, buildID)
		}
	}
	s.nsubs--
	var l *listenerRun
	if s.nsubs == 0 {
		l, s.listener = s.listener, nil
	}
	s.mu.Unlock()
	if l != nil {
		l.cancel()
		<-l.done
	}
}

// wake wakes the subscribers of buildID.
func (s *Source) wake(buildID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.subs[buildID] {
		sub.wake()
	}
}

// wakeAll wakes every subscriber: after (re)connecting, notifications may
// have been missed.
func (s *Source) wakeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, set := range s.subs {
		for sub := range set {
			sub.wake()
		}
	}
}

// listen keeps a LISTEN connection up until ctx ends, reconnecting with
// backoff.
func (s *Source) listen(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	delay := s.retryMin
	for {
		established, err := s.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if established {
			delay = s.retryMin
		}
		s.logger.LogAttrs(ctx, slog.LevelWarn, "pgevents: listening connection lost; readers poll until it is back",
			slog.Duration("wait", delay), slog.String("error", err.Error()))
		s.wakeAll()
		if sleep(ctx, delay) != nil {
			return
		}
		delay = min(delay*2, s.retryMax)
	}
}

// listenOnce takes a connection out of the pool, LISTENs and hands
// notifications to subscribers until the connection fails or ctx ends.
func (s *Source) listenOnce(ctx context.Context) (established bool, err error) {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, err
	}
	conn := pc.Hijack()
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{Channel}.Sanitize()); err != nil {
		return false, err
	}
	s.listening.Store(true)
	defer s.listening.Store(false)
	// Events committed before LISTEN took effect sent no notification we
	// could hear: have every reader look now.
	s.wakeAll()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, err
		}
		s.wake(n.Payload)
	}
}
