package sheen

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkCache measures the caches against baselines from the same run and
// reports ratios; its ns/op means nothing and shows as 0. Each case runs its
// two sides in turn, three rounds, and reports the medians.
//
//   - balances, balances-bucketed, links: a hit against a miss through the
//     public API, the miss asking a loopback worker (balances of v2.1's
//     shape, or the deployed worker's with three buckets).
//     hit-speedup-x = miss time / hit time. cache-hit-* is the cache's own
//     share of a hit (the lock and the lookup: with the system clock a hit
//     reads no clock); copy-* is the caller's copy of the cached value
//     alone (a struct copied into the caller's variable; a bucketed
//     balance's buckets are shared, read through Buckets); the rest of a
//     hit is checking options, telemetry and returning.
//     cache-hit-speedup-x = miss time / the cache's share.
//   - balances-full: a Balance miss for a new user once the balance cache is
//     full (100k users cycling through its 10k bound), against invalidating
//     one user and asking again on an otherwise empty cache. full/empty-x
//     near 1 means eviction costs nothing next to a request.
//   - cache-full: the cache alone with a trivial loader: a miss on a full
//     100k-entry cache (which evicts one) against a miss then a Delete on an
//     empty one (the same work: one entry in, one out). full/empty-x near 1
//     means O(1) eviction; a scan of the entries shows as thousands.
//
// Run it with: go test -run '^$' -bench Cache .
func BenchmarkCache(b *testing.B) {
	for _, shape := range []struct{ name, body string }{
		{"balances", benchBalanceV21},
		{"balances-bucketed", benchBalanceBucketed},
	} {
		b.Run(shape.name, func(b *testing.B) {
			c, srv := benchCacheClient(b, shape.body)
			defer srv.Close()
			ctx := context.Background()
			if _, err := c.Billing.Balance(ctx, "u1"); err != nil {
				b.Fatal(err)
			}
			hit, miss := compare(b, func() {
				if _, err := c.Billing.Balance(ctx, "u1"); err != nil {
					b.Fatal(err)
				}
			}, func() {
				c.Billing.InvalidateBalance("u2")
				if _, err := c.Billing.Balance(ctx, "u2"); err != nil {
					b.Fatal(err)
				}
			})
			own := cacheHit(b, c.billing.cache, "u1")
			cached, _ := c.billing.cache.Get("u1")
			reportHitMiss(b, hit, miss, own, measure(func() { balanceSink = *cached }))
		})
	}
	b.Run("links", func(b *testing.B) {
		c, srv := benchCacheClient(b, benchBalanceV21)
		defer srv.Close()
		ctx := context.Background()
		if _, err := c.Exports.ProjectLink(ctx, "p1", "u1"); err != nil {
			b.Fatal(err)
		}
		hit, miss := compare(b, func() {
			if _, err := c.Exports.ProjectLink(ctx, "p1", "u1"); err != nil {
				b.Fatal(err)
			}
		}, func() {
			c.Exports.forgetProject("p2", "u1")
			if _, err := c.Exports.ProjectLink(ctx, "p2", "u1"); err != nil {
				b.Fatal(err)
			}
		})
		key := linkRequest{linkProject, "p1", "u1"}.key()
		own := cacheHit(b, c.exports.links, key)
		cached, _ := c.exports.links.Get(key)
		reportHitMiss(b, hit, miss, own, measure(func() { linkSink = *cached }))
	})
	b.Run("balances-full", func(b *testing.B) {
		full, srvFull := benchCacheClient(b, benchBalanceV21)
		defer srvFull.Close()
		empty, srvEmpty := benchCacheClient(b, benchBalanceV21)
		defer srvEmpty.Close()
		ctx := context.Background()
		cache := full.billing.cache
		far := time.Now().Add(time.Hour)
		for i := range balanceCacheMaxUsers {
			cache.Set(fmt.Sprint("filler-", i), &Balance{}, far)
		}
		users := benchKeys("user-", 100_000)
		i := 0
		f, e := compare(b, func() {
			if _, err := full.Billing.Balance(ctx, users[i%len(users)]); err != nil {
				b.Fatal(err)
			}
			i++
		}, func() {
			empty.Billing.InvalidateBalance("u2")
			if _, err := empty.Billing.Balance(ctx, "u2"); err != nil {
				b.Fatal(err)
			}
		})
		if n := cache.Len(); n != balanceCacheMaxUsers {
			b.Fatalf("the balance cache holds %d users, want it full (%d)", n, balanceCacheMaxUsers)
		}
		reportFullEmpty(b, f, e)
	})
	b.Run("cache-full", func(b *testing.B) {
		const size = 100_000
		ctx := context.Background()
		load := func(context.Context) (int, time.Time, error) { return 1, time.Now().Add(time.Hour), nil }
		empty := newTTLCache[int](systemClock{}, size)
		fresh := benchKeys("fresh-", size)
		full := newTTLCache[int](systemClock{}, size)
		for _, k := range benchKeys("filler-", size) {
			full.Fetch(ctx, k, load)
		}
		// Twice as many keys as room, visited in turn: every one misses.
		cycle := benchKeys("cycle-", 2*size)
		i, j := 0, 0
		f, e := compare(b, func() {
			full.Fetch(ctx, cycle[i%len(cycle)], load)
			i++
		}, func() {
			k := fresh[j%len(fresh)]
			empty.Fetch(ctx, k, load)
			empty.Delete(k)
			j++
		})
		if n := full.Len(); n != size {
			b.Fatalf("the cache holds %d, want it full (%d)", n, size)
		}
		if n := empty.Len(); n != 0 {
			b.Fatalf("the baseline cache holds %d, want it empty", n)
		}
		hits := 0
		for range 1000 {
			if _, ok := full.Get(cycle[i%len(cycle)]); ok {
				hits++
			}
			i++
		}
		if hits > 0 {
			b.Fatalf("%d of the next 1000 keys are cached: the full run did not only miss", hits)
		}
		reportFullEmpty(b, f, e)
	})
}

