package sheen

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// BalanceWaitOption changes one WaitForBalance call.
type BalanceWaitOption func(*balanceWait)

type balanceWait struct {
	interval time.Duration
	timeout  time.Duration
}

// WithBalancePollInterval sets how often WaitForBalance asks for the
// balance (default DefaultBalancePollInterval). It must be positive.
func WithBalancePollInterval(d time.Duration) BalanceWaitOption {
	return func(w *balanceWait) { w.interval = d }
}

// WithBalanceWaitTimeout sets how long WaitForBalance waits in all (default
// DefaultBalanceWaitTimeout). It must be positive.
func WithBalanceWaitTimeout(d time.Duration) BalanceWaitOption {
	return func(w *balanceWait) { w.timeout = d }
}

// WithBalanceCacheTTL sets how long a user's balance is reused (default

// WaitForBalance polls userID's balance, bypassing the cache, until its
// Total is at least atLeast: what to do after a payment. It asks every
// DefaultBalancePollInterval for up to DefaultBalanceWaitTimeout (see
// WithBalancePollInterval and WithBalanceWaitTimeout), measured on the
// client's clock; a poll the worker does not answer is cut at the timeout
// (or after one interval, for the last poll).
// When time runs out it returns a *BalanceTimeoutError with the last
// balance seen; when ctx ends it returns at once with ctx's error.
// A failed poll is tried again at the next interval if the failure may pass
// (5xx, 429, network); other failures end the wait.
func (s *BillingService) WaitForBalance(ctx context.Context, userID string, atLeast time.Duration, opts ...BalanceWaitOption) (*Balance, error) {
	if err := ready((*service)(s)); err != nil {
		return nil, err
	}
	if _, err := escapeID("userId", userID); err != nil {
		return nil, err
	}
	if ctx == nil {
		return nil, &ValidationError{Field: "context", Reason: "is nil"}
	}
	w := balanceWait{interval: DefaultBalancePollInterval, timeout: DefaultBalanceWaitTimeout}
	for _, o := range opts {
		o(&w)
	}
	if w.interval <= 0 {
		return nil, &ValidationError{Field: "poll interval", Reason: fmt.Sprintf("%s; it must be positive", w.interval)}
	}
	if w.timeout <= 0 {
		return nil, &ValidationError{Field: "wait timeout", Reason: fmt.Sprintf("%s; it must be positive", w.timeout)}
	}
	clock := s.client.core.clock
	start := clock.Now()
	deadline := start.Add(w.timeout)
	stopped := func() error {
		return fmt.Errorf("sheen: waiting for the balance of user %s: %w", userID, ctx.Err())
	}
	var last *Balance
	var lastErr error
	polls := 0
	timedOut := func(now time.Time) error {
		return &BalanceTimeoutError{UserID: userID, AtLeast: atLeast, Waited: now.Sub(start), Polls: polls, Last: last, Err: lastErr}
	}
	for {
		// The wait's timeout also bounds each poll (the last one, made at
		// the deadline, gets one interval), so a worker that never answers
		// cannot hold the wait for long past it.
		pollCtx, cancel := context.WithTimeout(ctx, max(deadline.Sub(clock.Now()), w.interval))
		b, err := s.RefreshBalance(pollCtx, userID)
		pollCut := err != nil && pollCtx.Err() != nil // an answer that made it counts
		cancel()
		polls++
		switch {
		case ctx.Err() != nil:
			return nil, stopped()
		case pollCut:
			lastErr = err
			return nil, timedOut(clock.Now())
		case err == nil:
			if b.Total >= atLeast {
				return b, nil
			}
			last, lastErr = b, nil
		case balanceWaitRetryable(err):
			lastErr = err
		default:
			return nil, err
		}
		now := clock.Now()
		left := deadline.Sub(now)
		if left <= 0 {
			return nil, timedOut(now)
		}
		if err := sleep(ctx, clock, min(w.interval, left)); err != nil {
			return nil, stopped()
		}
	}
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
