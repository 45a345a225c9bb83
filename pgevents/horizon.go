package pgevents

import (
	"context"
	"time"
)

// Out-of-order commits.
//
// project_build_events.id comes from a sequence, which hands ids out when
// rows are inserted, not when their transactions commit. A transaction that
// took id 10 can commit after the one that took id 11, so a reader that
// moved its cursor to 11 would never see 10. Readers therefore only deliver
// rows up to the settled horizon: the largest id h such that every id up
// to h is either committed or will never be (its insert rolled back, or the
// sequence skipped it, as it does after a crash).
//
// The horizon moves over the ids that exist, in order. At the first missing
// id (a gap) it waits until one of these holds:
//
//   - the gap fills: the transaction that holds it commits;
//   - every transaction that could hold an id of the gap has ended, and the
//     gap is still empty: then it is permanent. Postgres says which
//     transactions are running (pg_current_snapshot): when the gap is seen,
//     every id in it was handed out already, and a transaction that took an
//     id has an xid a moment later (its first write follows the sequence
//     call within the same INSERT). So after a short settle time the gap's
//     holders all have xids below the snapshot's xmax; once the oldest
//     running xid (xmin) is at or past that xmax, they have all ended. A
//     rolled-back insert is therefore passed over about settle after it is
//     seen, not after the grace period;
//   - the grace period has passed since the gap was seen, whatever is
//     running (a write transaction that stays open that long anywhere in
//     the database holds the horizon back until then; a row committed after
//     its gap was given up is not delivered by cursor readers).

// gapPolicy is how long gaps are waited for.
type gapPolicy struct {
	settle time.Duration // before the running transactions are judged
	grace  time.Duration // after which a gap is given up
}

// settled is how far the ids are settled.
type settled struct {
	h       int64     // every id <= h is committed or never will be
	pending *gapCheck // the gap above h while it may still fill
}

// gapCheck is a gap being waited for.
type gapCheck struct {
	upTo int64     // every id <= upTo had been handed out when the gap was seen
	seen time.Time // when it was seen (no earlier than the snapshot that saw it)
	xmax int64     // 0 until settle has passed; then pg_snapshot_xmax at that check
}

// snapshotInfo is what one statement's snapshot said.
type snapshotInfo struct {
	xmin, xmax int64     // pg_snapshot_xmin and pg_snapshot_xmax
	sent       time.Time // no later than the snapshot was taken
	received   time.Time // no earlier than the snapshot was taken
}

// advance moves st over ids: the existing ids above st.h (ascending), as of
// snap or earlier snapshots. It returns the ids still above the horizon.
func (p gapPolicy) advance(st *settled, ids []int64, snap snapshotInfo) []int64 {
	for {
		ids = st.walk(ids)
		if st.pending != nil && st.h >= st.pending.upTo {
			st.pending = nil // the gap filled
		}
		if len(ids) == 0 && st.pending == nil {
			return nil
		}
		if st.pending == nil {
			st.pending = &gapCheck{upTo: ids[len(ids)-1], seen: snap.received}
		}
		if !p.resolve(st.pending, snap) {
			return ids
		}
		st.h, st.pending = max(st.h, st.pending.upTo), nil
	}
}

// walk moves h over the ids that follow it without a gap.
func (st *settled) walk(ids []int64) []int64 {
	i := 0
	for i < len(ids) && ids[i] <= st.h {
		i++
	}
	for i < len(ids) && ids[i] == st.h+1 {
		st.h++
		i++
	}
	return ids[i:]
}

// resolve reports whether gap g can no longer fill, as of snap.
func (p gapPolicy) resolve(g *gapCheck, snap snapshotInfo) bool {
	age := snap.sent.Sub(g.seen)
	if age >= p.grace {
		return true
	}
	if g.xmax == 0 {
		if age < p.settle {
			return false
		}
		g.xmax = snap.xmax
	}
	return snap.xmin >= g.xmax
}

// horizonState is a Source's knowledge of the table's ids, shared by all
// its readers.
type horizonState struct {
	inited  bool
	st      settled
	present []int64 // ids above the horizon that exist, ascending
	// floor is the largest id when the Source first looked: the ids up to
	// it are settled all at once (when the transactions running then have
	// ended), never looked at one by one.
	floor int64
	// refreshedAt is when the latest look at the table was sent: it saw
	// every row committed before then.
	refreshedAt time.Time
	changed     chan struct{} // closed, and replaced, when st.h moves

	// While the database is unreachable, looks fail fast with lastErr
	// until downUntil, so readers do not each knock.
	downUntil time.Time
	lastErr   error
	backoff   time.Duration
}

// base is the id above which looks at the table read every id: rows above
// it are seen (again) by every look. s.mu is held.
func (hz *horizonState) base() int64 { return max(hz.st.h, hz.floor) }

