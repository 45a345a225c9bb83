package sheen

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestBuildOutcome(t *testing.T) {
	at := func(sec int) func(*EventRow) {
		return func(r *EventRow) { r.CreatedAt = time.Date(2025, 1, 1, 0, 0, sec, 0, time.UTC) }
	}
	deploy := buildEvt(3, "completed", "deploy", evPreview("https://p.example/1"), at(90), func(r *EventRow) { r.VersionID = "V1" })
	for _, tc := range []struct {
		name      string
		events    []BuildEvent
		wantEnded bool
		want      *BuildResult // for a success
		wantFail  string       // the failure's code
	}{
		{
			name:   "still running",
			events: []BuildEvent{buildEvt(1, "started", "setup"), buildEvt(2, "progress", "build")},
		},
		{
			name:      "failed; later events are not read",
			events:    []BuildEvent{buildEvt(1, "started", "setup"), buildEvt(2, "failed", "build", evFailure("BUILD_FAILED", "no")), deploy},
			wantEnded: true, wantFail: "BUILD_FAILED",
		},
		{
			name: "deployed, metadata done; later events are not read",
			events: []BuildEvent{buildEvt(1, "started", "setup", at(0)), deploy,
				buildEvt(4, "progress", "metadata", func(r *EventRow) { r.VersionName = "Todo" }),
				buildEvt(5, "failed", "metadata", evFailure("META", "x")), buildEvt(6, "progress", "metadata")},
			wantEnded: true,
			want: &BuildResult{ID: "B1", PreviewURL: "https://p.example/1", VersionID: "V1", VersionName: "Todo", Duration: 90 * time.Second,
				Final: deploy, LastEventID: 5, Events: 4, MetadataDone: true, MetadataError: &BuildEventError{Code: "META", Message: "x"}},
		},
		{
			name:      "deployed, metadata still running",
			events:    []BuildEvent{deploy, buildEvt(4, "progress", "metadata")},
			wantEnded: true,
			want:      &BuildResult{ID: "B1", PreviewURL: "https://p.example/1", VersionID: "V1", Final: deploy, LastEventID: 4, Events: 2},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, ended, err := BuildOutcome("B1", tc.events)
			if ended != tc.wantEnded {
				t.Fatalf("ended %v, want %v (result %+v, error %v)", ended, tc.wantEnded, res, err)
			}
			var bf *BuildFailedError
			switch {
			case tc.wantFail != "":
				if res != nil || !errors.As(err, &bf) || bf.Code != tc.wantFail || bf.ID != "B1" {
					t.Errorf("got %+v, %v; want the failure %s of B1", res, err, tc.wantFail)
				}
			case err != nil:
				t.Fatal(err)
			default:
				if diff := cmp.Diff(tc.want, res); diff != "" {
					t.Errorf("result (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// BuildOutcome agrees with Wait on every ending of
// TestBuildsEventsEndByTheSpecsRules that the events alone settle.
func TestBuildOutcomeAgreesWithWait(t *testing.T) {
	batches := [][]BuildEvent{
		{buildEvt(1, "started", "setup"), buildEvt(2, "completed", "deploy", evPreview("https://p.example/2"))},
		{buildEvt(3, "progress", "metadata", evProgress(60))},
		{buildEvt(4, "failed", "metadata", evFailure("METADATA_FAILED", "Could not name the version"))},
		{buildEvt(5, "progress", "metadata")},
	}
	c := buildsFollowClient(t, newBuildsStepClock())
	waited, err := c.Builds.Wait(t.Context(), "B1", "u1", &FollowOptions{Source: newBuildsScript(batches...)})
	if err != nil {
		t.Fatal(err)
	}
	var all []BuildEvent
	for _, b := range batches {
		all = append(all, b...)
	}
	res, ended, err := BuildOutcome("B1", all)
	if !ended || err != nil {
		t.Fatalf("BuildOutcome: ended %v, %v", ended, err)
	}
	if diff := cmp.Diff(waited, res); diff != "" {
		t.Errorf("BuildOutcome and Wait differ (-Wait +BuildOutcome):\n%s", diff)
	}
}
