package sheen

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestBillingShortfall(t *testing.T) {
	for _, tc := range []struct {
		c    SufficientCheck
		want time.Duration
	}{
		{SufficientCheck{Required: 3 * time.Minute, Available: time.Minute, HasAvailable: true}, 2 * time.Minute},
		{SufficientCheck{Required: 3 * time.Minute}, 0},
		{SufficientCheck{Sufficient: true, Required: 3 * time.Minute, HasAvailable: true}, 0},
		{SufficientCheck{Required: time.Minute, Available: 2 * time.Minute, HasAvailable: true}, 0},
	} {
		if got := tc.c.Shortfall(); got != tc.want {
			t.Errorf("%+v.Shortfall() = %s, want %s", tc.c, got, tc.want)
		}
	}
}

func TestBillingEstimateProjectSize(t *testing.T) {
	for n, want := range map[int]ProjectSize{-1: ProjectSizeSmall, 0: ProjectSizeSmall, 9: ProjectSizeSmall, 10: ProjectSizeMedium, 49: ProjectSizeMedium, 50: ProjectSizeLarge, 5000: ProjectSizeLarge} {
		if got := EstimateProjectSize(n); got != want {
			t.Errorf("EstimateProjectSize(%d) = %s, want %s", n, got, want)
		}
	}
}

// WithBuckets keeps its own copy of what it is given and leaves the
// Balance it was called on as it was; Buckets hands out a new copy each
// time, nil when there are none.
func TestBalanceBuckets(t *testing.T) {
	given := []BalanceBucket{{Source: "paid", Remaining: time.Hour}, {Source: "bonus_daily", Remaining: time.Minute}}
	base := Balance{Total: time.Hour + time.Minute}
	b := base.WithBuckets(given...)
	given[0].Source = "changed by the builder"
	if got := base.Buckets(); got != nil {
		t.Errorf("WithBuckets changed the Balance it was called on: %+v", got)
	}
	first := b.Buckets()
	if len(first) != 2 || first[0].Source != "paid" || b.Total != base.Total {
		t.Fatalf("WithBuckets: %+v, buckets %+v; want the total kept and its own copy of the 2 buckets", b, first)
	}
	first[1].Source = "changed by the reader"
	if again := b.Buckets(); again[1].Source != "bonus_daily" {
		t.Errorf("a change to what Buckets returned came back: %+v", again)
	}
	if got := b.WithBuckets().Buckets(); got != nil {
		t.Errorf("WithBuckets() without buckets: Buckets() = %#v, want nil", got)
	}
}

// The records the previous release wrote, when Buckets was a field, to a
// shared cache (encodeBalance) or anywhere else with encoding/json: one per
// shape the worker serves.
var balanceRecordsV01 = map[string]string{
	"bucketed":   `{"Bucketed":true,"Total":5400000000000,"Paid":3600000000000,"Bonus":1800000000000,"WelcomeBonus":0,"DailyGift":0,"Usage":{"TodayUsed":0,"LifetimeUsed":0},"DailyResetAt":"0001-01-01T00:00:00Z","NextExpiryAt":"2025-03-31T00:00:00Z","Buckets":[{"Source":"paid","Remaining":3600000000000,"ExpiresAt":"0001-01-01T00:00:00Z"},{"Source":"bonus_daily","Remaining":1800000000000,"ExpiresAt":"2025-03-31T00:00:00Z"}],"BonusAllowance":{"Daily":900000000000,"UsedThisMonth":2700000000000,"MonthlyCap":18000000000000},"Plan":"paid","SubscriptionStatus":"active","CatalogVersion":"2025-09-01","Version":"7"}`,
	"v2.1":       `{"Bucketed":false,"Total":4020500000000,"Paid":120500000000,"Bonus":3900000000000,"WelcomeBonus":3000000000000,"DailyGift":900000000000,"Usage":{"TodayUsed":60000000000,"LifetimeUsed":7200000000000},"DailyResetAt":"2025-03-05T00:00:00Z","NextExpiryAt":"0001-01-01T00:00:00Z","Buckets":null,"BonusAllowance":{"Daily":0,"UsedThisMonth":0,"MonthlyCap":0},"Plan":"","SubscriptionStatus":"","CatalogVersion":"","Version":""}`,
	"no buckets": `{"Bucketed":true,"Total":60000000000,"Paid":0,"Bonus":60000000000,"WelcomeBonus":0,"DailyGift":0,"Usage":{"TodayUsed":0,"LifetimeUsed":0},"DailyResetAt":"0001-01-01T00:00:00Z","NextExpiryAt":"0001-01-01T00:00:00Z","Buckets":null,"BonusAllowance":{"Daily":0,"UsedThisMonth":0,"MonthlyCap":0},"Plan":"free","SubscriptionStatus":"","CatalogVersion":"","Version":""}`,
}

