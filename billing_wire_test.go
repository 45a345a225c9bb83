package sheen

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestBillingWireChecksItselfAtDecode(t *testing.T) {
	for _, tc := range []struct {
		name string
		into interface{ UnmarshalJSON([]byte) error }
		body string
		ok   bool
	}{
		{"balance: bucketed", &balanceWire{}, `{"totals":{}}`, true},
		{"balance: v2.1", &balanceWire{}, `{"balance":{"total":"60"}}`, true},
		{"balance: neither shape", &balanceWire{}, `{"hello":"world"}`, false},
		{"balance: null", &balanceWire{}, `null`, false},
		{"balance: an empty v2.1 object", &balanceWire{}, `{"balance":{}}`, false},
		{"balance: text where a bucket source is", &balanceWire{}, `{"totals":{},"buckets":[{"source":{"a":1}}]}`, false},
		{"check: sufficient", &checkSufficientWire{}, `{"sufficient":false}`, true},
		{"check: ok instead", &checkSufficientWire{}, `{"ok":true}`, true},
		{"check: no flag", &checkSufficientWire{}, `{"balance":{"total":60}}`, false},
		{"check: null", &checkSufficientWire{}, `null`, false},
		{"check: a flag that is not a boolean", &checkSufficientWire{}, `{"sufficient":"yes"}`, false},
	} {
		err := json.Unmarshal([]byte(tc.body), tc.into)
		if (err == nil) != tc.ok {
			t.Errorf("%s: decoding %s gave %v; want ok=%v", tc.name, tc.body, err, tc.ok)
		}
	}
}

func TestBillingWireDecodeResetsEarlierValues(t *testing.T) {
	// A retried attempt decodes into the same value: nothing of the first
	// answer may survive into the second.
	var w checkSufficientWire
	if err := json.Unmarshal([]byte(`{"sufficient":true,"resume_token":"first"}`), &w); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(`{"ok":false}`), &w); err != nil {
		t.Fatal(err)
	}
	if w.sufficient() || w.ResumeToken != "" {
		t.Errorf("second answer reads sufficient=%v, resume token %q; want false and none", w.sufficient(), w.ResumeToken)
	}
}

func FuzzBalanceDecode(f *testing.F) {
	f.Add(`{"balance":{"welcomeBonus":"3000","dailyGift":900,"paid":0,"total":3900},"usage":{"todayUsed":0,"lifetimeUsed":120},"dailyResetAt":"2026-11-27T00:00:00Z"}`)
	f.Add(`{"plan_key":"paid","totals":{"total_seconds":"5400","paid_seconds":3600,"bonus_seconds":1800,"next_expiry_at":null},"buckets":[{"source":"paid","seconds":3600,"expires_at":null}]}`)
	f.Add(`{"totals":null,"buckets":[null,{"seconds":"x"}]}`)
	f.Add(`{"totals":{},"buckets":[{},{},{},{},{"source":"fifth"}],"bonus":{}}`)
	f.Fuzz(func(t *testing.T, body string) {
		var w balanceWire
		if json.Unmarshal([]byte(body), &w) != nil {
			return
		}
		b := w.toBalance()
		own := b.Buckets()
		if d := cmp.Diff(b.buckets, own, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("Buckets() differs from the buckets (-held +returned):\n%s", d)
		}
		if len(own) > 0 && &own[0] == &b.buckets[0] {
			t.Fatalf("Buckets() of %s hands out the balance's own buckets", body)
		}
		raw, err := encodeBalance(&b)
		if err != nil {
			t.Fatalf("encodeBalance of %s: %v", body, err)
		}
		back, err := decodeBalance(raw)
		if err != nil {
			t.Fatalf("decodeBalance(%s): %v", raw, err)
		}
		if d := cmp.Diff(b, *back); d != "" {
			t.Fatalf("through the shared cache's codec (-before +after):\n%s", d)
		}
	})
}
