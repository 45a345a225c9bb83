package main

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

// The whole job against the fake worker: a real HTTP server, as strict as
// the deployed worker (signatures, 402s, a .tar.gz named .zip). Its ready
// client neither paces itself nor polls, so this runs in milliseconds.
func TestPublishWithSheentest(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t))
	client, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	var got published
	if code := publish(t, client, user, "A landing page for a bakery", &got); code != 200 {
		t.Fatalf("status %d: %+v", code, got)
	}
	archive := srv.Artifact(got.VersionID)
	sum := sha256.Sum256(archive)
	if got.ArchiveBytes != int64(len(archive)) || got.SHA256 != hex.EncodeToString(sum[:]) || got.Format != string(sheen.FormatTarGzip) {
		t.Errorf("published %+v; the worker's archive is %d bytes of tar.gz", got, len(archive))
	}
	if got.PreviewURL == "" || got.ProjectID == "" {
		t.Errorf("published %+v", got)
	}
	if n := srv.Calls(sheen.RouteCreatePreview); n != 1 {
		t.Errorf("%d builds started, want 1", n)
	}
}

func TestPublishShortOfTimeWithSheentest(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithUser(user, 30*time.Second))
	client, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	var got shortOfTime
	if code := publish(t, client, user, "A landing page for a bakery", &got); code != 402 {
		t.Fatalf("status %d: %+v", code, got)
	}
	if got.Available != "30s" || got.Required == "" {
		t.Errorf("answer %+v", got)
	}
	if n := srv.Calls(sheen.RouteExportProject); n != 0 {
		t.Errorf("%d exports after a refused build", n)
	}
}

func TestPublishFailedBuildWithSheentest(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t))
	srv.FailNextBuild("BUILD_FAILED", "Module not found: ./Menu")
	client, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if code := publish(t, client, user, "A landing page for a bakery", &got); code != 422 {
		t.Fatalf("status %d: %+v", code, got)
	}
	if got["code"] != "BUILD_FAILED" || got["error"] != "Module not found: ./Menu" {
		t.Errorf("answer %+v", got)
	}
}

// A worker behind a gateway that answers 503: the build may have started, so
// the client does not send it again (it would bill twice), and the service
// says so without leaking anything.
func TestPublishWorkerDownWithSheentest(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t))
	srv.AddFault(sheentest.Fault{Route: sheen.RouteCreatePreview, Status: 503, Body: "<html>down for maintenance</html>"})
	client, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if code := publish(t, client, user, "A landing page for a bakery", &got); code != 502 {
		t.Fatalf("status %d: %+v", code, got)
	}
	if n := srv.Calls(sheen.RouteCreatePreview); n != 1 {
		t.Errorf("%d attempts, want 1: a build-starting call is never sent twice after an ambiguous failure", n)
	}
}
