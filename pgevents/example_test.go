package pgevents_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/pgevents"
)

// A service that can reach the worker's database follows its builds from
// the project_build_events table instead of the worker's HTTP endpoint, so
// following builds spends none of the worker's rate limit. (This example
// needs that database, so it is compiled but not run; the package's tests
// run the same calls against a throwaway PostgreSQL server.)
func ExampleNew() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	// Once, for example in a migration: readers are then woken by NOTIFY
	// as soon as an event commits, instead of polling every 1 to 3 s.
	if err := pgevents.InstallNotifyTrigger(ctx, pool); err != nil {
		log.Fatal(err)
	}

	// Every Follow and Wait call of this client reads from Postgres; one
	// call can choose with sheen.FollowOptions.Source instead.
	client, err := sheen.NewWorkerClientFromEnv(sheen.WithBuildEventSource(pgevents.New(pool)))
	if err != nil {
		log.Fatal(err)
	}
	userID := os.Getenv("SHEEN_USER_ID")
	build, err := client.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: userID, Prompt: "A bakery site"})
	if err != nil {
		log.Fatal(err)
	}
	res, err := client.Builds.Wait(ctx, build.ID, userID, &sheen.FollowOptions{OnEvent: func(e sheen.BuildEvent) {
		fmt.Printf("%3.0f%% %s\n", 100*e.Progress, e.Title)
	}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("preview:", res.PreviewURL)
}
