package sheentest

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"net/http"
	"strconv"

	sheen "github.com/sheenapps/sheen-go"
)

// Fixture is a golden answer of the fake worker: the body it sends for one
// call, recorded from the server by this package's tests and checked in
// under sheentest/fixtures (one file per answer, the JSON indented), so
// that tests with httpmock or a stub server of their own can answer as the
// worker does without writing its JSON by hand. The package's tests fail
// when a fixture no longer matches what the server sends.
//
// Values that change from run to run are made fixed: times are those of a
// server whose clock reads 2026-01-15T10:00:00Z (rounded to the hour), the
// base URL is https://worker.test, random tokens and the download link's
// key and signature are constant.
type Fixture struct {
	// Name names the fixture: the file name without its extension, such as
	// "balance" or "create-preview.insufficient".
	Name string
	// Route is the route that answered, such as sheen.RouteBalance; empty
	// for answers any /v1 route can give (signature and rate-limit
	// refusals, an unknown route).
	Route string
	// Status is the HTTP status sent with the body.
	Status int
	// ContentType is the body's media type.
	ContentType string
	// Header holds the headers of the answer that matter to the client
	// besides Content-Type (Retry-After and the rate-limit headers of a
	// 429); Respond sends them.
	Header http.Header
	// About says what the answer is an example of.
	About string
	// Body is the answer's body.
	Body []byte
}

// Respond answers req with the fixture: a fresh response with its status,
// Content-Type and body on every call. Its signature is httpmock's
// Responder, so f.Respond can be registered as is. A Fixture that
// FixtureNamed did not find answers with an error naming it.
func (f Fixture) Respond(req *http.Request) (*http.Response, error) {
	if f.Status == 0 {
		return nil, fmt.Errorf("sheentest: no fixture named %q", f.Name)
	}
	h := f.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Content-Type", f.ContentType)
	h.Set("Content-Length", strconv.Itoa(len(f.Body)))
	return &http.Response{
		Status:        strconv.Itoa(f.Status) + " " + http.StatusText(f.Status),
		StatusCode:    f.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(f.Body)),
		ContentLength: int64(len(f.Body)),
		Request:       req,
	}, nil
}

//go:embed fixtures
var fixtureFiles embed.FS

const (
	jsonType    = "application/json; charset=utf-8"
	archiveType = "application/octet-stream"
)

