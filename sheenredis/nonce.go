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

// nonceBatch is how many queued nonces one pipeline writes to Redis.
const nonceBatch = 1000

// NonceOptions configures a NonceStore.
type NonceOptions struct {
	Options
	// TTL is how long a nonce is remembered (default sheen.DefaultNonceTTL,
	// 600 s, as the deployed worker). Keep it at least twice the
	// Verifier's Skew (DefaultSkew, 120 s, unless set): a request is
	// refused for its timestamp only once that much time has passed, so a
	// replay sent after a shorter TTL passes. A Verifier refuses to run
	// with a store that keeps nonces for less (it reads NonceTTL).
	TTL time.Duration
	// FailOpen, while Redis cannot answer, checks nonces against Local
	// instead of refusing the request. Every nonce the replica checks is
	// recorded in Local, which is asked first, so a replay to the same
	// replica is refused before, during and after an outage (also while
	// the nonces of the outage are being written to Redis); a replay sent
	// to another replica during the outage is accepted. Off by default:
	// the Verifier refuses signed requests it cannot check (Middleware
	// answers 503).
	FailOpen bool
	// Local is the replica's own store with FailOpen (default an in-memory
	// store keeping each nonce for TTL, at most 100,000 of them: beyond
	// that many per TTL, the oldest are forgotten first). It must be safe
	// for concurrent use, and its Seen must record and answer in one step,
	// as MemoryNonceStore's does.
	Local sheenhttp.NonceStore
}

// NonceStore is a sheenhttp.NonceChecker on Redis: SET NX with an expiry, so a
// nonce used on one replica is refused on every other. Use it as a
// Verifier's Nonces. It is safe for concurrent use. With FailOpen, Close
// it when done with it (see Close).
type NonceStore struct {
	rdb   redis.UniversalClient
	o     NonceOptions
	h     *health
	flush *flusher
	mu    sync.Mutex
	seen  []pendingNonce // seen on Local while failing open, for Redis
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
	s.flush = newFlusher(s.deliver)
	s.h = &health{what: "nonce store", fallback: fallback, retry: o.RetryEvery, logger: o.Logger, recovered: s.flush.start}
	return s, nil
}

// key is nonce's key: its SHA-256 digest (not keyed: the store has no
// secret), so that neither its length nor its bytes reach Redis.
func (s *NonceStore) key(nonce string) string {
	sum := sha256.Sum256([]byte(nonce))
	return s.o.Prefix + ":n:" + hex.EncodeToString(sum[:16])
}

// Check implements sheenhttp.NonceChecker: it records nonce as used and reports
// whether it had been used within TTL, on any replica. When Redis cannot
// answer it fails (wrapping sheen.ErrSharedUnavailable), or with FailOpen
// answers from Local. With FailOpen, Local is asked first and records
// every nonce checked, so the replica refuses a replay of a nonce it
// accepted even while Redis does not know it yet.
func (s *NonceStore) Check(nonce string, now time.Time) (bool, error) {
	if s.o.FailOpen && s.o.Local.Seen(nonce, now) {
		// Accepted here before (or being checked right now): a replay,
		// whatever Redis says, which after an outage may not have been
		// told yet.
		return true, nil
	}
	key := s.key(nonce)
	var fresh bool
	err := s.h.run(context.Background(), s.o.Timeout, func(ctx context.Context) error {
		var err error
		fresh, err = s.rdb.SetNX(ctx, key, 1, s.o.TTL).Result()
		return err
	})
	switch {
	case err == nil:
		return !fresh, nil
	case !s.o.FailOpen:
		return false, err
	}
	s.mu.Lock()
	if len(s.seen) < maxPendingNonces {
		s.seen = append(s.seen, pendingNonce{key, time.Now()})
	}
	s.mu.Unlock()
	if s.h.up() {
		// Redis answered another call meanwhile, which may have started
		// the delivery before this nonce was queued.
		s.flush.start()
	}
	return false, nil
}

// Seen implements sheenhttp.NonceStore for callers that cannot take an error:
// a nonce it cannot check counts as seen (the request is refused), unless
// FailOpen.
func (s *NonceStore) Seen(nonce string, now time.Time) bool {
	seen, err := s.Check(nonce, now)
	return seen || err != nil
}

// NonceTTL returns how long the store remembers a nonce (NonceOptions.TTL,
// with its default applied): what a sheenhttp.Verifier checks against
// twice its Skew.
func (s *NonceStore) NonceTTL() time.Duration { return s.o.TTL }

// Close stops writing the nonces of an outage to Redis, ends a write
// under way and waits for it; it does not close the Redis client. Checks
// still work after Close, but the nonces of later outages stay on this
// replica. It always returns nil, and may be called more than once.
func (s *NonceStore) Close() error {
	s.flush.close()
	return nil
}

// deliver writes the nonces seen on Local during an outage to Redis, so
// that their replays are refused everywhere for the rest of their TTL.
// What it could not write stays queued for the next time Redis answers.
func (s *NonceStore) deliver(ctx context.Context) {
	for {
		s.mu.Lock()
		batch := s.seen[:min(len(s.seen), nonceBatch)]
		s.seen = s.seen[len(batch):]
		if len(s.seen) == 0 {
			s.seen = nil
		}
		s.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		err := s.h.run(ctx, s.o.Timeout*10, func(ctx context.Context) error {
			_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, n := range batch {
					if left := s.o.TTL - time.Since(n.at); left > 0 {
						p.SetNX(ctx, n.key, 1, left)
					}
				}
				return nil
			})
			return err
		})
		if err != nil {
			// SET NX again is harmless: put the whole batch back.
			s.mu.Lock()
			s.seen = append(batch[:len(batch):len(batch)], s.seen...)
			s.seen = s.seen[:min(len(s.seen), maxPendingNonces)]
			s.mu.Unlock()
			return
		}
	}
}

var _ sheenhttp.NonceChecker = (*NonceStore)(nil)
