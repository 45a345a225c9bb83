package sheentest_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

const paidUser = "7d1f7e52-5b0e-4c7a-9a59-2f2d0f0a6b11"

func deployedServer(t *testing.T, opts ...sheentest.Option) *sheentest.Server {
	return sheentest.NewServer(append([]sheentest.Option{
		sheentest.WithTest(t), sheentest.WithSigning(sheen.SigningDual), sheentest.WithUser(paidUser, time.Hour),
	}, opts...)...)
}

// Inputs the deployed worker's inline JSON.stringify check used to refuse
// now start a build: integer-like metadata keys, -0, an integer above 2^53,
// U+2028 in the prompt.
func TestDeployedInlineCheckAcceptsEveryBody(t *testing.T) {
	srv := deployedServer(t)
	c := client(t, srv)
	b, err := c.Builds.CreatePreview(context.Background(), sheen.CreatePreviewRequest{
		UserID: paidUser,
		Prompt: "A bakery\u2028site <b>&</b> \U0001F600",
		Metadata: map[string]any{
			"2": "two", "10": "ten", "b": math.Copysign(0, -1), "big": json.Number("12345678901234567890"), "n": uint64(1) << 60,
		},
	})
	if err != nil {
		t.Fatalf("CreatePreview: %v", err)
	}
	if b.ID == "" {
		t.Fatal("no build id")
	}
	// A raw body through Do is rewritten into the worker's form too.
	raw := json.RawMessage("{\n  \"userId\": \"" + paidUser + "\",\n  \"prompt\": \"x\",\n  \"metadata\": {\"10\": 1, \"2\": 1.50}\n}\n")
	if err := c.Do(context.Background(), "POST", "/v1/create-preview-for-new-project", raw, nil); err != nil {
		t.Fatalf("Do with a pretty raw body: %v", err)
	}
}

// A body that is not what JSON.stringify writes back is refused by the
// inline check, as the deployed worker refuses it: 401 with serverTime.
func TestDeployedInlineCheckRefusesOtherBytes(t *testing.T) {
	srv := deployedServer(t)
	body := `{"userId":"` + paidUser + `","prompt":"x","metadata":{"b":1,"2":2}}`
	ts := time.Now().Unix()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/create-preview-for-new-project", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(sheen.HeaderTimestamp, itoa(ts))
	req.Header.Set(sheen.HeaderSignature, hmacHex(srv.Secret, itoa(ts)+body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 401 || !strings.Contains(string(got), `"serverTime"`) {
		t.Fatalf("%d %s; want 401 with serverTime", resp.StatusCode, got)
	}
}

// A client left on the default scheme meets the deployed worker, is refused
// once, switches to the dual scheme for good and succeeds; one that chose
// v2.1 explicitly gets an error that says what to change.
func TestDefaultSchemeSwitchesToDual(t *testing.T) {
	srv := deployedServer(t)
	auto, err := sheen.NewWorkerClient(append(sheentest.ClientOptions(), sheen.WithBaseURL(srv.URL), sheen.WithSecret(srv.Secret))...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auto.Billing.Balance(context.Background(), paidUser); err != nil {
		t.Fatalf("Balance: %v", err)
	}
	if auto.Signing() != sheen.SigningDual {
		t.Fatalf("scheme %v after the deployed worker's refusal", auto.Signing())
	}
	if n := srv.Calls(sheen.RouteBalance); n != 2 {
		t.Fatalf("%d requests; want 2 (one refused, one signed dual)", n)
	}

	fixed, err := sheen.NewWorkerClient(append(sheentest.ClientOptions(), sheen.WithBaseURL(srv.URL), sheen.WithSecret(srv.Secret), sheen.WithSigning(sheen.SigningBodyPath))...)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fixed.Billing.Balance(context.Background(), paidUser)
	var ae *sheen.AuthError
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), "WORKER_SIGNING=dual") || !strings.Contains(err.Error(), "SigningDual") {
		t.Fatalf("explicit bodypath: %v; want an *AuthError naming the dual scheme", err)
	}
	if fixed.Signing() != sheen.SigningBodyPath {
		t.Fatal("an explicit scheme must not change")
	}
}

// Clock skew: the inline route's 401 with serverTime and the middleware's
// 408 with timestamp both teach the client the worker's clock.
func TestDeployedSkewLearnt(t *testing.T) {
	for name, first := range map[string]func(c *sheen.WorkerClient) error{
		"inline 401 serverTime": func(c *sheen.WorkerClient) error {
			_, err := c.Builds.CreatePreview(context.Background(), sheen.CreatePreviewRequest{UserID: paidUser, Prompt: "x"})
			return err
		},
		"middleware 408 timestamp": func(c *sheen.WorkerClient) error {
			_, err := c.Billing.Balance(context.Background(), paidUser)
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := deployedServer(t, sheentest.WithClockSkew(-10*time.Minute))
			c := client(t, srv)
			if err := first(c); err != nil {
				t.Fatalf("%v", err)
			}
			if off := c.ClockOffset(); off > -9*time.Minute || off < -11*time.Minute {
				t.Fatalf("offset %s, want about -10m", off)
			}
		})
	}
}

// The router refuses route parameters over 100 characters before anything
// else, as the deployed one does.
func TestDeployedRouteParamLimit(t *testing.T) {
	srv := deployedServer(t)
	resp, err := http.Get(srv.URL + "/v1/billing/balance/" + strings.Repeat("a", 101))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("status %d, want 404", resp.StatusCode)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func hmacHex(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}