// initHorizon reads the largest id at start: every id up to it has been
// handed out, so the horizon is there once the gap rule allows.
const initHorizon = `SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint,
       COALESCE((SELECT max(id) FROM project_build_events), 0)::bigint
  FROM pg_current_snapshot() AS s`

// scanNew reads the ids above $1 and their builds, with the statement's
// snapshot (one row with NULLs when there are none).
const scanNew = `SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint, e.id, e.build_id
  FROM pg_current_snapshot() AS s
  LEFT JOIN LATERAL (SELECT id, build_id FROM project_build_events WHERE id > $1 ORDER BY id LIMIT $2) AS e ON true
 ORDER BY e.id`

// refresh makes sure the Source has looked at the table since target. One
// look runs at a time; readers that wait for it and want nothing newer use
// its result.
func (s *Source) refresh(ctx context.Context, target time.Time) (retryable bool, err error) {
	fresh := func() (bool, bool, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.hz.inited && !s.hz.refreshedAt.Before(target) {
			return true, false, nil
		}
		if time.Now().Before(s.hz.downUntil) {
			return false, true, s.hz.lastErr
		}
		return false, false, nil
	}
	if ok, retryable, err := fresh(); ok || err != nil {
		return retryable, err
	}
	select {
	case s.refreshSem <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-s.refreshSem }()
	if ok, retryable, err := fresh(); ok || err != nil {
		return retryable, err
	}
	retryable, err = s.look(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil:
		s.hz.backoff, s.hz.lastErr = 0, nil
	case retryable && ctx.Err() == nil:
		s.hz.backoff = min(max(2*s.hz.backoff, s.retryMin), s.retryMax)
		s.hz.downUntil, s.hz.lastErr = time.Now().Add(s.hz.backoff), err
	}
	return retryable, err
}

// look reads the ids above the horizon and moves it.
func (s *Source) look(ctx context.Context) (retryable bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return transient(err), err
	}
	defer conn.Release()
	s.mu.Lock()
	inited := s.hz.inited
	s.mu.Unlock()
	if !inited {
		var snap snapshotInfo
		var maxID int64
		snap.sent = time.Now()
		if err := conn.QueryRow(ctx, initHorizon).Scan(&snap.xmin, &snap.xmax, &maxID); err != nil {
			return conn.Conn().IsClosed() || transient(err), err
		}
		snap.received = time.Now()
		s.mu.Lock()
		s.hz.inited, s.hz.floor = true, maxID
		if maxID > 0 {
			s.hz.st.pending = &gapCheck{upTo: maxID, seen: snap.received}
		}
		for _, bs := range s.builds {
			bs.knownFrom = max(bs.knownFrom, maxID)
		}
		s.applyLocked(nil, nil, snap)
		s.mu.Unlock()
		return false, nil
	}
	for {
		s.mu.Lock()
		from := s.hz.base()
		s.mu.Unlock()
		var snap snapshotInfo
		var ids []int64
		var builds []string
		snap.sent = time.Now()
		rows, err := conn.Query(ctx, scanNew, from, scanPage)
		if err != nil {
			return conn.Conn().IsClosed() || transient(err), err
		}
		for rows.Next() {
			var id *int64
			var build *string
			if err := rows.Scan(&snap.xmin, &snap.xmax, &id, &build); err != nil {
				rows.Close()
				return conn.Conn().IsClosed(), err
			}
			if id != nil {
				ids, builds = append(ids, *id), append(builds, *build)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return conn.Conn().IsClosed() || transient(err), err
		}
		snap.received = time.Now()
		s.mu.Lock()
		s.applyLocked(ids, builds, snap)
		more := len(ids) == scanPage && len(s.hz.present) == 0
		s.mu.Unlock()
		if !more {
			return false, nil
		}
	}
}

// applyLocked takes in a look at the table: every id above the base and
// its build, as of snap. s.mu is held.
func (s *Source) applyLocked(ids []int64, builds []string, snap snapshotInfo) {
	for i, id := range ids {
		if bs := s.builds[builds[i]]; bs != nil && id > bs.lastRow {
			bs.lastRow = id
			bs.wake()
		}
	}
	old := s.hz.st.h
	s.hz.present = s.gaps.advance(&s.hz.st, ids, snap)
	if s.hz.st.h != old {
		close(s.hz.changed)
		s.hz.changed = make(chan struct{})
		// Readers whose rows waited behind a gap can read them now.
		for _, bs := range s.builds {
			if bs.lastRow > old {
				bs.wake()
			}
		}
	}
	if snap.sent.After(s.hz.refreshedAt) {
		s.hz.refreshedAt = snap.sent
	}
}