// Balance's JSON is the previous release's, Buckets now last: a record
// either release wrote reads the same in the other (encoding/json matches
// keys, not places), so replicas on either side of the change share one
// cache, and a Balance written by encoding/json reads back whole.
func TestBalanceJSONCompatible(t *testing.T) {
	for name, body := range map[string]string{"bucketed": billingBucketedBody, "v2.1": billingV21Body, "no buckets": billingTotalBody(60)} {
		t.Run(name, func(t *testing.T) {
			var w balanceWire
			if err := json.Unmarshal([]byte(body), &w); err != nil {
				t.Fatal(err)
			}
			want := w.toBalance()
			old := balanceRecordsV01[name]

			// Written before, read now: through the shared cache's codec
			// and through encoding/json.
			got, err := decodeBalance(append([]byte{sharedFormat}, old...))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, *got); d != "" {
				t.Errorf("decodeBalance of the previous release's record (-want +got):\n%s", d)
			}
			var direct Balance
			if err := json.Unmarshal([]byte(old), &direct); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, direct); d != "" {
				t.Errorf("json.Unmarshal of the previous release's record (-want +got):\n%s", d)
			}

			// Written now, read before: the same document, key for key.
			raw, err := encodeBalance(&want)
			if err != nil || len(raw) == 0 || raw[0] != sharedFormat {
				t.Fatalf("encodeBalance = %q, %v", raw, err)
			}
			var oldDoc, newDoc any
			if err := json.Unmarshal([]byte(old), &oldDoc); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw[1:], &newDoc); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(oldDoc, newDoc); d != "" {
				t.Errorf("encodeBalance's document against the previous release's (-old +new):\n%s", d)
			}
			// A Balance inside another value, by value or pointer, is
			// written the same way.
			nested, err := json.Marshal(struct {
				V Balance
				P *Balance
			}{want, &want})
			if err != nil {
				t.Fatal(err)
			}
			var both struct{ V, P any }
			if err := json.Unmarshal(nested, &both); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(oldDoc, both.V); d != "" {
				t.Errorf("a Balance field (-old +new):\n%s", d)
			}
			if d := cmp.Diff(oldDoc, both.P); d != "" {
				t.Errorf("a *Balance field (-old +new):\n%s", d)
			}
		})
	}
}

// UnmarshalJSON follows encoding/json's rules for the buckets as for every
// field (an absent key keeps them, null drops them, an array replaces
// them), and never writes the buckets it held, which copies share.
func TestBalanceUnmarshalJSONKeepsSharedBuckets(t *testing.T) {
	shared := Balance{Total: time.Hour}.WithBuckets(BalanceBucket{Source: "paid", Remaining: time.Hour}, BalanceBucket{Source: "bonus_daily"})
	for _, tc := range []struct {
		name, doc string
		want      []BalanceBucket
		total     time.Duration
	}{
		{"absent", `{"Total":60000000000}`, shared.Buckets(), time.Minute},
		{"null", `{"Buckets":null}`, nil, time.Hour},
		{"empty", `{"Buckets":[]}`, nil, time.Hour},
		{"one", `{"Buckets":[{"Source":"new","Remaining":1}]}`, []BalanceBucket{{Source: "new", Remaining: 1}}, time.Hour},
		{"more", `{"Buckets":[{"Source":"x"},{"Source":"y"},{"Source":"z"}]}`, []BalanceBucket{{Source: "x"}, {Source: "y"}, {Source: "z"}}, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			into := shared // a copy: shares shared's buckets
			if err := json.Unmarshal([]byte(tc.doc), &into); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, into.Buckets()); d != "" {
				t.Errorf("buckets read (-want +got):\n%s", d)
			}
			if into.Total != tc.total {
				t.Errorf("total %s, want %s", into.Total, tc.total)
			}
			if got := shared.Buckets(); len(got) != 2 || got[0].Source != "paid" || got[1].Source != "bonus_daily" {
				t.Errorf("decoding into a copy wrote the buckets it shared: %+v", got)
			}
		})
	}
	before := shared
	if err := json.Unmarshal([]byte(`{"Total":"soon"}`), &before); err == nil {
		t.Error("a string Total: want an error")
	}
	if d := cmp.Diff(shared, before); d != "" {
		t.Errorf("a failed decode changed the Balance (-before +after):\n%s", d)
	}
}

// Equal sees every field a Balance has, its buckets included, so go-cmp
// compares Balances without options (the buckets field is unexported) and a
// field added later cannot be left out; times are compared as instants.
func TestBalanceEqual(t *testing.T) {
	at := time.Date(2025, 3, 31, 0, 0, 0, 0, time.UTC)
	base := Balance{
		Bucketed: true, Total: time.Hour, Paid: time.Minute, Bonus: time.Second, WelcomeBonus: 2 * time.Second,
		DailyGift: 3 * time.Second, Usage: BalanceUsage{TodayUsed: time.Second}, DailyResetAt: at, NextExpiryAt: at,
		BonusAllowance: BonusAllowance{Daily: time.Minute}, Plan: "paid", SubscriptionStatus: "active",
		CatalogVersion: "2025-09-01", Version: "7",
	}.WithBuckets(BalanceBucket{Source: "paid", Remaining: time.Hour, ExpiresAt: at})
	same := base.WithBuckets(BalanceBucket{Source: "paid", Remaining: time.Hour, ExpiresAt: at.In(time.FixedZone("X", 3600))})
	same.DailyResetAt = at.In(time.FixedZone("Y", -3600))
	if !base.Equal(same) || !cmp.Equal(base, same) {
		t.Fatal("two Balances saying the same (times in other zones) are not Equal")
	}
	if d := cmp.Diff(base, same); d != "" {
		t.Fatalf("cmp.Diff of equal Balances without options:\n%s", d)
	}
	typ := reflect.TypeFor[Balance]()
	for i := range typ.NumField() {
		if !typ.Field(i).IsExported() {
			continue
		}
		changed := base
		scribble(t, reflect.ValueOf(&changed).Elem().Field(i))
		if base.Equal(changed) {
			t.Errorf("Equal ignores Balance.%s", typ.Field(i).Name)
		}
	}
	for _, other := range [][]BalanceBucket{nil, {{Source: "bonus_daily", Remaining: time.Hour, ExpiresAt: at}}, {{Source: "paid", Remaining: time.Hour, ExpiresAt: at}, {Source: "paid"}}} {
		if base.Equal(base.WithBuckets(other...)) {
			t.Errorf("Equal ignores the buckets: %v", other)
		}
	}
}
