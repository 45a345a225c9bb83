package sheentest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

// A rebuild is answered as the deployed worker answers it, {success, jobId,
// versionId} without a buildId, so the SDK's reading of the job as the
// build is what a test exercises: the build it returns can be followed to
// its end, and the version can be exported again.
func TestRebuildAnswersOnlyTheJob(t *testing.T) {
	for _, scheme := range []sheen.Signing{sheen.SigningBodyPath, sheen.SigningDual} {
		t.Run(scheme.String(), func(t *testing.T) {
			srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithSigning(scheme))
			c := client(t, srv)
			ctx := t.Context()
			b, err := c.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: "u1", Prompt: "x"})
			if err != nil {
				t.Fatal(err)
			}
			ver := srv.LatestVersion(b.ProjectID)
			srv.DropArtifact(ver)

			var raw map[string]json.RawMessage
			if err := c.Do(ctx, http.MethodPost, "/v1/versions/"+ver+"/rebuild", nil, &raw); err != nil {
				t.Fatal(err)
			}
			if _, ok := raw["buildId"]; ok || raw["jobId"] == nil || raw["versionId"] == nil {
				t.Errorf("rebuild answer %s; want success, jobId and versionId only", raw)
			}

			rb, err := c.Builds.Rebuild(ctx, ver)
			if err != nil {
				t.Fatal(err)
			}
			if rb.ID == "" || rb.ID != rb.JobID || rb.VersionID != ver {
				t.Fatalf("rebuild %+v; want the job as the build, of version %s", rb, ver)
			}
			res, err := c.Builds.Wait(ctx, rb.ID, "u1", nil)
			if err != nil || res.VersionID != ver {
				t.Fatalf("following the rebuild: %+v, %v; want version %s rebuilt", res, err, ver)
			}
			link, err := c.Exports.VersionLink(ctx, ver, "u1")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exports.Download(ctx, link, io.Discard, nil); err != nil {
				t.Errorf("downloading the rebuilt version: %v", err)
			}
		})
	}
}
