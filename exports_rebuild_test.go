package sheen_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

// rebuildWorld is a fake worker, a client for it and a build started for
// user u1, whose archive the tests then take away.
func rebuildWorld(t *testing.T) (*sheentest.Server, *sheen.WorkerClient, *sheen.Build) {
	t.Helper()
	srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithRateLimit(6000))
	c, err := srv.Client(sheen.WithRateLimit(6000))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Builds.CreatePreview(context.Background(), sheen.CreatePreviewRequest{UserID: "u1", Prompt: "a bakery"})
	if err != nil {
		t.Fatal(err)
	}
	return srv, c, b
}

// An archive gone from the object store comes back through RebuildMissing,
// for both kinds of link.
func TestRebuildMissingArtifact(t *testing.T) {
	ctx := context.Background()
	for _, kind := range []string{"project", "version"} {
		t.Run(kind, func(t *testing.T) {
			srv, c, b := rebuildWorld(t)
			versionID := srv.LatestVersion(b.ProjectID)
			getLink := func() (sheen.DownloadLink, error) {
				if kind == "project" {
					return c.Exports.ProjectLink(ctx, b.ProjectID, "u1")
				}
				return c.Exports.VersionLink(ctx, versionID, "u1")
			}
			srv.DropArtifact(versionID)
			_, err := getLink()
			var missing *sheen.ArtifactMissingError
			if !errors.As(err, &missing) || !missing.CanRebuild || missing.VersionID != versionID || !errors.Is(err, sheen.ErrNotFound) {
				t.Fatalf("want *ArtifactMissingError for %s, got %v", versionID, err)
			}
			var seen int
			// MetadataWait does not apply: the archive does not wait for
			// the metadata phase that sheentest runs after the deploy.
			res, err := c.Exports.RebuildMissing(ctx, missing, &sheen.FollowOptions{OnEvent: func(sheen.BuildEvent) { seen++ }, MetadataWait: time.Minute})
			if err != nil || res.VersionID != versionID {
				t.Fatalf("rebuild: %+v %v", res, err)
			}
			if res.MetadataDone {
				t.Error("RebuildMissing waited for the metadata phase")
			}
			if seen == 0 || seen != res.Events {
				t.Errorf("OnEvent saw %d events of the rebuild, want the %d read", seen, res.Events)
			}
			link, err := getLink()
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if _, err := c.Exports.Download(ctx, link, &buf, nil); err != nil || !bytes.Equal(buf.Bytes(), srv.Artifact(versionID)) {
				t.Fatalf("download after rebuild: %v", err)
			}
		})
	}
}

func TestRebuildMissingRefusesWhatCannotBeRebuilt(t *testing.T) {
	srv := sheentest.NewServer(sheentest.WithTest(t))
	srv.AddFault(sheentest.Fault{Route: "GET /v1/projects/{projectId}/export", Status: 404,
		Body: `{"error":"Artifact not found","canRebuild":false}`, Header: http.Header{"Content-Type": {"application/json"}}})
	c, _ := srv.Client()
	_, err := c.Exports.ProjectLink(context.Background(), "p1", "u1")
	var missing *sheen.ArtifactMissingError
	if !errors.As(err, &missing) || missing.CanRebuild {
		t.Fatalf("got %v", err)
	}
	_, err = c.Exports.RebuildMissing(context.Background(), missing, nil)
	var ve *sheen.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %v", err)
	}
	if n := srv.Calls("POST /v1/versions/{versionId}/rebuild"); n != 0 {
		t.Fatalf("%d rebuilds requested", n)
	}
}

// A bad FollowOptions value is refused before the rebuild is asked for,
// not after the build started.
func TestRebuildMissingRefusesBadFollowOptions(t *testing.T) {
	ctx := context.Background()
	srv, c, b := rebuildWorld(t)
	srv.DropArtifact(srv.LatestVersion(b.ProjectID))
	_, err := c.Exports.ProjectLink(ctx, b.ProjectID, "u1")
	var missing *sheen.ArtifactMissingError
	if !errors.As(err, &missing) || !missing.CanRebuild {
		t.Fatalf("want a rebuildable *ArtifactMissingError, got %v", err)
	}
	_, err = c.Exports.RebuildMissing(ctx, missing, &sheen.FollowOptions{AfterEventID: -1})
	var ve *sheen.ValidationError
	if !errors.As(err, &ve) || ve.Field != "FollowOptions.AfterEventID" {
		t.Fatalf("want a *ValidationError naming FollowOptions.AfterEventID, got %v", err)
	}
	if n := srv.Calls("POST /v1/versions/{versionId}/rebuild"); n != 0 {
		t.Fatalf("%d rebuilds requested", n)
	}
}

// RebuildMissing drops what the rebuild makes stale, as CreatePreview does:
// the user's balance (the rebuild is charged) and the links to the rebuilt
// archive that the client had cached, so neither is served from the cache
// afterwards.
func TestRebuildMissingDropsTheBalanceAndTheLinks(t *testing.T) {
	ctx := context.Background()
	for _, kind := range []string{"project", "version"} {
		t.Run(kind, func(t *testing.T) {
			srv, c, b := rebuildWorld(t)
			if _, err := c.Builds.Wait(ctx, b.ID, "u1", nil); err != nil {
				t.Fatal(err)
			}
			versionID := srv.LatestVersion(b.ProjectID)
			// Cache the balance and both links.
			if _, err := c.Billing.Balance(ctx, "u1"); err != nil {
				t.Fatal(err)
			}
			projectLink, err := c.Exports.ProjectLink(ctx, b.ProjectID, "u1")
			if err != nil {
				t.Fatal(err)
			}
			versionLink, err := c.Exports.VersionLink(ctx, versionID, "u1")
			if err != nil {
				t.Fatal(err)
			}
			// The archive goes; the caller learns it by asking again.
			srv.DropArtifact(versionID)
			var missing *sheen.ArtifactMissingError
			if kind == "project" {
				c.Exports.Invalidate(projectLink)
				_, err = c.Exports.ProjectLink(ctx, b.ProjectID, "u1")
			} else {
				c.Exports.Invalidate(versionLink)
				_, err = c.Exports.VersionLink(ctx, versionID, "u1")
			}
			if !errors.As(err, &missing) {
				t.Fatalf("want *ArtifactMissingError, got %v", err)
			}
			if _, err := c.Exports.RebuildMissing(ctx, missing, nil); err != nil {
				t.Fatal(err)
			}

			var resp sheen.Response
			bal, err := c.Billing.Balance(ctx, "u1", sheen.WithResponse(&resp))
			if err != nil || resp.Cached || bal.Total != srv.Balance("u1") {
				t.Errorf("balance after the rebuild: %v (cached %v), %v; want the worker's %v", bal.Total, resp.Cached, err, srv.Balance("u1"))
			}
			resp = sheen.Response{}
			if _, err := c.Exports.VersionLink(ctx, versionID, "u1", sheen.WithResponse(&resp)); err != nil || resp.Cached {
				t.Errorf("version link after the rebuild: cached %v, %v; want a fresh one", resp.Cached, err)
			}
			if kind == "project" {
				resp = sheen.Response{}
				if _, err := c.Exports.ProjectLink(ctx, b.ProjectID, "u1", sheen.WithResponse(&resp)); err != nil || resp.Cached {
					t.Errorf("project link after the rebuild: cached %v, %v; want a fresh one", resp.Cached, err)
				}
			}
		})
	}
}