// cost is the time and allocations of one call of an operation.
type cost struct{ ns, allocs float64 }

// compare measures a and b in turn, three rounds, and returns the medians.
func compare(tb testing.TB, a, b func()) (ca, cb cost) {
	tb.Helper()
	var as, bs []cost
	for range 3 {
		as = append(as, measure(a))
		bs = append(bs, measure(b))
	}
	return median(as), median(bs)
}

// measure runs op in batches of growing size until one takes 200ms, and
// returns that batch's cost per call (allocations of the whole process, as
// testing.B counts them).
func measure(op func()) cost {
	for n := 1; ; n *= 4 {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		for range n {
			op()
		}
		d := time.Since(start)
		runtime.ReadMemStats(&after)
		if d >= 200*time.Millisecond || n >= 1<<28 {
			return cost{float64(d.Nanoseconds()) / float64(n), float64(after.Mallocs-before.Mallocs) / float64(n)}
		}
	}
}

func median(cs []cost) cost {
	slices.SortFunc(cs, func(a, b cost) int { return cmp.Compare(a.ns, b.ns) })
	return cs[len(cs)/2]
}

// cacheHit measures the cache's own share of a hit on key: Fetch with a
// loader made beforehand.
func cacheHit[V any](b *testing.B, c *ttlCache[V], key string) cost {
	b.Helper()
	ctx := context.Background()
	load := func(context.Context) (V, time.Time, error) {
		var zero V
		return zero, time.Time{}, errors.New("a load on a hit")
	}
	return measure(func() {
		if _, err := c.Fetch(ctx, key, load); err != nil {
			b.Fatal(err)
		}
	})
}

// The sinks keep the benchmarked copies from being optimised away.
var (
	balanceSink Balance
	linkSink    DownloadLink
)

func reportHitMiss(b *testing.B, hit, miss, own, copied cost) {
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(hit.ns, "hit-ns")
	b.ReportMetric(hit.allocs, "hit-allocs")
	b.ReportMetric(miss.ns, "miss-ns")
	b.ReportMetric(miss.allocs, "miss-allocs")
	b.ReportMetric(miss.ns/hit.ns, "hit-speedup-x")
	b.ReportMetric(own.ns, "cache-hit-ns")
	b.ReportMetric(own.allocs, "cache-hit-allocs")
	b.ReportMetric(miss.ns/own.ns, "cache-hit-speedup-x")
	b.ReportMetric(copied.ns, "copy-ns")
	b.ReportMetric(copied.allocs, "copy-allocs")
}

func reportFullEmpty(b *testing.B, full, empty cost) {
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(empty.ns, "empty-miss-ns")
	b.ReportMetric(full.ns, "full-miss-ns")
	b.ReportMetric(full.ns/empty.ns, "full/empty-x")
}

func benchKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint(prefix, i)
	}
	return keys
}

// The two balance shapes the worker serves: v2.1's, and the deployed
// worker's with its three buckets.
const (
	benchBalanceV21      = `{"balance":{"welcomeBonus":3000,"dailyGift":900,"paid":0,"total":3900},"usage":{"todayUsed":0,"lifetimeUsed":120}}`
	benchBalanceBucketed = `{"version":7,"plan_key":"paid","subscription_status":"active","totals":{"total_seconds":5400,"paid_seconds":3600,"bonus_seconds":1800,"next_expiry_at":"2025-03-31T00:00:00Z"},"buckets":[{"source":"paid","seconds":3600,"expires_at":null},{"source":"bonus_daily","seconds":900,"expires_at":"2025-03-31T00:00:00Z"},{"source":"bonus_welcome","seconds":900,"expires_at":null}],"bonus":{"daily_minutes":15,"used_this_month_minutes":45,"monthly_cap_minutes":300},"catalog_version":"2025-09-01"}`
)

// benchCacheClient is a client of a loopback worker that answers balances
// (balance) and export links (valid for a day).
func benchCacheClient(b *testing.B, balance string) (*WorkerClient, *httptest.Server) {
	b.Helper()
	link := fmt.Sprintf(`{"success":true,"downloadUrl":"https://store.test/exports/p.zip?X-Amz-Signature=x","expiresAt":%q,"filename":"p.zip","size":"123456","version":{"id":"ver-9","prompt":"make a shop","createdAt":"2025-06-01T10:00:00.000Z"}}`,
		time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(r.URL.Path, "/export") {
			io.WriteString(w, link)
			return
		}
		io.WriteString(w, balance)
	}))
	c, err := NewWorkerClient(WithBaseURL(srv.URL), WithSecret(testSecret), WithRateLimit(1_000_000_000))
	if err != nil {
		srv.Close()
		b.Fatal(err)
	}
	return c, srv
}
