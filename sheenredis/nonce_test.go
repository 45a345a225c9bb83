package sheenredis

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/redistest"
	"github.com/sheenapps/sheen-go/sheenhttp"
)

// replica is one replica's Verifier on a NonceStore of its own.
func replica(t *testing.T, rdb *redis.Client, o NonceOptions) *sheenhttp.Verifier {
	t.Helper()
	s, err := NewNonceStore(rdb, o)
	if err != nil {
		t.Fatal(err)
	}
	return &sheenhttp.Verifier{Secret: testSecret, Scheme: sheen.SigningDual, Nonces: s}
}

// send hands v's Middleware a request with a fresh timestamp, nonce and a
// signature that does not verify: the nonce is used up before the
// signature is checked, so a first sending is a 403 and a replay a 409.
func send(v *sheenhttp.Verifier, nonce string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/v1/anything", nil)
	r.Header.Set(sheen.HeaderTimestamp, strconv.FormatInt(time.Now().Unix(), 10))
	r.Header.Set(sheen.HeaderNonce, nonce)
	r.Header.Set(sheen.HeaderSignatureV2, strings.Repeat("ab", 32))
	rec := httptest.NewRecorder()
	v.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(rec, r)
	return rec
}

func TestNonceStoreRefusesAReplayToAnotherReplica(t *testing.T) {
	srv := redistest.Shared(t)
	rdb := srv.Client(t)
	o := NonceOptions{Options: Options{Prefix: srv.Prefix(t)}}
	a, b := replica(t, rdb, o), replica(t, rdb, o)
	if rec := send(a, "nonce-1"); rec.Code != http.StatusForbidden {
		t.Fatalf("first sending: %d %s; want 403 (bad signature, nonce used up)", rec.Code, rec.Body)
	}
	if rec := send(b, "nonce-1"); rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "REPLAY_ATTACK_DETECTED") {
		t.Fatalf("replay to another replica: %d %s; want 409 REPLAY_ATTACK_DETECTED", rec.Code, rec.Body)
	}
	if rec := send(b, "nonce-2"); rec.Code != http.StatusForbidden {
		t.Fatalf("another nonce: %d; want 403", rec.Code)
	}
	for _, k := range keysUnder(t, rdb, o.Prefix) {
		if strings.Contains(k, "nonce") {
			t.Errorf("key %q holds the nonce", k)
		}
	}
}

func TestNonceStoreFailsClosedByDefault(t *testing.T) {
	srv := redistest.Own(t, redistest.Options{})
	logs := &logCounter{}
	v := replica(t, srv.Client(t), NonceOptions{Options: shortOptions("p", logs)})
	srv.StopServer()
	for range 3 {
		rec := send(v, "nonce-1")
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "NONCE_STORE_UNAVAILABLE") {
			t.Fatalf("with Redis down: %d %v %s; want 503 NONCE_STORE_UNAVAILABLE with Retry-After", rec.Code, rec.Header(), rec.Body)
		}
	}
	err := v.Verify(http.MethodGet, "/x", http.Header{
		sheen.HeaderTimestamp: {strconv.FormatInt(time.Now().Unix(), 10)}, sheen.HeaderNonce: {"n"}, sheen.HeaderSignatureV2: {"ab"},
	}, nil)
	if !errors.Is(err, sheen.ErrSharedUnavailable) || !strings.Contains(err.Error(), "replay") {
		t.Errorf("Verify with Redis down: %v; want an error that says why, wrapping ErrSharedUnavailable", err)
	}
	if n := logs.count(slog.LevelWarn); n != 1 {
		t.Errorf("%d warnings, want 1: %q", n, logs.all())
	}
	if err := srv.StartServer(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the nonce store answers again", func() bool { return send(v, "nonce-1").Code == http.StatusForbidden })
}

func TestNonceStoreFailOpenChecksLocallyAndTellsRedisAfterwards(t *testing.T) {
	srv := redistest.Own(t, redistest.Options{})
	rdb := srv.Client(t)
	logs := &logCounter{}
	o := NonceOptions{Options: shortOptions("p", logs), FailOpen: true}
	a, b := replica(t, rdb, o), replica(t, rdb, o)
	srv.StopServer()
	if rec := send(a, "nonce-1"); rec.Code != http.StatusForbidden {
		t.Fatalf("fail open with Redis down: %d %s; want the signature checked (403)", rec.Code, rec.Body)
	}
	if rec := send(a, "nonce-1"); rec.Code != http.StatusConflict {
		t.Fatalf("a replay to the same replica during the outage: %d; want 409 from its own store", rec.Code)
	}
	if n := logs.count(slog.LevelWarn); n != 1 || !strings.Contains(logs.all()[0], "fail open") {
		t.Errorf("warnings %q; want one that says it fails open", logs.all())
	}
	if err := srv.StartServer(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a's store answers again", func() bool {
		return send(a, "probe-"+strconv.FormatInt(time.Now().UnixNano(), 10)).Code == http.StatusForbidden && logs.count(slog.LevelInfo) > 0
	})
	// a writes what it saw in the background.
	key := a.Nonces.(*NonceStore).key("nonce-1")
	eventually(t, "a tells Redis what it saw", func() bool { return rdb.Exists(context.Background(), key).Val() == 1 })
	if rec := send(b, "nonce-1"); rec.Code != http.StatusConflict {
		t.Fatalf("replay to another replica after the outage: %d; want 409 (a told Redis what it saw)", rec.Code)
	}
}

// With FailOpen, a nonce used while Redis answered and replayed to the same
// replica during an outage is refused: the replica's own store knew it.
func TestNonceStoreFailOpenRefusesAReplayOfANonceUsedBeforeTheOutage(t *testing.T) {
	srv := redistest.Own(t, redistest.Options{})
	rdb := srv.Client(t)
	o := NonceOptions{Options: shortOptions("p", nil), FailOpen: true}
	a := replica(t, rdb, o)
	if rec := send(a, "nonce-1"); rec.Code != http.StatusForbidden {
		t.Fatalf("first sending: %d %s; want 403", rec.Code, rec.Body)
	}
	if rec := send(a, "nonce-1"); rec.Code != http.StatusConflict {
		t.Fatalf("replay while Redis answers: %d; want 409", rec.Code)
	}
	srv.StopServer()
	if rec := send(a, "nonce-1"); rec.Code != http.StatusConflict {
		t.Fatalf("replay to the same replica during the outage: %d %s; want 409 from its own store", rec.Code, rec.Body)
	}
	if rec := send(a, "nonce-2"); rec.Code != http.StatusForbidden {
		t.Fatalf("a new nonce during the outage: %d; want 403 (checked on this replica, let through to the signature)", rec.Code)
	}
}

// Without FailOpen the replica's own store is not fed: it is never asked.
func TestNonceStoreFailClosedKeepsNoLocalCopy(t *testing.T) {
	srv := redistest.Shared(t)
	local := sheenhttp.NewMemoryNonceStore(0, 0)
	s, err := NewNonceStore(srv.Client(t), NonceOptions{Options: Options{Prefix: srv.Prefix(t)}, Local: local})
	if err != nil {
		t.Fatal(err)
	}
	if seen, err := s.Check("nonce-1", time.Now()); seen || err != nil {
		t.Fatalf("Check: %v %v", seen, err)
	}
	if n := local.Len(); n != 0 {
		t.Errorf("the local store holds %d nonce(s) although FailOpen is off", n)
	}
}

// A sheenhttp.Verifier reads how long the store keeps nonces through this
// method, to refuse a TTL under twice its Skew.
var _ interface{ NonceTTL() time.Duration } = (*NonceStore)(nil)
