package sheen_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

// buildsExampleWorker is a stand-in for the worker: it queues every build as
// 01JBUILD and serves the given events for it.
func buildsExampleWorker(events string) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/create-preview-for-new-project", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"success":true,"jobId":"7","buildId":"01JBUILD","projectId":"p1","status":"queued"}`)
	})
	mux.HandleFunc("GET /v1/builds/01JBUILD/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("lastEventId") != "0" {
			fmt.Fprint(w, `{"buildId":"01JBUILD","events":[]}`)
			return
		}
		fmt.Fprintf(w, `{"buildId":"01JBUILD","events":%s}`, events)
	})
	return httptest.NewServer(mux)
}

const exampleSecret = "example-secret-0123456789abcdef0123456789"

func ExampleBuildsService_Wait() {
	worker := buildsExampleWorker(`[
		{"id":"1","event_type":"started","phase":"setup","title":"Setting up","overall_progress":0.05},
		{"id":"2","event_type":"progress","phase":"development","title":"Writing code","overall_progress":0.4},
		{"id":"3","event_type":"progress","phase":"build","title":"Building","overall_progress":0.8},
		{"id":"4","event_type":"completed","phase":"deploy","title":"Deployed","overall_progress":1,"finished":true,
		 "preview_url":"https://preview.example/p1","versionId":"01JVERSION","duration_seconds":95.5},
		{"id":"5","event_type":"completed","phase":"metadata","overall_progress":100,"versionName":"Todo list with filters"}]`)
	defer worker.Close()
	client, err := sheen.NewWorkerClient(sheen.WithBaseURL(worker.URL), sheen.WithSecret(exampleSecret), sheen.WithHTTPClient(worker.Client()))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()

	build, err := client.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{
		UserID: "5b0e6c3a-8f0e-4d3e-9a57-2f1c3f1d7a10", Prompt: "A todo list with filters", Framework: sheen.FrameworkReact,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := client.Builds.Wait(ctx, build.ID, "5b0e6c3a-8f0e-4d3e-9a57-2f1c3f1d7a10", &sheen.FollowOptions{OnEvent: func(e sheen.BuildEvent) {
		if e.Title != "" {
			fmt.Printf("%3.0f%% %s\n", e.Progress*100, e.Title)
		}
	}})
	var failed *sheen.BuildFailedError
	switch {
	case errors.As(err, &failed):
		fmt.Println("build failed:", failed.Code, failed.Message)
	case err != nil:
		fmt.Println("outcome unknown:", err)
	default:
		fmt.Println("preview:", res.PreviewURL)
		fmt.Println("version:", res.VersionName)
		fmt.Println("took:", res.Duration)
	}
	// Output:
	//   5% Setting up
	//  40% Writing code
	//  80% Building
	// 100% Deployed
	// preview: https://preview.example/p1
	// version: Todo list with filters
	// took: 1m35.5s
}

func ExampleBuildsService_Follow() {
	worker := buildsExampleWorker(`[
		{"id":1,"event_type":"plan_started","event_data":{"message":"Planning"}},
		{"id":2,"event_type":"progress","phase":"dependencies","title":"Installing packages","overall_progress":0.5},
		{"id":3,"event_type":"failed","phase":"build","title":"Build failed","error":{"code":"BUILD_FAILED","message":"Module not found: ./Filters"}},
		{"id":4,"event_type":"progress","phase":"build","title":"never read"}]`)
	defer worker.Close()
	client, err := sheen.NewWorkerClient(sheen.WithBaseURL(worker.URL), sheen.WithSecret(exampleSecret), sheen.WithHTTPClient(worker.Client()))
	if err != nil {
		fmt.Println(err)
		return
	}
	for e, err := range client.Builds.Follow(context.Background(), "01JBUILD", "5b0e6c3a-8f0e-4d3e-9a57-2f1c3f1d7a10", nil) {
		if err != nil {
			fmt.Println("stopped:", err)
			return
		}
		fmt.Printf("#%d %s/%s %q\n", e.ID, e.Phase, e.Kind, e.Title)
		if e.BuildFailed() {
			fmt.Println("failed:", e.Error.Code, e.Error.Message)
		}
	}
	// Output:
	// #1 setup/started "Planning"
	// #2 dependencies/progress "Installing packages"
	// #3 build/failed "Build failed"
	// failed: BUILD_FAILED Module not found: ./Filters
}

func ExampleEventRow_Event() {
	progress := 60.0
	rows := []sheen.EventRow{
		{ID: 1, EventType: "deploy_completed", EventData: json.RawMessage(`{"message":"Deployed","previewUrl":"https://preview.example/p1"}`)},
		{ID: 2, EventType: "progress", EventPhase: "metadata", OverallProgress: &progress},
		{ID: 3, EventType: "failed", EventPhase: "metadata", ErrorCode: "METADATA_FAILED"},
	}
	for _, r := range rows {
		e := r.Event()
		fmt.Println(e.ID, e.Phase, e.Kind, e.Progress, e.PreviewURL, e.DeploySucceeded(), e.BuildFailed(), e.MetadataFailed())
	}
	// Output:
	// 1 deploy completed 0 https://preview.example/p1 true false false
	// 2 metadata progress 0.6  false false false
	// 3 metadata failed 0  false false true
}

// CreatePreview starts a build and returns at once: the worker queues it.
// Follow it with Wait (or Follow). A user short of AI time gets an
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
	fmt.Println("build", build.ID, "for project", build.ProjectID, "is", build.Status)

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
	if _, err := client.Builds.Wait(ctx, first.ID, "user-42", nil); err != nil {
		log.Fatal(err)
	}
	update, err := client.Builds.UpdateProject(ctx, sheen.UpdateProjectRequest{UserID: "user-42", ProjectID: first.ProjectID, Prompt: "Add a menu page"})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := client.Builds.Wait(ctx, update.ID, "user-42", nil); err != nil {
		log.Fatal(err)
	}

	for v, err := range client.Builds.Versions(ctx, first.ProjectID, "") {
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
	built, err := client.Builds.Wait(ctx, first.ID, "user-42", nil)
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
