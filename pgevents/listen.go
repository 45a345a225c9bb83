package pgevents

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// buildState is what a Source knows about a followed build.
type buildState struct {
	subs map[*subscriber]struct{}
	// knownFrom is the Source's base when the build started to be
	// followed: lastRow counts the build's rows above it.
	knownFrom int64
	// lastRow is the largest id of the build's rows the Source has seen
	// in its looks at the table (any user, visible or not).
	lastRow int64
	// notified is when the latest notification for the build came.
	notified time.Time
	// verified maps a reader's user and cursor to the horizon a query of
	// that reader covered with nothing left over: while lastRow stays at
	// or below it, a fetch from that cursor has nothing to read.
	verified map[verifyKey]int64
}

type verifyKey struct {
	user   string
	cursor int64
}

func (bs *buildState) wake() {
	for sub := range bs.subs {
		sub.wake()
	}
}

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

// Listening reports whether readers can count on notifications: the Source
// holds a connection that LISTENs (only while someone follows a build) and
// the trigger is installed.
func (s *Source) Listening() bool {
	if !s.usable() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.listenSince.IsZero()
}

// Subscribe implements sheen.EventNotifier: the channel receives when an
// event of buildID may have committed (a notification, or the Source's own
// look at the table found rows of the build). The first subscription starts
// the Source's listening connection, the last stop ends it.
func (s *Source) Subscribe(_ context.Context, buildID string) (<-chan struct{}, func()) {
	if !s.usable() {
		return nil, func() {}
	}
	sub := &subscriber{ch: make(chan struct{}, 1)}
	s.mu.Lock()
	bs := s.builds[buildID]
	if bs == nil {
		bs = &buildState{subs: make(map[*subscriber]struct{}), knownFrom: s.hz.base(), verified: make(map[verifyKey]int64)}
		s.builds[buildID] = bs
	}
	bs.subs[sub] = struct{}{}
	s.nsubs++
	if s.listener == nil && !s.noNotify {
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
	if bs := s.builds[buildID]; bs != nil {
		delete(bs.subs, sub)
		if len(bs.subs) == 0 {
			delete(s.builds, buildID)
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

// notified records a notification for buildID and wakes its readers.
func (s *Source) notified(buildID string) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if bs := s.builds[buildID]; bs != nil {
		bs.notified = now
		bs.wake()
	}
}

// setListening records whether notifications can be counted on, and wakes
// every reader when that changes: notifications may have been missed.
func (s *Source) setListening(ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok == !s.listenSince.IsZero() {
		return
	}
	if ok {
		s.listenSince = time.Now()
	} else {
		s.listenSince = time.Time{}
	}
	for _, bs := range s.builds {
		bs.wake()
	}
}

// listen keeps a LISTEN connection up until ctx ends, reconnecting with
// backoff.
func (s *Source) listen(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	keepListening(ctx, s.retryMin, s.retryMax, s.listenOnce, func(level slog.Level, wait time.Duration, err error) {
		s.logger.LogAttrs(ctx, level, "pgevents: listening connection lost; readers poll until it is back",
			slog.Duration("wait", wait), slog.String("error", err.Error()))
	})
}

// keepListening runs once (a LISTEN connection's life) until ctx ends,
// again after every failure, waiting from retryMin, doubling up to
// retryMax, and starting over from retryMin after a connection that was
// established. lost hears of each failure and the wait after it, at Warn
// for the first of an outage and Debug for the rest (said once per outage).
func keepListening(ctx context.Context, retryMin, retryMax time.Duration,
	once func(context.Context) (established bool, err error),
	lost func(level slog.Level, wait time.Duration, err error)) {
	delay, failures := retryMin, 0
	for {
		established, err := once(ctx)
		if ctx.Err() != nil {
			return
		}
		if established {
			delay, failures = retryMin, 0
		}
		failures++
		level := slog.LevelWarn
		if failures > 1 {
			level = slog.LevelDebug
		}
		lost(level, delay, err)
		if sleep(ctx, delay) != nil {
			return
		}
		delay = min(2*delay, retryMax)
	}
}

// triggerInstalled asks whether the notify trigger is there and enabled.
const triggerInstalled = `SELECT EXISTS (SELECT 1 FROM pg_trigger
 WHERE tgname = 'sheen_build_events_notify' AND tgrelid = to_regclass('project_build_events') AND tgenabled <> 'D')`

// listenOnce takes a connection out of the pool, LISTENs and hands
// notifications to subscribers until the connection fails or ctx ends.
// Every safety interval without a notification, it checks the connection
// and the trigger with a query.
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
	defer s.setListening(false)
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{Channel}.Sanitize()); err != nil {
		return false, err
	}
	for {
		var ok bool
		if err := conn.QueryRow(ctx, triggerInstalled).Scan(&ok); err != nil {
			return true, err
		}
		if !ok {
			s.logger.LogAttrs(ctx, slog.LevelDebug, "pgevents: the notify trigger is not installed; readers poll")
		}
		// Events committed before LISTEN took effect sent no notification
		// we could hear: setListening wakes every reader to look.
		s.setListening(ok)
		for {
			waitCtx, cancel := context.WithTimeout(ctx, s.safety)
			n, err := conn.WaitForNotification(waitCtx)
			cancel()
			if err == nil {
				s.notified(n.Payload)
				continue
			}
			if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) || conn.IsClosed() {
				return true, err
			}
			break // quiet for a safety interval: check the connection
		}
	}
}
