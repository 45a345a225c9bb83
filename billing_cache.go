package sheen

import (
	"fmt"
	"time"
)

// balanceCacheMaxUsers bounds the balance cache.
const balanceCacheMaxUsers = 10_000

// WithBalanceCacheTTL sets how long a user's balance is reused (default
// DefaultBalanceCacheTTL). Zero turns the cache off.
func WithBalanceCacheTTL(ttl time.Duration) Option {
	return func(c *config) error {
		if ttl < 0 {
			return fmt.Errorf("sheen: WithBalanceCacheTTL: %s; it must not be negative", ttl)
		}
		c.billing.balanceTTL, c.billing.balanceTTLSet = ttl, true
		return nil
	}
}

// Balance returns userID's balance, from the cache when a value younger
// than the cache TTL is held. Concurrent calls for one user that miss the

// billingConfig holds the Billing service's options.
type billingConfig struct {
	balanceTTL    time.Duration
	balanceTTLSet bool
}

// billingState is the Billing service's share of the client's core: the
// per-user balance cache.
type billingState struct {
	clock Clock
	ttl   time.Duration
	cache *ttlCache[*Balance]
	// invalidated, set by tests, hears of every balance dropped.
	invalidated func(userID string)
}

func (s *billingState) init(c *core, cfg billingConfig) {
	s.clock = c.clock
	s.ttl = DefaultBalanceCacheTTL
	if cfg.balanceTTLSet {
		s.ttl = cfg.balanceTTL
	}
	s.cache = newTTLCache[*Balance](c.clock, balanceCacheMaxUsers)
}

// invalidate drops userID's cached balance; the core calls it on a 402 for
// that user and when a build starts for that user.
func (s *billingState) invalidate(userID string) {
	if s.cache != nil {
		s.cache.Delete(userID)
	}
	if s.invalidated != nil {
		s.invalidated(userID)
	}
}
