package sheen

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// WaitForBalance's pace (v2.1): a poll every 2 s, for at most 60 s.
const (
	balancePollInterval = 2 * time.Second
	balanceWaitTimeout  = 60 * time.Second
)

// WaitForBalance polls userID's balance, bypassing the cache, until its
// Total is at least atLeast: what to do after a payment. It asks every 2 s
// for at most 60 s (v2.1), measured on the client's clock, or until ctx
// ends, whichever comes first; a poll the worker does not answer is cut at
// the 60 s (or after 2 s, for the last poll). opts apply to every poll
// (WithResponse reports the last one); each answer is cached as by
// RefreshBalance.
//
// When time runs out it returns a *BalanceTimeoutError with the last
// balance seen; when ctx ends it returns at once with ctx's error. On error
// the Balance returned is the zero Balance.
// A failed poll is tried again at the next interval if the failure may pass
// (5xx, 429, network); other failures end the wait.
func (s *BillingService) WaitForBalance(ctx context.Context, userID string, atLeast time.Duration, opts ...CallOption) (Balance, error) {
	if err := ready((*service)(s)); err != nil {
		return Balance{}, err
	}
	if ctx == nil { // the wait derives a context for each poll
		return Balance{}, &ValidationError{Field: "context", Reason: "is nil"}
	}
	st := &s.client.billing
	w := &balanceWaiter{s: s, userID: userID, atLeast: atLeast, opts: opts, clock: st.clock, interval: st.pollInterval}
	w.start = w.clock.Now()
	w.deadline = w.start.Add(st.waitTimeout)
	for {
		if b, done, err := w.poll(ctx); done {
			return b, err
		}
		if err := w.pause(ctx); err != nil {
			return Balance{}, err
		}
	}
}

// balanceWaiter is one WaitForBalance: what it waits for, and what it saw.
type balanceWaiter struct {
	s               *BillingService
	userID          string
	atLeast         time.Duration
	opts            []CallOption
	clock           Clock
	interval        time.Duration
	start, deadline time.Time

	polls   int
	last    Balance // the last balance seen, if seen
	seen    bool    // a poll succeeded: last is set
	lastErr error   // the last poll's error, if it failed
}

// poll asks for the balance once; done reports that the wait is over, with
// its answer.
func (w *balanceWaiter) poll(ctx context.Context) (b Balance, done bool, err error) {
	// The wait's timeout also bounds each poll (the last one, made at the
	// deadline, gets one interval), so a worker that never answers cannot
	// hold the wait for long past it.
	pollCtx, cancel := context.WithTimeout(ctx, max(w.deadline.Sub(w.clock.Now()), w.interval))
	b, err = w.s.RefreshBalance(pollCtx, w.userID, w.opts...)
	cut := err != nil && pollCtx.Err() != nil // an answer that made it counts
	cancel()
	w.polls++
	switch {
	case ctx.Err() != nil:
		return Balance{}, true, w.stopped(ctx)
	case cut:
		w.lastErr = err
		return Balance{}, true, w.timedOut(w.clock.Now())
	case err == nil && b.Total >= w.atLeast:
		return b, true, nil
	case err == nil:
		w.last, w.seen, w.lastErr = b, true, nil
	case balanceWaitRetryable(err):
		w.lastErr = err
	default:
		return Balance{}, true, err
	}
	return Balance{}, false, nil
}

// pause waits until the next poll is due; an error ends the wait.
func (w *balanceWaiter) pause(ctx context.Context) error {
	now := w.clock.Now()
	left := w.deadline.Sub(now)
	if left <= 0 {
		return w.timedOut(now)
	}
	if sleep(ctx, w.clock, min(w.interval, left)) != nil {
		return w.stopped(ctx)
	}
	return nil
}

func (w *balanceWaiter) stopped(ctx context.Context) error {
	return fmt.Errorf("sheen: waiting for the balance of user %s: %w", w.userID, ctx.Err())
}

func (w *balanceWaiter) timedOut(now time.Time) error {
	return &BalanceTimeoutError{UserID: w.userID, AtLeast: w.atLeast, Waited: now.Sub(w.start), Polls: w.polls, Last: w.last, HasLast: w.seen, Err: w.lastErr}
}

// balanceWaitRetryable reports whether a failed poll may succeed later.
func balanceWaitRetryable(err error) bool {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		if isAuthStatus(ae.StatusCode, ae.Code) {
			return false
		}
		return ae.StatusCode == 0 || ae.StatusCode == http.StatusTooManyRequests || ae.StatusCode >= 500
	}
	return true // network trouble, an unusable response, a rate-limit wait
}
