package sheen

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/sheenapps/sheen-go/internal/jsonx"
)

func TestBuildsEventDecoding(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
		want BuildEvent
	}{
		{
			name: "clean event",
			raw: `{"id":"12","build_id":"B1","event_type":"progress","phase":"build","title":"Building","description":"npm run build",
				"overall_progress":0.75,"finished":false,"event_code":"BUILD_RUNNING","event_params":{"step":2},"created_at":"2025-01-01T00:00:01Z"}`,
			want: BuildEvent{ID: 12, BuildID: "B1", Type: "progress", Kind: KindProgress, Phase: PhaseBuild, Title: "Building",
				Description: "npm run build", Progress: 0.75, HasProgress: true, Code: "BUILD_RUNNING", Params: json.RawMessage(`{"step":2}`),
				CreatedAt: time.Date(2025, 1, 1, 0, 0, 1, 0, time.UTC)},
		},
		{
			name: "metadata progress as a percentage",
			raw:  `{"id":3,"event_type":"progress","phase":"metadata","overall_progress":60}`,
			want: BuildEvent{ID: 3, Type: "progress", Kind: KindProgress, Phase: PhaseMetadata, Progress: 0.6, HasProgress: true},
		},
		{
			name: "progress of 100",
			raw:  `{"id":3,"event_type":"completed","phase":"metadata","overall_progress":"100"}`,
			want: BuildEvent{ID: 3, Type: "completed", Kind: KindCompleted, Phase: PhaseMetadata, Progress: 1, HasProgress: true},
		},
		{
			name: "negative progress",
			raw:  `{"id":3,"event_type":"progress","overall_progress":-4}`,
			want: BuildEvent{ID: 3, Type: "progress", Kind: KindProgress, Progress: 0, HasProgress: true},
		},
		{
			name: "legacy deploy_completed",
			raw:  `{"id":"40","event_type":"deploy_completed","event_data":{"message":"Deployed!","previewUrl":"https://p.example/x","versionId":"V2"}}`,
			want: BuildEvent{ID: 40, Type: "deploy_completed", Kind: KindCompleted, Phase: PhaseDeploy, Title: "Deployed!",
				PreviewURL: "https://p.example/x", VersionID: "V2",
				Data: json.RawMessage(`{"message":"Deployed!","previewUrl":"https://p.example/x","versionId":"V2"}`)},
		},
		{
			name: "legacy task_failed with an error string",
			raw:  `{"id":41,"event_type":"task_failed","event_data":{"message":"Task 3 failed","error":"TypeScript error in App.tsx"}}`,
			want: BuildEvent{ID: 41, Type: "task_failed", Kind: KindFailed, Phase: PhaseDevelopment, Title: "Task 3 failed",
				Error: &BuildEventError{Message: "TypeScript error in App.tsx"},
				Data:  json.RawMessage(`{"message":"Task 3 failed","error":"TypeScript error in App.tsx"}`)},
		},
		{
			name: "failed with an error object",
			raw:  `{"id":42,"event_type":"failed","phase":"deploy","error":{"code":"DEPLOY_TIMEOUT","params":{"after":300},"message":"The deploy took too long"}}`,
			want: BuildEvent{ID: 42, Type: "failed", Kind: KindFailed, Phase: PhaseDeploy,
				Error: &BuildEventError{Code: "DEPLOY_TIMEOUT", Message: "The deploy took too long", Params: json.RawMessage(`{"after":300}`)}},
		},
		{
			name: "unknown type",
			raw:  `{"id":43,"event_type":"cache_warmed","event_data":{}}`,
			want: BuildEvent{ID: 43, Type: "cache_warmed", Kind: KindOther},
		},
		{
			name: "camelCase names",
			raw:  `{"id":44,"buildId":"B9","eventType":"progress","overallProgress":0.5,"previewUrl":"https://p.example","createdAt":"2025-01-01 00:00:02"}`,
			want: BuildEvent{ID: 44, BuildID: "B9", Type: "progress", Kind: KindProgress, Progress: 0.5, HasProgress: true,
				PreviewURL: "https://p.example", CreatedAt: time.Date(2025, 1, 1, 0, 0, 2, 0, time.UTC)},
		},
		{
			name: "a field of an unexpected type is left out, not the event",
			raw:  `{"id":45,"event_type":"completed","phase":"deploy","title":{"en":"Deployed"},"overall_progress":"n/a","finished":true,"preview_url":"https://p.example/y"}`,
			want: BuildEvent{ID: 45, Type: "completed", Kind: KindCompleted, Phase: PhaseDeploy, Finished: true, PreviewURL: "https://p.example/y"},
		},
		{
			name: "legacy data with a field of an unexpected type",
			raw:  `{"id":46,"event_type":"deploy_completed","event_data":{"message":"Deployed!","previewUrl":"https://p.example/z","errorCode":500,"progress":"done"}}`,
			want: BuildEvent{ID: 46, Type: "deploy_completed", Kind: KindCompleted, Phase: PhaseDeploy, Title: "Deployed!",
				PreviewURL: "https://p.example/z",
				Data:       json.RawMessage(`{"message":"Deployed!","previewUrl":"https://p.example/z","errorCode":500,"progress":"done"}`)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := decodeEvent(json.RawMessage(tc.raw))
			if !ok {
				t.Fatal("event not decoded")
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
		})
	}
	for _, raw := range []string{`{"event_type":"progress"}`, `{"id":"abc"}`, `[1]`, `{"id":{}}`} {
		if _, ok := decodeEvent(json.RawMessage(raw)); ok {
			t.Errorf("%s decoded, want refused (no usable id)", raw)
		}
	}
}

