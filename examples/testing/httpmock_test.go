package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/jarcoal/httpmock"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

// mockWorker is a client whose requests httpmock answers. A MockTransport
// of the test's own (rather than httpmock.Activate's global one) keeps
// parallel tests apart; the same http.Client also carries the downloads.
// sheentest.ClientOptions turn the client's pacing off, as Server.Client
// does.
func mockWorker(t *testing.T) (*sheen.WorkerClient, *httpmock.MockTransport) {
	t.Helper()
	mock := httpmock.NewMockTransport()
	hc := &http.Client{Transport: mock}
	client, err := sheen.NewWorkerClient(append(sheentest.ClientOptions(),
		sheen.WithBaseURL("https://worker.test"),
		sheen.WithSecret("test-secret-of-at-least-32-characters!"),
		sheen.WithHTTPClient(hc),
		sheen.WithDownloadHTTPClient(hc),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	return client, mock
}

// answer makes route answer with the golden fixture name: the worker's own
// JSON, recorded from sheentest and kept in sync with it.
func answer(mock *httpmock.MockTransport, route, fixture string) {
	method, url := sheentest.MatchRoute(route)
	mock.RegisterRegexpResponder(method, url, sheentest.FixtureNamed(fixture).Respond)
}

// The same job with httpmock: each route answers with a fixture, and the
// test checks what the service sent and made of the answers.
func TestPublishWithHTTPMock(t *testing.T) {
	client, mock := mockWorker(t)
	method, url := sheentest.MatchRoute(sheen.RouteCreatePreview)
	var sent struct{ UserID, Prompt string }
	mock.RegisterRegexpResponder(method, url, func(req *http.Request) (*http.Response, error) {
		if err := json.NewDecoder(req.Body).Decode(&sent); err != nil {
			return nil, err
		}
		return sheentest.FixtureNamed("create-preview").Respond(req)
	})
	answer(mock, sheen.RouteBuildEvents, "build-events") // every event, through metadata: Wait returns at once
	answer(mock, sheen.RouteExportProject, "export-project")
	answer(mock, sheentest.RouteStore, "archive") // the export fixture's downloadUrl

	var got published
	if code := publish(t, client, user, "A landing page for a bakery", &got); code != 200 {
		t.Fatalf("status %d: %+v", code, got)
	}
	if sent.UserID != user || sent.Prompt != "A landing page for a bakery" {
		t.Errorf("the service sent %+v", sent)
	}
	archive := sheentest.FixtureNamed("archive").Body
	sum := sha256.Sum256(archive)
	want := published{
		ProjectID: "proj_0001", VersionID: "ver_0003", PreviewURL: "https://worker.test/preview/proj_0001/ver_0003/",
		ArchiveBytes: int64(len(archive)), Format: "tar.gz", SHA256: hex.EncodeToString(sum[:]),
	}
	if got != want {
		t.Errorf("published %+v\nwant      %+v", got, want)
	}
	if n := mock.GetTotalCallCount(); n != 4 {
		t.Errorf("%d requests, want create, events, export, download: %v", n, mock.GetCallCountInfo())
	}
}

func TestPublishShortOfTimeWithHTTPMock(t *testing.T) {
	client, mock := mockWorker(t)
	answer(mock, sheen.RouteCreatePreview, "create-preview.insufficient")
	var got shortOfTime
	if code := publish(t, client, user, "A landing page for a bakery", &got); code != 402 {
		t.Fatalf("status %d: %+v", code, got)
	}
	if got.Available != "30s" || got.Required != "2m0s" {
		t.Errorf("answer %+v", got)
	}
}

func TestPublishFailedBuildWithHTTPMock(t *testing.T) {
	client, mock := mockWorker(t)
	answer(mock, sheen.RouteCreatePreview, "create-preview")
	answer(mock, sheen.RouteBuildEvents, "build-events.failed")
	var got map[string]string
	if code := publish(t, client, user, "A landing page for a bakery", &got); code != 422 {
		t.Fatalf("status %d: %+v", code, got)
	}
	if got["code"] != "BUILD_FAILED" || got["error"] != "Module not found: ./Menu" {
		t.Errorf("answer %+v", got)
	}
}

// With nothing registered, httpmock refuses every request: nothing leaves
// the test process, and the service answers 502.
func TestPublishWorkerUnreachableWithHTTPMock(t *testing.T) {
	client, mock := mockWorker(t)
	var got map[string]string
	if code := publish(t, client, user, "A landing page for a bakery", &got); code != 502 {
		t.Fatalf("status %d: %+v", code, got)
	}
	if n := mock.GetTotalCallCount(); n != 0 {
		t.Errorf("%d requests answered: %v", n, mock.GetCallCountInfo())
	}
}
