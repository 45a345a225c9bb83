package sheenredis

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sheenapps/sheen-go"
)

// Defaults of CacheOptions.
const (
	// DefaultLockTTL is how long a replica's claim to load a key lasts
	// without renewal.
	DefaultLockTTL = 5 * time.Second
	// DefaultPoll is how often a replica waiting for another's load looks
	// for its value.
	DefaultPoll = 5 * time.Millisecond
)

// maxPendingDeletes bounds the invalidations a cache keeps to deliver when
// Redis answers again.
const maxPendingDeletes = 10_000

// deleteBatch is how many queued deletions one pipeline delivers.
const deleteBatch = 1000

// CacheOptions configures a Cache.
type CacheOptions struct {
	Options
	// LockTTL is how long a replica's claim to load a key lasts (default
	// DefaultLockTTL); the loader renews it while it loads, so a replica
	// that dies mid-load holds the others up no longer than this.
	LockTTL time.Duration
	// Poll is how often a replica waiting for another's load looks for its
	// value (default DefaultPoll).
	Poll time.Duration
}

// Cache is a sheen.SharedCache on Redis, for CacheConfig.Shared (sheen.WithCache). Key
// names are HMAC-SHA-256 digests of the client's keys and values are
// sealed with AES-256-GCM, both under keys derived from the shared secret
// with HKDF-SHA-256: Redis, its MONITOR output and its dumps show neither
// the signed URLs nor the IDs they are for. It is safe for concurrent use.
//
// One replica loads a missing key while holding a claim (SET NX PX, renewed
// while it loads); the others poll for its value. Delete drops the value
// and the claim in one command, so a load under way is not stored.
//
// Close it when done with it (see Close).
type Cache struct {
	rdb   redis.UniversalClient
	o     CacheOptions
	h     *health
	flush *flusher
	aead  cipher.AEAD
	mac   []byte // HMAC key of key names

	mu      sync.Mutex
	pending map[string]struct{} // value keys to delete when Redis answers again
}

// NewCache makes a Cache on rdb (which must have ContextTimeoutEnabled set),
// keyed by secret: the worker's shared secret, or any secret of at least
// sheen.MinSecretLength bytes that every replica shares.
func NewCache(rdb redis.UniversalClient, secret string, o CacheOptions) (*Cache, error) {
	if err := checkClient(rdb, "NewCache"); err != nil {
		return nil, err
	}
	if err := o.check("NewCache"); err != nil {
		return nil, err
	}
	switch {
	case len(secret) < sheen.MinSecretLength:
		return nil, fmt.Errorf("sheenredis: NewCache: the secret is %d bytes; it must be at least %d", len(secret), sheen.MinSecretLength)
	case o.LockTTL < 0 || o.Poll < 0:
		return nil, errors.New("sheenredis: NewCache: LockTTL and Poll must not be negative")
	}
	if o.LockTTL == 0 {
		o.LockTTL = DefaultLockTTL
	}
	if o.Poll == 0 {
		o.Poll = DefaultPoll
	}
	encKey, err := hkdf.Key(sha256.New, []byte(secret), nil, "sheen-go sheenredis cache v1: value encryption", 32)
	if err != nil {
		return nil, err
	}
	macKey, err := hkdf.Key(sha256.New, []byte(secret), nil, "sheen-go sheenredis cache v1: key names", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	c := &Cache{rdb: rdb, o: o, aead: aead, mac: macKey, pending: make(map[string]struct{})}
	c.flush = newFlusher(c.deliver)
	c.h = &health{what: "cache", fallback: "using each replica's own cache", retry: o.RetryEvery, logger: o.Logger, recovered: c.flush.start}
	return c, nil
}

// names are the Redis keys of one cache key: its value and the claim of
// the replica loading it, in one hash slot.
type names struct{ value, claim string }

func (c *Cache) names(key string) names {
	m := hmac.New(func() hash.Hash { return sha256.New() }, c.mac)
	m.Write([]byte(key))
	id := c.o.Prefix + ":c:{" + hex.EncodeToString(m.Sum(nil)[:16]) + "}"
	return names{value: id + ":v", claim: id + ":l"}
}

// seal encrypts plain for the value key name.
func (c *Cache) seal(plain []byte, name string) ([]byte, error) {
	nonce := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+len(plain)+c.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return c.aead.Seal(nonce, nonce, plain, []byte(name)), nil
}

// open decrypts what seal sealed for name.
func (c *Cache) open(sealed []byte, name string) ([]byte, error) {
	n := c.aead.NonceSize()
	if len(sealed) < n+c.aead.Overhead() {
		return nil, errors.New("sheenredis: cache: a value too short to be sealed")
	}
	return c.aead.Open(nil, sealed[:n], sealed[n:], []byte(name))
}

// fetchScript answers a value (1, value), grants the claim to load it (2),
// or says another replica holds it (3).
var fetchScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {3}
`)

// storeScript stores a loaded value if the claim is still the loader's
// (not dropped by Delete, nor expired and taken by another), and releases
// the claim. A ttl of 0 stores nothing.
var storeScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
`)

// renewScript extends the claim if it is still the loader's.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`)

