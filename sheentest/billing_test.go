package sheentest_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

// Billing history comes as the worker sends it and as History documents:
// the latest events, newest first, limit counting from the newest.
func TestHistoryIsTheLatestNewestFirst(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t))
	c := client(t, srv)
	ctx := t.Context()
	srv.Credit("u1", time.Minute)
	srv.Credit("u1", 2*time.Minute)
	b, err := c.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: "u1", Prompt: "x"}) // charged when it deploys, at once
	if err != nil {
		t.Fatal(err)
	}
	srv.Credit("u1", 3*time.Minute)

	show := func(evs []sheen.BillingEvent) []string {
		var out []string
		for _, e := range evs {
			out = append(out, fmt.Sprintf("%s %s %s", e.Type, e.Amount, e.Reason))
		}
		return out
	}
	all := []string{"purchase 3m0s payment", "consumption 2m0s build " + b.ID, "purchase 2m0s payment", "purchase 1m0s payment"}
	for _, tc := range []struct {
		limit int
		want  []string
	}{
		{0, all}, {100, all}, {4, all}, {2, all[:2]}, {1, all[:1]},
	} {
		evs, err := c.Billing.History(ctx, "u1", tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if got := show(evs); !slices.Equal(got, tc.want) {
			t.Errorf("limit %d: %q, want %q", tc.limit, got, tc.want)
		}
		for i := 1; i < len(evs); i++ {
			if evs[i].Timestamp.After(evs[i-1].Timestamp) {
				t.Errorf("limit %d: event %d (%s) is newer than event %d (%s)", tc.limit, i, evs[i].Timestamp, i-1, evs[i-1].Timestamp)
			}
		}
	}
}
