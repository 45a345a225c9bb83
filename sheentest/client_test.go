package sheentest_test

import (
	"context"
	"testing"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

// noLongWaits is a clock on which only short waits end: the client's
// pacing at 100,000 requests a second is served, but a poll interval (1 s
// and more) or a pace of 60 a minute never elapses. A test that finishes on
// it did not wait for either.
type noLongWaits struct{}

func (noLongWaits) Now() time.Time { return time.Now() }
func (noLongWaits) After(d time.Duration) <-chan time.Time {
	if d < 50*time.Millisecond {
		return time.After(d)
	}
	return nil // never
}

func within(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// The ready client against a default server neither paces itself nor is
// paced by the server: twenty calls in a row never wait.
func TestClientIsNotPaced(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t))
	c, err := srv.Client(sheen.WithClock(noLongWaits{}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := within(t)
	for i := range 20 {
		if _, err := c.Billing.RefreshBalance(ctx, "u1"); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	if s := c.RateLimit(); s.AdvertisedLimit != -1 || s.Remaining != -1 {
		t.Errorf("the default server advertised a rate limit: %+v", s)
	}
	for _, r := range srv.Requests() {
		if r.Status != 200 {
			t.Fatalf("%s answered %d", r.Path, r.Status)
		}
	}
}

// A server that rate limits gets a client paced at its limit, as a
// production client configured for that worker would be; options win.
func TestClientPacesAtTheServersLimit(t *testing.T) {
	limited := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithRateLimit(120))
	c, err := limited.Client()
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RateLimit().ConfiguredPerMinute; got != 120 {
		t.Errorf("client paced at %d a minute, want the server's 120", got)
	}
	c, err = limited.Client(sheen.WithRateLimit(30))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RateLimit().ConfiguredPerMinute; got != 30 {
		t.Errorf("an explicit WithRateLimit(30) gave %d", got)
	}
	if _, err := limited.Client(sheen.WithRateLimit(-1)); err == nil {
		t.Error("an invalid option is not reported")
	}
}

// Following a build that moves step by step: the reader is woken by each
// event the server writes, never by a poll interval (which never elapses on
// this clock), and Wait returns once the metadata phase is over.
func TestClientIsWokenByEachEvent(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithBuildPace(sheentest.PaceManual, 0))
	c, err := srv.Client(sheen.WithClock(noLongWaits{}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := within(t)
	b, err := c.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: "u1", Prompt: "a bakery"})
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan sheen.BuildEvent)
	type outcome struct {
		res *sheen.BuildResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := c.Builds.Wait(ctx, b.ID, "u1", &sheen.FollowOptions{OnEvent: func(e sheen.BuildEvent) {
			select {
			case seen <- e:
			case <-ctx.Done():
			}
		}})
		done <- outcome{res, err}
	}()
	steps := 0
	for srv.Step(b.ID) {
		steps++
		select {
		case <-seen: // read by a reader that only a wake-up can have moved
		case <-ctx.Done():
			t.Fatalf("event %d was never read: %v", steps, ctx.Err())
		}
	}
	out := <-done
	if out.err != nil {
		t.Fatal(out.err)
	}
	if !out.res.MetadataDone || out.res.Events != steps || out.res.VersionID == "" {
		t.Fatalf("result %+v after %d steps", out.res, steps)
	}
}

// ClientOptions make a client of your own (for httpmock, a stub) as quick
// as the ready one.
func TestClientOptions(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t))
	opts := append(sheentest.ClientOptions(), sheen.WithBaseURL(srv.URL), sheen.WithSecret(srv.Secret), sheen.WithClock(noLongWaits{}))
	c, err := sheen.NewWorkerClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx := within(t)
	for i := range 10 {
		if _, err := c.Billing.RefreshBalance(ctx, "u1"); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
}
