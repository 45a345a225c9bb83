package sheen_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

// builtProject starts a fake worker and builds one project on it, for the
// examples below.
func builtProject() (*sheentest.Server, *sheen.WorkerClient, *sheen.BuildResult, string) {
	worker := sheentest.NewServer(sheentest.WithUser("user-42", time.Hour))
	client, err := worker.Client()
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	build, err := client.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: "user-42", Prompt: "A bakery site"})
	if err != nil {
		log.Fatal(err)
	}
	res, err := client.Builds.Wait(ctx, build.ID, "user-42", nil)
	if err != nil {
		log.Fatal(err)
	}
	return worker, client, res, build.ProjectID
}

// ProjectLink hands out a signed download link for a project's latest
// version. The link is a bearer credential: printed or logged, its query is
// redacted. Asking again within its lifetime costs no request (the link is
// cached until an hour before it expires). A link is a value: each caller
// gets its own copy, to change as it likes.
func ExampleExportsService_ProjectLink() {
	worker, client, _, projectID := builtProject()
	defer worker.Close()
	ctx := context.Background()

	link, err := client.Exports.ProjectLink(ctx, projectID, "user-42")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(link.Filename, "version", link.Version.ID)
	fmt.Println("expires in about", time.Until(link.ExpiresAt).Round(time.Hour))
	fmt.Println("size (of the build output, not of the archive):", link.Size)

	link.Filename = "bakery.zip" // this caller's copy only
	again, _ := client.Exports.ProjectLink(ctx, projectID, "user-42")
	fmt.Println("same link, from the cache:", again.SignedURL() == link.SignedURL(), worker.Calls(sheen.RouteExportProject), "request")
	fmt.Println("its name there:", again.Filename)
	// Output:
	// proj_0001-latest.zip version ver_0003
	// expires in about 24h0m0s
	// size (of the build output, not of the archive): 354
	// same link, from the cache: true 1 request
	// its name there: proj_0001-latest.zip
}

// DownloadToFile streams the archive to a file with flat memory, resuming
// after a break, and reports what the bytes really are: the worker names
// its .tar.gz archives .zip.
func ExampleExportsService_DownloadToFile() {
	worker, client, _, projectID := builtProject()
	defer worker.Close()
	ctx := context.Background()
	link, err := client.Exports.ProjectLink(ctx, projectID, "user-42")
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "sheen-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	res, err := client.Exports.DownloadToFile(ctx, link, filepath.Join(dir, link.Filename), nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Written, "of", res.Total, "bytes; the name says", filepath.Ext(link.Filename), "and the bytes say", res.Format)
	// Output:
	// 437 of 437 bytes; the name says .zip and the bytes say tar.gz
}

// VersionLink links to one version rather than the latest. When the
// archive is gone, the error says whether it can be rebuilt, and
// RebuildMissing rebuilds it and waits for the build.
func ExampleExportsService_RebuildMissing() {
	worker, client, built, _ := builtProject()
	defer worker.Close()
	ctx := context.Background()
	worker.DropArtifact(built.VersionID) // the worker's storage lost it

	_, err := client.Exports.VersionLink(ctx, built.VersionID, "user-42")
	var missing *sheen.ArtifactMissingError
	if !errors.As(err, &missing) || !missing.CanRebuild {
		log.Fatal(err)
	}
	fmt.Println("archive of", missing.VersionID, "is gone; rebuilding")
	if _, err := client.Exports.RebuildMissing(ctx, missing, nil); err != nil {
		log.Fatal(err)
	}
	link, err := client.Exports.VersionLink(ctx, built.VersionID, "user-42")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("back:", link.Filename)
	// Output:
	// archive of ver_0003 is gone; rebuilding
	// back: ver_0003.zip
}