func FuzzBuildsDecodeEvent(f *testing.F) {
	for _, s := range []string{
		`{"id":"1","event_type":"progress","overall_progress":60}`,
		`{"id":2,"event_type":"deploy_completed","event_data":{"previewUrl":"x","progress":"100"}}`,
		`{"id":"3","error":{"code":"X","params":[1]},"created_at":1700000000000}`,
		`{"id":4,"event_data":"not an object","finished":"true"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		ev, ok := decodeEvent(json.RawMessage(raw))
		if !ok {
			return
		}
		if ev.Progress < 0 || ev.Progress > 1 {
			t.Errorf("progress %v out of [0, 1] for %s", ev.Progress, raw)
		}
		if ev.Kind == "" {
			t.Errorf("no kind for %s", raw)
		}
	})
}

func TestBuildsLooseTime(t *testing.T) {
	utc := func(y int, m time.Month, d, h, mi, s, ns int) time.Time {
		return time.Date(y, m, d, h, mi, s, ns, time.UTC)
	}
	for raw, want := range map[string]time.Time{
		`"2025-03-04T10:00:00.123Z"`:  utc(2025, 3, 4, 10, 0, 0, 123e6),
		`"2025-03-04T12:00:00+02:00"`: utc(2025, 3, 4, 10, 0, 0, 0),
		`"2025-03-04T10:00:00"`:       utc(2025, 3, 4, 10, 0, 0, 0),
		`"2025-03-04 10:00:00.5+00"`:  utc(2025, 3, 4, 10, 0, 0, 5e8),
		`"2025-03-04 10:00:00"`:       utc(2025, 3, 4, 10, 0, 0, 0),
		`"2025-03-04"`:                utc(2025, 3, 4, 0, 0, 0, 0),
		`1741082400`:                  time.Unix(1741082400, 0).UTC(),
		`1741082400123`:               time.UnixMilli(1741082400123).UTC(),
		`" 1741082400 "`:              time.Unix(1741082400, 0).UTC(),
		`null`:                        {},
		`"not a time"`:                {},
		`{"at":1}`:                    {},
		`-5`:                          {},
	} {
		var lt jsonx.LooseTime
		if err := json.Unmarshal([]byte(raw), &lt); err != nil || !lt.Time.Equal(want) {
			t.Errorf("%s: got %v, %v; want %v", raw, lt.Time, err, want)
		}
	}
}

// A page of versions reads the same whichever way it is decoded: the fast
// way (one pass, plain types) for what the worker sends, the loose way for
// anything else.
func TestBuildsVersionsPageDecodesAlike(t *testing.T) {
	for _, page := range []string{
		`{"success":true,"versions":[{"id":"v2","semver":"1.1.0","name":"Two","description":"d","type":"minor","createdAt":"2025-06-01T10:00:00.123+02:00",
			"isPublished":true,"previewUrl":"https://p.example/v2","hasArtifact":true,"artifactSize":2048,"canPreview":true,"canRollback":false,"extra":{"a":[1]}},
			{"id":" v1 ","createdAt":null,"previewUrl":null}],"pagination":{"total":2,"hasMore":false}}`,
		`{"versions":[{"id":7,"createdAt":"2025-06-01 10:00:00","isPublished":"true","artifactSize":"12"}],"pagination":{"hasMore":"1"}}`,
		`{"success":true,"versions":[]}`,
	} {
		var fast, loose versionsWire
		if err := fast.unmarshalAnswer([]byte(page)); err != nil {
			t.Fatal(err)
		}
		if err := loose.unmarshalLoosely([]byte(page)); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(loose, fast, cmp.AllowUnexported(versionsWire{}, jsonx.Number{}, jsonx.LooseBool{}), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s\n(-loose +fast):\n%s", page, diff)
		}
	}
	var w versionsWire
	err := w.unmarshalAnswer([]byte(`{"success":false,"error":"project_not_found","message":"gone"}`))
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Code != "project_not_found" {
		t.Errorf("success:false read as %v, want the worker's refusal", err)
	}
}

func FuzzBuildsVersionsPage(f *testing.F) {
	for _, s := range []string{
		`{"versions":[{"id":"v1","createdAt":"2025-06-01T10:00:00Z","artifactSize":1e3,"isPublished":true}]}`,
		`{"versions":[{"id":"v1"},{"ID":"v2","Semver":"x"}],"pagination":{"total":2}}`,
		`{"Versions":null,"versions":[{"id":"\u00761"}]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, page string) {
		var fast, loose versionsWire
		errFast := fast.unmarshalAnswer([]byte(page))
		errLoose := loose.unmarshalLoosely([]byte(page))
		if (errFast == nil) != (errLoose == nil) {
			t.Fatalf("%s: fast error %v, loose error %v", page, errFast, errLoose)
		}
		if diff := cmp.Diff(loose, fast, cmp.AllowUnexported(versionsWire{}, jsonx.Number{}, jsonx.LooseBool{}), cmpopts.EquateEmpty()); errFast == nil && diff != "" {
			t.Fatalf("%s\n(-loose +fast):\n%s", page, diff)
		}
	})
}
