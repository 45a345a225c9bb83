package sheentest_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/jarcoal/httpmock"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

// In a test, NewServer(WithTest(t)) closes itself when the test ends, and
// its Client is ready: not paced, and woken by each build event instead of
// polling. Here a build is moved by hand with Step, and Wait follows it.
func ExampleServer_Client() {
	srv := sheentest.NewServer(sheentest.WithBuildPace(sheentest.PaceManual, 0), sheentest.WithUser("u1", time.Hour))
	defer srv.Close()
	client, err := srv.Client()
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	build, err := client.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: "u1", Prompt: "a bakery"})
	if err != nil {
		log.Fatal(err)
	}
	go srv.Finish(build.ID) // every step, as the real worker would over a minute or two

	res, err := client.Builds.Wait(ctx, build.ID, "u1", nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.VersionID, res.Events, "events, metadata done:", res.MetadataDone)
	fmt.Println(srv.Calls(sheen.RouteCreatePreview), "build started")
	// Output:
	// ver_0003 8 events, metadata done: true
	// 1 build started
}

// Tests that use httpmock rather than a server answer with the fake
// worker's golden fixtures, matched by route.
func ExampleFixtureNamed() {
	mock := httpmock.NewMockTransport()
	method, url := sheentest.MatchRoute(sheen.RouteBalance)
	mock.RegisterRegexpResponder(method, url, sheentest.FixtureNamed("balance").Respond)
	method, url = sheentest.MatchRoute(sheen.RouteCreatePreview)
	mock.RegisterRegexpResponder(method, url, sheentest.FixtureNamed("create-preview.insufficient").Respond)

	client, err := sheen.NewWorkerClient(append(sheentest.ClientOptions(),
		sheen.WithBaseURL("https://worker.test"),
		sheen.WithSecret("test-secret-of-at-least-32-characters!"),
		sheen.WithHTTPClient(&http.Client{Transport: mock}),
	)...)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	bal, err := client.Billing.Balance(ctx, "any-user")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("balance:", bal.Total, "of which paid", bal.Paid)
	_, err = client.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: "any-user", Prompt: "a bakery"})
	var short *sheen.InsufficientBalanceError
	if errors.As(err, &short) {
		fmt.Println("refused:", short.Code, "has", short.Available, "needs", short.Required)
	}
	fmt.Println(mock.GetTotalCallCount(), "requests answered")
	// Output:
	// balance: 2h5m0s of which paid 1h0m0s
	// refused: insufficient_ai_time has 30s needs 2m0s
	// 2 requests answered
}
