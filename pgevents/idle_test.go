package pgevents

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Followers of builds where nothing happens poll every 10 ms. While the
// listening connection is up, their polls are answered without a query;
// an event in one build costs a few queries, not one per follower.
func TestIdleFollowersCostNoQueries(t *testing.T) {
	db := newTestDB(t, true)
	src := &countingSource{Source: New(db.reader, WithSafetyInterval(time.Hour))}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const followers = 50
	user := uuid.NewString()
	recs := make([]*recorder, followers)
	dones := make([]<-chan error, followers)
	for i := range followers {
		db.mustInsert(t, progressRow(fmt.Sprintf("01JIDLE%02d", i), user, 0))
	}
	for i := range followers {
		recs[i] = &recorder{}
		dones[i] = waitAsync(ctx, t, src, fmt.Sprintf("01JIDLE%02d", i), user, recs[i])
	}
	waitFor(t, ctx, "every follower's first event and notifications", func() bool {
		for _, r := range recs {
			if len(r.get()) != 1 {
				return false
			}
		}
		return src.Listening()
	})
	// Every follower has fetched again from its new cursor at least once.
	f := src.fetches.Load()
	waitFor(t, ctx, "a round of fetches", func() bool { return src.fetches.Load() >= f+3*followers })

	f0, q0 := src.fetches.Load(), db.readerQueries.n.Load()
	waitFor(t, ctx, "ten rounds of fetches", func() bool { return src.fetches.Load() >= f0+10*followers })
	f1, q1 := src.fetches.Load(), db.readerQueries.n.Load()
	t.Logf("%d idle fetches, %d queries", f1-f0, q1-q0)
	if q1 != q0 {
		t.Errorf("%d idle fetches sent %d queries, want none while notifications work", f1-f0, q1-q0)
	}

	db.mustInsert(t, progressRow("01JIDLE07", user, 1))
	waitFor(t, ctx, "the new event", func() bool { return len(recs[7].get()) == 2 })
	f2 := src.fetches.Load()
	waitFor(t, ctx, "another round of fetches", func() bool { return src.fetches.Load() >= f2+3*followers })
	q2 := db.readerQueries.n.Load()
	t.Logf("one event in one build: %d queries", q2-q1)
	if q2-q1 > 4 {
		t.Errorf("one event in one of %d followed builds cost %d queries, want a look at the table and the build's query or two", followers, q2-q1)
	}

	for i := range followers {
		db.mustInsert(t, completedRow(fmt.Sprintf("01JIDLE%02d", i), user))
	}
	for i, done := range dones {
		if err := <-done; err != nil {
			t.Fatalf("follower %d: %v", i, err)
		}
	}
}

// Without notifications, idle followers' polls share one look at the table
// at most every 100 ms, whatever their number.
func TestIdlePollingFollowersShareTheirLooks(t *testing.T) {
	db := newTestDB(t, false)
	src := &countingSource{Source: New(db.reader, WithoutNotifications())}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const followers = 50
	user := uuid.NewString()
	recs := make([]*recorder, followers)
	dones := make([]<-chan error, followers)
	for i := range followers {
		db.mustInsert(t, progressRow(fmt.Sprintf("01JPOLL%02d", i), user, 0))
		recs[i] = &recorder{}
		dones[i] = waitAsync(ctx, t, src, fmt.Sprintf("01JPOLL%02d", i), user, recs[i])
	}
	waitFor(t, ctx, "every follower's first event", func() bool {
		for _, r := range recs {
			if len(r.get()) != 1 {
				return false
			}
		}
		return true
	})
	f := src.fetches.Load()
	waitFor(t, ctx, "a round of fetches", func() bool { return src.fetches.Load() >= f+3*followers })
	f0, q0 := src.fetches.Load(), db.readerQueries.n.Load()
	waitFor(t, ctx, "ten rounds of fetches", func() bool { return src.fetches.Load() >= f0+10*followers })
	f1, q1 := src.fetches.Load(), db.readerQueries.n.Load()
	t.Logf("%d idle fetches, %d queries", f1-f0, q1-q0)
	if 10*(q1-q0) > f1-f0 {
		t.Errorf("%d idle polling fetches sent %d queries, want them to share looks at the table", f1-f0, q1-q0)
	}
	for i := range followers {
		db.mustInsert(t, completedRow(fmt.Sprintf("01JPOLL%02d", i), user))
	}
	for i, done := range dones {
		if err := <-done; err != nil {
			t.Fatalf("follower %d: %v", i, err)
		}
	}
}
