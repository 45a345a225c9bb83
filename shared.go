package sheen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// Fleet mode: the seams where state shared by every replica of a service
// (package sheenredis provides it on Redis) replaces the client's own. Each
// is optional; without them a client keeps everything in its process.

// SharedLimiter is a rate limiter shared by several clients, in several
// processes, that together must stay inside one quota of the worker (the
// worker limits per IP address, and replicas behind one NAT share it). It
// follows the worker's window as the client's own limiter does: one request
// at a time while the window is unknown, never more requests in flight than
// the worker said remain, a 429 pauses every client (except one scoped to
// one user's, project's or version's builds, which stays with the client
// that got it). Plug one in with
// WithSharedLimiter; sheenredis.Limiter is one on Redis.
//
// While it answers, it replaces the client's own limiter for every request
// to the worker; the client's limiter still watches every answer, so that
// WorkerClient.RateLimit, Response.RateLimit and a fallback start from what
// the worker said.
type SharedLimiter interface {
	// Acquire waits until one more request may leave, counts it in flight,
	// and returns the function the client calls exactly once, when the
	// request's answer (or its failure) is known.
	//
	// A wait that must last past ctx's deadline, or longer than maxWait (the
	// client's RetryConfig.MaxWait), is refused at once with a
	// *RateLimitError whose RetryAfter is the wait; other waits end with
	// ctx's error when ctx ends. An error wrapping ErrSharedUnavailable
	// makes the client send this request under its own limiter instead.
	Acquire(ctx context.Context, maxWait time.Duration) (release func(RateAnswer), err error)
}

// RateAnswer is what the client learnt about the worker's rate-limit
// window from one request, handed to a SharedLimiter.
type RateAnswer struct {
	// At is when the answer (or the failure) came, on the client's clock.
	At time.Time
	// Answered is false when no response came: the worker may have counted
	// the request all the same.
	Answered bool
	// Limit and Remaining are the answer's x-ratelimit-limit and
	// x-ratelimit-remaining, -1 when absent. Remaining (and Limit) are set
	// only when the answer described a current window: a remaining count and
	// a reset still ahead.
	Limit, Remaining int
	// Reset is when the window ends as the answer gave it, read against At
	// when given in seconds from now; ResetPrecision is the precision it
	// was given with (1 s for whole seconds): the window is surely over at
	// Reset plus ResetPrecision. Zero when Remaining is -1.
	Reset          time.Time
	ResetPrecision time.Duration
	// PauseUntil is set after a 429: when requests may leave again (its
	// Retry-After, else the end of the window, else a second after At).
	PauseUntil time.Time
}

// SharedCache is a cache shared by several clients, in several processes:
// the balances and download links of every replica of a service, so that
// one replica's answer from the worker serves them all and an invalidation
// (a build started for a user drops that user's balance) reaches them all.
// Plug one in with CacheConfig.Shared; sheenredis.Cache is one on Redis.
//
// Keys are the client's: a kind ("balance", "link") and the IDs the value
// is for, NUL-separated, so they name users. Values are opaque bytes that
// hold what the worker answered, signed download URLs included (bearer
// credentials): an implementation must keep both from whoever can read or
// watch the store (sheenredis hashes keys and encrypts values).
//
// While it answers, the client keeps nothing in its own caches; a call
// that gets an error wrapping ErrSharedUnavailable uses the client's local
// cache instead, which is emptied when the shared cache answers again.
// Concurrent callers of one client share one Fetch per key.
type SharedCache interface {
	// Fetch returns key's value. When no client holds one, it calls load
	// once across every client sharing the cache, on the calling goroutine,
	// while the others wait for its value (if load fails, each may load in
	// turn). Fetch returns load's answer, and stores its value for the ttl
	// load gives (the client's TTL, or until the link margin); a ttl that is
	// not positive stores nothing. An error from load is returned as it is;
	// a wait ends with ctx's error when ctx ends.
	Fetch(ctx context.Context, key string, load func(context.Context) (value []byte, ttl time.Duration, err error)) ([]byte, error)
	// Set stores value for key for ttl; a ttl that is not positive drops
	// key.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete drops key for every client, and makes sure that a load under
	// way for it, anywhere, is not stored.
	Delete(ctx context.Context, key string) error
}

// WithSharedLimiter makes the client pace its requests with l, shared with
// the other replicas of the service, instead of its own limiter; its own
// limiter stays as the fallback while l cannot answer (see SharedLimiter).
func WithSharedLimiter(l SharedLimiter) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("sheen: WithSharedLimiter: limiter is nil")
		}
		c.sharedLimiter = l
		return nil
	}
}

