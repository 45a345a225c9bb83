package sheenredis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheenhttp"
)

// maxPendingNonces bounds the nonces a failing-open store keeps to write
// to Redis when it answers again.
const maxPendingNonces = 100_000

// NonceOptions configures a NonceStore.
type NonceOptions struct {
	Options
	// TTL is how long a nonce is remembered (default sheen.DefaultNonceTTL,
	// 600 s, as the deployed worker). Keep it above twice the Verifier's
	// Skew: a request is refused for its timestamp once that much time has
	// passed.
	TTL time.Duration
	// FailOpen, while Redis cannot answer, checks nonces against Local
	// instead of refusing the request. Every nonce the replica accepts is
	// recorded in Local as well as in Redis, so during an outage a replay
	// to the same replica is refused, whether its nonce was first used
	// before the outage or during it; a replay sent to another replica
	// during the outage is accepted. Off by default: the Verifier refuses
	// signed requests it cannot check (Middleware answers 503).
	FailOpen bool
	// Local is the replica's own store with FailOpen (default an in-memory
	// store keeping each nonce for TTL, at most 100,000 of them: beyond
	// that many per TTL, the oldest are forgotten first).
	Local sheenhttp.NonceStore
}

// NonceStore is a sheenhttp.NonceChecker on Redis: SET NX with an expiry, so a
// nonce used on one replica is refused on every other. Use it as a
// Verifier's Nonces. It is safe for concurrent use.
type NonceStore struct {
	rdb  redis.UniversalClient
	o    NonceOptions
	h    *health
	mu   sync.Mutex
	seen []pendingNonce // seen on Local while failing open, for Redis
}

// pendingNonce is a nonce checked locally during an outage.
type pendingNonce struct {
	key string
	at  time.Time
}

// NewNonceStore makes a NonceStore on rdb, which must have
// ContextTimeoutEnabled set.
func NewNonceStore(rdb redis.UniversalClient, o NonceOptions) (*NonceStore, error) {
	if err := checkClient(rdb, "NewNonceStore"); err != nil {
		return nil, err
	}
	if err := o.check("NewNonceStore"); err != nil {
		return nil, err
	}
	if o.TTL < 0 {
		return nil, fmt.Errorf("sheenredis: NewNonceStore: TTL is negative")
	}
	if o.TTL == 0 {
		o.TTL = sheen.DefaultNonceTTL
	}
	if o.Local == nil {
		o.Local = sheenhttp.NewMemoryNonceStore(o.TTL, 100_000)
	}
	s := &NonceStore{rdb: rdb, o: o}
	fallback := "refusing signed requests (fail closed)"
	if o.FailOpen {
		fallback = "checking nonces on this replica alone (fail open: a replay to another replica is not caught)"
	}
	s.h = &health{what: "nonce store", fallback: fallback, retry: o.RetryEvery, logger: o.Logger, recovered: s.flush}
	return s, nil
}

// key is nonce's key: its digest, so that neither its length nor its bytes
// reach Redis.
func (s *NonceStore) key(nonce string) string {
	sum := sha256.Sum256([]byte(nonce))
	return s.o.Prefix + ":n:" + hex.EncodeToString(sum[:16])
}

// Check implements sheenhttp.NonceChecker: it records nonce as used and reports
// whether it had been used within TTL, on any replica. When Redis cannot
// answer it fails (wrapping sheen.ErrSharedUnavailable), or with FailOpen
// answers from Local, where it also records every nonce Redis accepts.
func (s *NonceStore) Check(nonce string, now time.Time) (bool, error) {
	key := s.key(nonce)
	var fresh bool
	err := s.h.run(context.Background(), s.o.Timeout, func(ctx context.Context) error {
		var err error
		fresh, err = s.rdb.SetNX(ctx, key, 1, s.o.TTL).Result()
		return err
	})
	if err == nil {
		if fresh && s.o.FailOpen {
			// So that Local, should Redis stop answering, still knows
			// the nonces this replica accepted before.
			s.o.Local.Seen(nonce, now)
		}
		return !fresh, nil
	}
	if !s.o.FailOpen {
		return false, err
	}
	seen := s.o.Local.Seen(nonce, now)
	if !seen {
		s.mu.Lock()
		if len(s.seen) < maxPendingNonces {
			s.seen = append(s.seen, pendingNonce{key, time.Now()})
		}
		s.mu.Unlock()
	}
	return seen, nil
}

// Seen implements sheenhttp.NonceStore for callers that cannot take an error:
// a nonce it cannot check counts as seen (the request is refused), unless
// FailOpen.
func (s *NonceStore) Seen(nonce string, now time.Time) bool {
	seen, err := s.Check(nonce, now)
	return seen || err != nil
}

// flush writes the nonces seen on Local during an outage to Redis, so that
// their replays are refused everywhere for the rest of their TTL.
func (s *NonceStore) flush() {
	s.mu.Lock()
	pending := s.seen
	s.seen = nil
	s.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	_ = s.h.run(context.Background(), s.o.Timeout*10, func(ctx context.Context) error {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, n := range pending {
				if left := s.o.TTL - time.Since(n.at); left > 0 {
					p.SetNX(ctx, n.key, 1, left)
				}
			}
			return nil
		})
		return err
	})
}

var _ sheenhttp.NonceChecker = (*NonceStore)(nil)