// fixtureTable lists every fixture: its file, the route that answers it,
// the status, and what it shows. The tests generate each one from the
// server and check that this table, the files and the server agree.
var fixtureTable = []Fixture{
	{Name: "balance", Route: sheen.RouteBalance, Status: 200, About: "a balance in the deployed worker's bucketed shape (some numbers are strings)"},
	{Name: "balance.v21", Route: sheen.RouteBalance, Status: 200, About: "a balance in the v2.1 shape (WithShapes(ShapesV21))"},
	{Name: "legacy-balance", Route: sheen.RouteLegacyBalance, Status: 200, About: "the v2.1 balance shape of the legacy route"},
	{Name: "check-sufficient", Route: sheen.RouteCheckSufficient, Status: 200, About: "enough AI time for the operation"},
	{Name: "check-sufficient.insufficient", Route: sheen.RouteCheckSufficient, Status: 402, About: "not enough: the deployed worker's 402"},
	{Name: "check-sufficient.insufficient-v21", Route: sheen.RouteCheckSufficient, Status: 200, About: "not enough: v2.1's sufficient:false with a recommendation"},
	{Name: "check-batch", Route: sheen.RouteCheckBatch, Status: 200, About: "a batch whose second operation no longer fits"},
	{Name: "usage", Route: sheen.RouteUsage, Status: 200, About: "a month's usage after one build"},
	{Name: "billing-events", Route: sheen.RouteBillingEvents, Status: 200, About: "a purchase and two builds' consumption, newest first"},
	{Name: "create-preview", Route: sheen.RouteCreatePreview, Status: 200, About: "a build queued for a new project"},
	{Name: "create-preview.insufficient", Route: sheen.RouteCreatePreview, Status: 402, About: "a build refused for want of AI time"},
	{Name: "update-project", Route: sheen.RouteUpdateProject, Status: 200, About: "an update build queued"},
	{Name: "rollback", Route: sheen.RouteRollback, Status: 200, About: "a rollback to an earlier version"},
	{Name: "rebuild", Route: sheen.RouteRebuild, Status: 200, About: "a version's rebuild queued: no buildId, the job id is the build to follow"},
	{Name: "versions", Route: sheen.RouteVersions, Status: 200, About: "a project's versions, newest first, one page"},
	{Name: "build-events", Route: sheen.RouteBuildEvents, Status: 200, About: "every event of a successful build, through deploy and metadata"},
	{Name: "build-events.failed", Route: sheen.RouteBuildEvents, Status: 200, About: "the events of a build that failed while building"},
	{Name: "build-events.none", Route: sheen.RouteBuildEvents, Status: 200, About: "no event after lastEventId (the worker echoes it as a string)"},
	{Name: "build-status", Route: sheen.RouteBuildStatus, Status: 200, About: "a finished build's status"},
	{Name: "export-project", Route: sheen.RouteExportProject, Status: 200, About: "a download link for a project's latest version (size is the build output's, not the archive's)"},
	{Name: "export-project.artifact-missing", Route: sheen.RouteExportProject, Status: 404, About: "the archive is gone and can be rebuilt"},
	{Name: "export-project.too-large", Route: sheen.RouteExportProject, Status: 413, About: "an archive over the export limit"},
	{Name: "download-version", Route: sheen.RouteDownloadVersion, Status: 200, About: "a download link for one version"},
	{Name: "archive", Route: RouteStore, Status: 200, About: "the archive behind the links: a .tar.gz, whatever the filename says (file archive.tar.gz)"},
	{Name: "error.validation", Route: sheen.RouteCheckSufficient, Status: 400, About: "a body the route's schema refuses"},
	{Name: "error.missing-signature", Status: 401, About: "a request without a signature"},
	{Name: "error.invalid-signature", Status: 403, About: "a request signed with the wrong secret"},
	{Name: "error.not-found", Status: 404, About: "a route the worker does not have"},
	{Name: "error.timestamp-out-of-range", Status: 408, About: "a timestamped signature from a clock too far from the worker's"},
	{Name: "error.replay", Status: 409, About: "a nonce the worker has seen"},
	{Name: "error.body-too-large", Status: 413, About: "a request body over 1 MiB"},
	{Name: "error.rate-limited", Status: 429, About: "a request over the rate limit (WithRateLimit(1)), with Retry-After",
		Header: http.Header{"Retry-After": {"60"}, "X-Ratelimit-Limit": {"1"}, "X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"60"}}},
}

// fixtureFile is the file of a fixture, under fixtures/.
func fixtureFile(f Fixture) string {
	if f.Route == RouteStore {
		return f.Name + ".tar.gz"
	}
	return f.Name + ".json"
}

// Fixtures returns every golden answer with its body, in a stable order:
// billing, builds, build events, exports, then refusals any route can give.
func Fixtures() []Fixture {
	out := make([]Fixture, 0, len(fixtureTable))
	for _, f := range fixtureTable {
		out = append(out, loadFixture(f))
	}
	return out
}

// FixtureNamed returns the golden answer called name, such as "balance",
// "build-events" or "create-preview.insufficient" (the names are the files
// under sheentest/fixtures, and Fixtures lists them all). For an unknown
// name it returns a Fixture with only Name set, whose Respond fails.
func FixtureNamed(name string) Fixture {
	for _, f := range fixtureTable {
		if f.Name == name {
			return loadFixture(f)
		}
	}
	return Fixture{Name: name}
}

func loadFixture(f Fixture) Fixture {
	f.ContentType = jsonType
	if f.Route == RouteStore {
		f.ContentType = archiveType
	}
	body, err := fixtureFiles.ReadFile("fixtures/" + fixtureFile(f))
	if err != nil {
		// Only a build from a tree without the checked-in files gets here;
		// the package's tests refuse such a tree.
		return Fixture{Name: f.Name}
	}
	f.Body = body
	return f
}