// acquireShared asks the shared limiter to let a request leave. Its
// release tells the shared limiter, then the local one, what the answer
// said. An error wrapping ErrSharedUnavailable sends the caller to the
// local limiter.
func (l *adaptiveLimiter) acquireShared(ctx context.Context) (func(*http.Response), error) {
	release, err := l.shared.Acquire(ctx, l.maxWait)
	if err != nil {
		return nil, err
	}
	if release == nil {
		return nil, fmt.Errorf("%w: the shared limiter gave no release", ErrSharedUnavailable)
	}
	return func(resp *http.Response) {
		release(rateAnswer(resp, l.clock.Now()))
		if resp != nil {
			l.observe(resp.StatusCode, resp.Header)
		}
	}, nil
}

// rateAnswer is what resp (nil: none came) says of the worker's window, by
// the rules of the local limiter.
func rateAnswer(resp *http.Response, now time.Time) RateAnswer {
	a := RateAnswer{At: now, Limit: -1, Remaining: -1}
	if resp == nil {
		return a
	}
	a.Answered = true
	info, ok := parseRateHeaders(resp.Header, now)
	if ok && info.remaining >= 0 && info.reset.Add(info.resetUnit).After(now) {
		a.Limit, a.Remaining, a.Reset, a.ResetPrecision = info.limit, info.remaining, info.reset, info.resetUnit
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		a.PauseUntil = pauseAfter429(resp.Header, info, now)
	}
	return a
}

// sharedValues is one kind of value (balances, links) kept in a
// SharedCache, with the local cache as the fallback.
type sharedValues[V any] struct {
	shared SharedCache
	kind   string       // the first part of every key
	local  *ttlCache[V] // the fallback; emptied when the shared cache answers again
	// flights shares one shared Fetch per key among this client's callers;
	// it stores nothing.
	flights  *ttlCache[sharedAnswer[V]]
	clock    Clock // the client's: expiries are on it
	encode   func(V) ([]byte, error)
	decode   func([]byte) (V, error)
	fellBack atomic.Bool // a call fell back to the local cache since the shared one last answered
}

func newSharedValues[V any](c SharedCache, kind string, local *ttlCache[V], clock Clock, encode func(V) ([]byte, error), decode func([]byte) (V, error)) *sharedValues[V] {
	if c == nil {
		return nil
	}
	return &sharedValues[V]{shared: c, kind: kind, local: local, flights: newTTLCache[sharedAnswer[V]](clock, 1), clock: clock, encode: encode, decode: decode}
}

// key is the shared cache's key for the local key k.
func (s *sharedValues[V]) key(k string) string { return s.kind + "\x00" + k }

// sharedAnswer is what one shared Fetch gave this client's callers.
type sharedAnswer[V any] struct {
	v      V
	loaded bool // this client asked the worker for v: the shared cache had none
}

// fetch returns k's value from the shared cache, loading it with load when
// no client holds it. loaded reports that this client asked the worker
// (with the load of this caller or of the one whose fetch it shared). ok
// is false when the shared cache cannot answer: the caller then uses the
// local cache.
func (s *sharedValues[V]) fetch(ctx context.Context, k string, load func(context.Context) (V, time.Time, error)) (v V, loaded, ok bool, err error) {
	a, err := s.flights.Fetch(ctx, k, func(ctx context.Context) (sharedAnswer[V], time.Time, error) {
		v, loaded, err := s.fetchShared(ctx, k, load)
		return sharedAnswer[V]{v, loaded}, time.Time{}, err // nothing stored here
	})
	if errors.Is(err, ErrSharedUnavailable) {
		s.fellBack.Store(true)
		var zero V
		return zero, false, false, nil
	}
	if err == nil {
		s.answered()
	}
	return a.v, a.loaded, true, err
}

// answered notes that the shared cache answered: what the local cache
// learnt while it could not may have been invalidated meanwhile, so it goes.
func (s *sharedValues[V]) answered() {
	if s.fellBack.Load() && s.fellBack.Swap(false) {
		s.local.Clear()
	}
}

