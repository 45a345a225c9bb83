package main

import (
	"context"
	"io"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

// download starts a build, waits for it, asks for its project link (with no
// fault on the worker's routes) and downloads the archive through the
// faulty object store.
func download(ctx context.Context, c *sheen.WorkerClient, srv *sheentest.Server) error {
	b, err := c.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: user, Prompt: "A bakery site"})
	if err != nil {
		return err
	}
	if _, err := c.Builds.Wait(ctx, b.ID, user, &sheen.FollowOptions{MetadataWait: -1}); err != nil {
		return err
	}
	link, err := c.Exports.ProjectLink(ctx, b.ProjectID, user)
	if err != nil {
		return err
	}
	_, err = c.Exports.Download(ctx, link, io.Discard, &sheen.DownloadOptions{StallTimeout: 500 * time.Millisecond})
	return err
}
