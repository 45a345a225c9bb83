package sheen

import (
	"encoding/json"
	"testing"
)

func FuzzBalanceDecode(f *testing.F) {
	f.Add(`{"balance":{"welcomeBonus":"3000","dailyGift":900,"paid":0,"total":3900},"usage":{"todayUsed":0,"lifetimeUsed":120},"dailyResetAt":"2026-11-27T00:00:00Z"}`)
	f.Add(`{"plan_key":"paid","totals":{"total_seconds":"5400","paid_seconds":3600,"bonus_seconds":1800,"next_expiry_at":null},"buckets":[{"source":"paid","seconds":3600,"expires_at":null}]}`)
	f.Add(`{"totals":null,"buckets":[null,{"seconds":"x"}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		var w balanceWire
		if json.Unmarshal([]byte(body), &w) != nil {
			return
		}
		if b, ok := w.toBalance(); ok && b == nil {
			t.Fatal("ok with a nil balance")
		}
	})
}
