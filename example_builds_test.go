package sheen_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

// CreatePreview starts a build and returns at once: the worker queues it.
// Follow it with Wait (or Events). A user short of AI time gets an
// *InsufficientBalanceError, whatever shape the worker's 402 had.
func ExampleBuildsService_CreatePreview() {
	worker := sheentest.NewServer(sheentest.WithUser("user-42", time.Hour), sheentest.WithUser("user-7", 30*time.Second))
	defer worker.Close()
	client, err := worker.Client()
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	build, err := client.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{
		UserID:    "user-42",
		Prompt:    "A landing page for a neighbourhood bakery, with opening hours",
		Framework: sheen.FrameworkReact,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("build", build.BuildID, "for project", build.ProjectID, "is", build.Status)

	_, err = client.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: "user-7", Prompt: "A portfolio site"})
	var short *sheen.InsufficientBalanceError
	if errors.As(err, &short) {
		fmt.Println("refused: has", short.Available, "needs", short.Required)
	}
	// Output:
	// build bld_0002 for project proj_0001 is queued
	// refused: has 30s needs 2m0s
}

// Versions yields a project's versions, newest first, fetching pages as the
// loop goes on.
func ExampleBuildsService_Versions() {
	worker := sheentest.NewServer(sheentest.WithUser("user-42", time.Hour))
	defer worker.Close()
	client, err := worker.Client()
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	first, err := client.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: "user-42", Prompt: "A bakery site"})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := client.Builds.Wait(ctx, first.BuildID, "user-42"); err != nil {
		log.Fatal(err)
	}
	update, err := client.Builds.UpdateProject(ctx, sheen.UpdateProjectRequest{UserID: "user-42", ProjectID: first.ProjectID, Prompt: "Add a menu page"})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := client.Builds.Wait(ctx, update.BuildID, "user-42"); err != nil {
		log.Fatal(err)
	}

	for v, err := range client.Builds.Versions(ctx, first.ProjectID) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(v.ID, v.Name, v.Type, "rollback possible:", v.CanRollback)
	}
	// Output:
	// ver_0005 v1.0.1 update rollback possible: true
	// ver_0003 v1.0.0 create rollback possible: true
}

// Rollback puts an earlier version back. Give it an IdempotencyKey of your
// own to retry safely across calls: the worker replays its first answer.
func ExampleBuildsService_Rollback() {
	worker := sheentest.NewServer(sheentest.WithUser("user-42", time.Hour))
	defer worker.Close()
	client, err := worker.Client()
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	first, err := client.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: "user-42", Prompt: "A bakery site"})
	if err != nil {
		log.Fatal(err)
	}
	built, err := client.Builds.Wait(ctx, first.BuildID, "user-42")
	if err != nil {
		log.Fatal(err)
	}

	req := sheen.RollbackRequest{UserID: "user-42", ProjectID: first.ProjectID, TargetVersionID: built.VersionID, IdempotencyKey: "rollback-to-" + built.VersionID}
	res, err := client.Builds.Rollback(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	again, err := client.Builds.Rollback(ctx, req) // a retry: replayed, no second rollback
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("rolled back to", res.TargetVersionID, "as", res.RollbackVersionID, res.Status)
	fmt.Println("retry gives the same version:", again.RollbackVersionID == res.RollbackVersionID)
	// Output:
	// rolled back to ver_0003 as ver_0004 deployed
	// retry gives the same version: true
}