// Fetch implements sheen.SharedCache.
func (c *Cache) Fetch(ctx context.Context, key string, load func(context.Context) ([]byte, time.Duration, error)) ([]byte, error) {
	n := c.names(key)
	token := newToken()
	for {
		var res []any
		err := c.h.run(ctx, c.o.Timeout, func(ctx context.Context) error {
			var err error
			res, err = fetchScript.Run(ctx, c.rdb, []string{n.value, n.claim}, token, c.o.LockTTL.Milliseconds()).Slice()
			return err
		})
		if err != nil {
			return nil, err
		}
		kind, _ := res[0].(int64)
		switch kind {
		case 1:
			sealed, _ := res[1].(string)
			if plain, err := c.open([]byte(sealed), n.value); err == nil {
				return plain, nil
			}
			// Not sealed by this secret: drop it and load afresh.
			_ = c.h.run(ctx, c.o.Timeout, func(ctx context.Context) error { return c.rdb.Del(ctx, n.value).Err() })
			continue
		case 2:
			return c.load(ctx, n, token, load)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(c.o.Poll):
		}
	}
}

// load runs load while holding key's claim, renewing it, and stores what
// load returns unless the key was dropped meanwhile. The value is returned
// whether it could be stored or not.
func (c *Cache) load(ctx context.Context, n names, token string, load func(context.Context) ([]byte, time.Duration, error)) ([]byte, error) {
	value, ttl, err := c.whileClaimed(ctx, n, token, load)
	store, sealed := ttl.Milliseconds(), []byte(nil)
	if err == nil && store > 0 {
		if sealed, err = c.seal(value, n.value); err != nil {
			store = 0
		}
	} else {
		store = 0
	}
	// The claim goes whatever happened; the value is stored when there is
	// one to store. A caller gone meanwhile does not stop this.
	_ = c.h.run(context.WithoutCancel(ctx), c.o.Timeout, func(ctx context.Context) error {
		return storeScript.Run(ctx, c.rdb, []string{n.value, n.claim}, token, sealed, store).Err()
	})
	if err != nil {
		return nil, err
	}
	return value, nil
}

// whileClaimed runs load while renewing the claim. If load panics (or
// exits its goroutine), the renewal stops and the claim is released before
// the panic goes on, so the other replicas load the key themselves instead
// of waiting on a claim renewed for ever.
func (c *Cache) whileClaimed(ctx context.Context, n names, token string, load func(context.Context) ([]byte, time.Duration, error)) (value []byte, ttl time.Duration, err error) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { c.renew(n, token, stop) })
	returned := false
	defer func() {
		close(stop)
		wg.Wait()
		if !returned {
			_ = c.h.run(context.WithoutCancel(ctx), c.o.Timeout, func(ctx context.Context) error {
				return storeScript.Run(ctx, c.rdb, []string{n.value, n.claim}, token, "", 0).Err()
			})
		}
	}()
	value, ttl, err = load(ctx)
	returned = true
	return value, ttl, err
}

// renew keeps the claim alive until stop is closed.
func (c *Cache) renew(n names, token string, stop <-chan struct{}) {
	t := time.NewTicker(c.o.LockTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			_ = c.h.run(context.Background(), c.o.Timeout, func(ctx context.Context) error {
				return renewScript.Run(ctx, c.rdb, []string{n.claim}, token, c.o.LockTTL.Milliseconds()).Err()
			})
		}
	}
}

// Set implements sheen.SharedCache.
func (c *Cache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	n := c.names(key)
	if ttl.Milliseconds() <= 0 {
		return c.h.run(ctx, c.o.Timeout, func(ctx context.Context) error { return c.rdb.Del(ctx, n.value).Err() })
	}
	sealed, err := c.seal(value, n.value)
	if err != nil {
		return err
	}
	return c.h.run(ctx, c.o.Timeout, func(ctx context.Context) error {
		return c.rdb.Set(ctx, n.value, sealed, ttl).Err()
	})
}

// Delete implements sheen.SharedCache. The value and any claim go in one
// command, so a load under way on any replica is not stored. When Redis
// cannot answer, the deletion is kept (up to 10,000 of them) and delivered
// when it answers again, in the background (kept again if that fails).
func (c *Cache) Delete(ctx context.Context, key string) error {
	n := c.names(key)
	err := c.h.run(ctx, c.o.Timeout, func(ctx context.Context) error { return c.rdb.Del(ctx, n.value, n.claim).Err() })
	if errors.Is(err, sheen.ErrSharedUnavailable) {
		c.mu.Lock()
		if len(c.pending) < maxPendingDeletes {
			c.pending[n.value] = struct{}{}
		}
		c.mu.Unlock()
		if c.h.up() {
			// Redis answered another call meanwhile, which may have
			// started the delivery before this deletion was queued.
			c.flush.start()
		}
	}
	return err
}

// Close stops delivering the deletions of an outage, ends a delivery
// under way and waits for it; it does not close the Redis client. The
// cache still works after Close, but deletions made during later outages
// are not delivered. It always returns nil, and may be called more than
// once.
func (c *Cache) Close() error {
	c.flush.close()
	return nil
}

// deliver delivers the deletions Redis missed while it was down. What it
// could not deliver stays queued for the next time Redis answers.
func (c *Cache) deliver(ctx context.Context) {
	for {
		batch := make([]string, 0, deleteBatch)
		c.mu.Lock()
		for value := range c.pending {
			if len(batch) == deleteBatch {
				break
			}
			batch = append(batch, value)
			delete(c.pending, value)
		}
		c.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		err := c.h.run(ctx, c.o.Timeout*10, func(ctx context.Context) error {
			_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, value := range batch {
					p.Del(ctx, value, value[:len(value)-1]+"l")
				}
				return nil
			})
			return err
		})
		if err != nil {
			// Deleting again is harmless: put the whole batch back.
			c.mu.Lock()
			for _, value := range batch {
				if len(c.pending) < maxPendingDeletes {
					c.pending[value] = struct{}{}
				}
			}
			c.mu.Unlock()
			return
		}
	}
}

// newToken is a random claim token.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

var _ sheen.SharedCache = (*Cache)(nil)
