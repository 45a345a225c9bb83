package sheentest_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

// A fake worker for a test or a demo, and a client already pointed at it.
func ExampleNewServer() {
	srv := sheentest.NewServer(sheentest.WithSigning(sheen.SigningDual), sheentest.WithUser("u1", 10*time.Minute))
	defer srv.Close()

	client, err := srv.Client()
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	bal, err := client.Billing.Balance(ctx, "u1")
	if err != nil {
		log.Fatal(err)
	}
	build, err := client.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: "u1", Prompt: "a bakery"})
	if err != nil {
		log.Fatal(err)
	}
	res, err := client.Builds.Wait(ctx, build.ID, "u1", nil)
	if err != nil {
		log.Fatal(err)
	}
	after, _ := client.Billing.Balance(ctx, "u1")
	fmt.Println(bal.Total, "->", after.Total, res.VersionID != "")
	// Output: 10m0s -> 8m0s true
}

// Faults are played on chosen calls of a route: here the worker's CDN strips
// the body of a 402.
func ExampleServer_AddFault() {
	srv := sheentest.NewServer()
	defer srv.Close()
	srv.AddFault(sheentest.Fault{Route: "POST /v1/create-preview-for-new-project", Status: 402})

	client, _ := srv.Client()
	_, err := client.Builds.CreatePreview(context.Background(), sheen.CreatePreviewRequest{UserID: "u1", Prompt: "a bakery"})
	var short *sheen.InsufficientBalanceError
	fmt.Println(errors.As(err, &short), short.Code, short.Message)
	// Output: true insufficient_ai_time Please add AI time credits to continue building
}