// fetchShared is one shared Fetch of k; loaded reports that load ran (the
// shared cache had no value). A value this version cannot read (written by
// another version of the SDK) counts as a miss.
func (s *sharedValues[V]) fetchShared(ctx context.Context, k string, load func(context.Context) (V, time.Time, error)) (v V, loaded bool, err error) {
	var (
		fresh V
		ran   bool
	)
	raw, err := s.shared.Fetch(ctx, s.key(k), func(ctx context.Context) ([]byte, time.Duration, error) {
		v, expires, err := load(ctx)
		if err != nil {
			return nil, 0, err
		}
		fresh, ran = v, true
		b, err := s.encode(v)
		if err != nil {
			return nil, 0, nil // handed to this caller, stored nowhere
		}
		return b, s.ttl(expires), nil
	})
	var zero V
	switch {
	case ran:
		return fresh, true, nil
	case err != nil:
		return zero, false, err
	}
	if v, err := s.decode(raw); err == nil {
		return v, false, nil
	}
	v, expires, err := load(ctx)
	if err != nil {
		return zero, true, err
	}
	if b, err := s.encode(v); err == nil {
		_ = s.shared.Set(ctx, s.key(k), b, s.ttl(expires))
	}
	return v, true, nil
}

// ttl is how long a value that expires then stays: none for a zero time.
func (s *sharedValues[V]) ttl(expires time.Time) time.Duration {
	if expires.IsZero() {
		return 0
	}
	return expires.Sub(s.clock.Now())
}

// set stores v for k in the shared cache; false when it cannot answer.
func (s *sharedValues[V]) set(ctx context.Context, k string, v V, expires time.Time) bool {
	b, err := s.encode(v)
	if err == nil {
		err = s.shared.Set(ctx, s.key(k), b, s.ttl(expires))
	}
	if errors.Is(err, ErrSharedUnavailable) {
		s.fellBack.Store(true)
		return false
	}
	return err == nil
}

// delete drops k from the shared cache, and makes sure that this client's
// callers from now on do not join a fetch of k started before (those
// already waiting for it still get its answer). It does no more than the
// shared cache's own timeout allows; an invalidation it could not deliver
// is the shared cache's to retry.
func (s *sharedValues[V]) delete(k string) {
	s.flights.Delete(k)
	_ = s.shared.Delete(context.Background(), s.key(k))
}

// sharedFormat is the first byte of every value the client writes to a
// shared cache: a value written by a version that lays values out
// differently is not read, but loaded again.
const sharedFormat = '1'

// encodeBalance and decodeBalance lay a balance out for a shared cache: the
// Balance as JSON. Usage and BonusAllowance were pointers at first; a null
// one, as a pointer wrote it, reads as the zero value they now are, so the
// format did not change.
func encodeBalance(b *Balance) ([]byte, error) {
	out, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	return append([]byte{sharedFormat}, out...), nil
}

func decodeBalance(raw []byte) (*Balance, error) {
	if len(raw) == 0 || raw[0] != sharedFormat {
		return nil, errors.New("sheen: a shared balance in another format")
	}
	b := new(Balance)
	if err := json.Unmarshal(raw[1:], b); err != nil {
		return nil, err
	}
	return b, nil
}

// linkRecord is a download link as a shared cache holds it: signed URL
// and all (the shared cache keeps it from prying eyes), with the request it
// answered. Its layout is sharedFormat's: a version that says nothing is
// left out, as the nil *ExportVersion of earlier releases was, so replicas
// on either side of that change read each other's records.
type linkRecord struct {
	URL       string        `json:"u"`
	ExpiresAt time.Time     `json:"e,omitzero"`
	Filename  string        `json:"f,omitempty"`
	Size      int64         `json:"s,omitempty"`
	Version   ExportVersion `json:"v,omitzero"`
	Kind      linkKind      `json:"k"`
	ID        string        `json:"i"`
	UserID    string        `json:"w"`
}

func encodeLink(l *DownloadLink) ([]byte, error) {
	out, err := json.Marshal(linkRecord{
		URL: l.SignedURL(), ExpiresAt: l.ExpiresAt, Filename: l.Filename, Size: l.Size, Version: l.Version,
		Kind: l.from.kind, ID: l.from.id, UserID: l.from.userID,
	})
	if err != nil {
		return nil, err
	}
	return append([]byte{sharedFormat}, out...), nil
}

func decodeLink(raw []byte) (*DownloadLink, error) {
	var r linkRecord
	if len(raw) == 0 || raw[0] != sharedFormat {
		return nil, errors.New("sheen: a shared link in another format")
	}
	if err := json.Unmarshal(raw[1:], &r); err != nil {
		return nil, err
	}
	if !isAbsoluteHTTPURL(r.URL) {
		return nil, errors.New("sheen: a shared link without a usable URL")
	}
	return &DownloadLink{
		signed: &r.URL, ExpiresAt: r.ExpiresAt, Filename: r.Filename, Size: r.Size, Version: r.Version,
		from: linkRequest{kind: r.Kind, id: r.ID, userID: r.UserID},
	}, nil
}
