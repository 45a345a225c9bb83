// Package fakeclock is a manual clock for the tests of every package of the
// module: it satisfies sheen.Clock, reads a fixed time, and fires its timers
// only when Advance moves it past them.
package fakeclock

import (
	"sync"
	"time"
)

// Clock is a sheen.Clock for tests: time moves only when Advance is called.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	added   chan struct{} // receives when a waiter is added
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

// New returns a clock that reads start until Advance moves it.
func New(start time.Time) *Clock {
	return &Clock{now: start, added: make(chan struct{}, 1024)}
}

// Now implements sheen.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After implements sheen.Clock.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	select {
	case c.added <- struct{}{}:
	default:
	}
	return ch
}

// Advance moves time forward by d and fires every timer now due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// Waiters reports how many timers are pending.
func (c *Clock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// WaitForWaiters blocks until at least n timers are pending.
func (c *Clock) WaitForWaiters(n int) {
	for c.Waiters() < n {
		select {
		case <-c.added:
		case <-time.After(10 * time.Millisecond):
		}
	}
}
