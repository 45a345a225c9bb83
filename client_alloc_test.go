package sheen

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// cannedTransport answers every request at once from memory, so the SDK's
// own work can be told apart from the network's.
type cannedTransport struct{}

func (cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{
		StatusCode: 200, Request: r,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   io.NopCloser(strings.NewReader(`{"balance":{"welcomeBonus":3000,"dailyGift":900,"paid":0,"total":3900}}`)),
	}, nil
}

// The SDK's request path costs at most ten allocations more per call than
// a hand-signed net/http request decoding the same answer (issue #13).
// Allocation counts are deterministic, so this is a test; time is left to
// bench/core.
func TestDoAllocationsOverBare(t *testing.T) {
	c, err := NewWorkerClient(WithBaseURL("https://worker.invalid"), WithSecret(testSecret),
		WithRateLimit(1_000_000_000), WithHTTPClient(&http.Client{Transport: cannedTransport{}}))
	if err != nil {
		t.Fatal(err)
	}
	const path = "/v1/billing/balance/u1"
	var out struct {
		Balance struct{ Total int } `json:"balance"`
	}
	ctx := context.Background()
	sdk := testing.AllocsPerRun(200, func() {
		if err := c.Do(ctx, "GET", path, nil, &out); err != nil {
			t.Fatal(err)
		}
	})
	hc := &http.Client{Transport: cannedTransport{}}
	bare := testing.AllocsPerRun(200, func() {
		req, _ := http.NewRequest("GET", "https://worker.invalid"+path, nil)
		m := hmac.New(sha256.New, []byte(testSecret))
		m.Write([]byte(path))
		req.Header.Set("X-Sheen-Signature", hex.EncodeToString(m.Sum(nil)))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("Do %.0f allocations, bare %.0f", sdk, bare)
	if sdk > bare+10 {
		t.Errorf("Do makes %.0f allocations per call, the bare request %.0f: want at most 10 more", sdk, bare)
	}
}
