package sheen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jarcoal/httpmock"
)

const buildsBase = "https://worker.test/base"

// buildsClient makes a client over an httpmock transport (the SDK's signer
// still runs on top), with fast retries and a balance-change recorder.
func buildsClient(t *testing.T, opts ...Option) (*WorkerClient, *httpmock.MockTransport, *buildsBalanceNotes) {
	t.Helper()
	mt := httpmock.NewMockTransport()
	c := newTestClient(t, mt, opts...)
	notes := &buildsBalanceNotes{}
	c.billing.invalidated = notes.add
	return c, mt, notes
}

type buildsBalanceNotes struct {
	mu    sync.Mutex
	users []string
}

func (n *buildsBalanceNotes) add(u string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.users = append(n.users, u)
}

func (n *buildsBalanceNotes) list() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.users...)
}

// buildsRequest is one request as the worker saw it.
type buildsRequest struct {
	Method, Path, Query string
	Body                string
	Header              http.Header
}

// buildsRecorder answers each request with the next of answers (the
// last one repeats) and records the request.
type buildsRecorder struct {
	mu      sync.Mutex
	answers []httpmock.Responder
	reqs    []buildsRequest
}

func (r *buildsRecorder) respond(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
	}
	r.mu.Lock()
	i := len(r.reqs)
	r.reqs = append(r.reqs, buildsRequest{Method: req.Method, Path: req.URL.EscapedPath(), Query: req.URL.RawQuery, Body: string(body), Header: req.Header.Clone()})
	answer := r.answers[min(i, len(r.answers)-1)]
	r.mu.Unlock()
	return answer(req)
}

func (r *buildsRecorder) requests() []buildsRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]buildsRequest(nil), r.reqs...)
}

func buildsRecord(answers ...httpmock.Responder) *buildsRecorder {
	return &buildsRecorder{answers: answers}
}

func buildsAnswer(status int, body string) httpmock.Responder {
	return func(*http.Request) (*http.Response, error) {
		resp := httpmock.NewStringResponse(status, body)
		resp.Header.Set("Content-Type", "application/json")
		return resp, nil
	}
}

func TestBuildsCreatePreviewSendsTheBodyAndDropsTheBalance(t *testing.T) {
	c, mt, notes := buildsClient(t)
	rec := buildsRecord(buildsAnswer(200, `{"success":true,"jobId":42,"buildId":"01BUILD","planId":"01BUILD","projectId":"p-new",
		"status":"queued","message":"queued","estimatedTime":"60-90 seconds for new projects","correlationId":"req_1"}`))
	mt.RegisterResponder("POST", buildsBase+"/v1/create-preview-for-new-project", rec.respond)

	b, err := c.Builds.CreatePreview(context.Background(), CreatePreviewRequest{
		UserID:        "u1",
		Prompt:        "a <b>todo</b> app & more",
		Framework:     FrameworkReact,
		TemplateFiles: map[string]string{"src/b.js": "b", "src/a.js": "a"},
		Metadata:      map[string]any{"source": "test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := &Build{
		ID: "01BUILD", JobID: "42", PlanID: "01BUILD", ProjectID: "p-new", Status: "queued",
		Message: "queued", EstimatedTime: "60-90 seconds for new projects", CorrelationID: "req_1",
	}
	if diff := cmp.Diff(want, b); diff != "" {
		t.Errorf("build (-want +got):\n%s", diff)
	}
	reqs := rec.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	// Compact, key order as the spec lists them, no HTML escaping, optional
	// projectId left out.
	wantBody := `{"userId":"u1","prompt":"a <b>todo</b> app & more","framework":"react","templateFiles":{"src/a.js":"a","src/b.js":"b"},"metadata":{"source":"test"}}`
	if reqs[0].Body != wantBody {
		t.Errorf("body\n got %s\nwant %s", reqs[0].Body, wantBody)
	}
	if reqs[0].Header.Get("x-sheen-signature") == "" {
		t.Error("the request was not signed")
	}
	if diff := cmp.Diff([]string{"u1"}, notes.list()); diff != "" {
		t.Errorf("balance-changed notes (-want +got):\n%s", diff)
	}
}

func TestBuildsUpdateProjectRequest(t *testing.T) {
	c, mt, notes := buildsClient(t)
	rec := buildsRecord(buildsAnswer(200, `{"success":true,"buildId":"B2","jobId":"J2","projectId":"p1","message":"ok","baseVersionId":"V1","estimatedTime":45}`))
	mt.RegisterResponder("POST", buildsBase+"/v1/update-project", rec.respond)
	b, err := c.Builds.UpdateProject(context.Background(), UpdateProjectRequest{UserID: "u1", ProjectID: "p1", Prompt: "add login"})
	if err != nil {
		t.Fatal(err)
	}
	want := &Build{ID: "B2", JobID: "J2", ProjectID: "p1", Message: "ok", BaseVersionID: "V1", EstimatedTime: "45"}
	want.CorrelationID = b.CorrelationID // the SDK's own, since the worker sent none
	if diff := cmp.Diff(want, b); diff != "" {
		t.Errorf("build (-want +got):\n%s", diff)
	}
	if _, err := uuid.Parse(b.CorrelationID); err != nil {
		t.Errorf("correlation id %q is not the UUID the SDK sent", b.CorrelationID)
	}
	if got, want := rec.requests()[0].Body, `{"userId":"u1","projectId":"p1","prompt":"add login"}`; got != want {
		t.Errorf("body %s, want %s", got, want)
	}
	if got := rec.requests()[0].Header.Get("X-Correlation-Id"); got != b.CorrelationID {
		t.Errorf("Build.CorrelationID %q is not the header sent (%q)", b.CorrelationID, got)
	}
	if diff := cmp.Diff([]string{"u1"}, notes.list()); diff != "" {
		t.Errorf("balance-changed notes (-want +got):\n%s", diff)
	}
}

func TestBuildsAnswerWithoutBuildIDIsAnError(t *testing.T) {
	for _, tc := range []struct {
		name, path, answer string
		call               func(*WorkerClient) error
		wantCode           ErrorCode // for success:false answers
	}{
		{
			name: "create with empty job and build ids", path: "/v1/create-preview-for-new-project",
			answer: `{"success":true,"jobId":"","buildId":"","message":"Preview creation job queued"}`,
			call: func(c *WorkerClient) error {
				_, err := c.Builds.CreatePreview(context.Background(), CreatePreviewRequest{UserID: "u1", Prompt: "x"})
				return err
			},
		},
		{
			name: "update without build id", path: "/v1/update-project",
			answer: `{"success":true,"jobId":"","projectId":"p1"}`,
			call: func(c *WorkerClient) error {
				_, err := c.Builds.UpdateProject(context.Background(), UpdateProjectRequest{UserID: "u1", ProjectID: "p1", Prompt: "x"})
				return err
			},
		},
		{
			name: "rebuild without job id", path: "/v1/versions/v1/rebuild",
			answer: `{"success":true,"versionId":"v1"}`,
			call: func(c *WorkerClient) error {
				_, err := c.Builds.Rebuild(context.Background(), "v1")
				return err
			},
		},
		{
			name: "create answered success:false with 200", path: "/v1/create-preview-for-new-project",
			answer: `{"success":false,"error":"queue_unavailable","message":"try later"}`, wantCode: "queue_unavailable",
			call: func(c *WorkerClient) error {
				_, err := c.Builds.CreatePreview(context.Background(), CreatePreviewRequest{UserID: "u1", Prompt: "x"})
				return err
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, mt, notes := buildsClient(t)
			mt.RegisterResponder("POST", buildsBase+tc.path, buildsAnswer(200, tc.answer))
			err := tc.call(c)
			if err == nil {
				t.Fatal("no error for an answer that started no build")
			}
			if tc.wantCode != "" {
				var apiErr *APIError
				if !errors.As(err, &apiErr) || apiErr.Code != tc.wantCode || apiErr.Message != "try later" {
					t.Errorf("error %v, want an *APIError with code %s", err, tc.wantCode)
				} else if apiErr.StatusCode != 200 || apiErr.Method != "POST" || apiErr.Path != "/base"+tc.path || apiErr.CorrelationID == "" {
					t.Errorf("refusal %+v does not name the call (status 200, POST /base%s, its correlation id)", apiErr, tc.path)
				}
				if errors.Is(err, ErrInvalidResponse) {
					t.Errorf("error %v matches ErrInvalidResponse: a refusal is the worker's answer, not an unusable one", err)
				}
			} else if !errors.Is(err, ErrBuildNotQueued) || !errors.Is(err, ErrInvalidResponse) {
				t.Errorf("error %v does not match ErrBuildNotQueued and ErrInvalidResponse", err)
			}
			if n := notes.list(); len(n) != 0 {
				t.Errorf("balance dropped for %v although no build started", n)
			}
		})
	}
}

func TestBuildsCreatePreviewInsufficientBalance(t *testing.T) {
	c, mt, notes := buildsClient(t, WithRetry(RetryConfig{MaxAttempts: 1, MaxWait: time.Second}))
	mt.RegisterResponder("POST", buildsBase+"/v1/create-preview-for-new-project", buildsAnswer(402,
		`{"success":false,"error":"insufficient_ai_time","message":"Insufficient AI time balance to start build","balance":{"welcomeBonus":0,"dailyGift":60,"paid":0,"total":60},"required":180}`))
	_, err := c.Builds.CreatePreview(context.Background(), CreatePreviewRequest{UserID: "u1", Prompt: "x"})
	var ib *InsufficientBalanceError
	if !errors.As(err, &ib) {
		t.Fatalf("error %v, want *InsufficientBalanceError", err)
	}
	if ib.Required != 180*time.Second || ib.Available != 60*time.Second {
		t.Errorf("required %s available %s, want 3m0s and 1m0s", ib.Required, ib.Available)
	}
	if diff := cmp.Diff([]string{"u1"}, notes.list()); diff != "" {
		t.Errorf("a 402 must drop the cached balance (-want +got):\n%s", diff)
	}
}

func TestBuildsPreBuildCheck(t *testing.T) {
	files := map[string]string{}
	for i := range 12 {
		files[string(rune('a'+i))+".js"] = "x"
	}
	const created = `{"success":true,"buildId":"B1","jobId":"J1"}`
	for _, tc := range []struct {
		name        string
		clientOpts  []Option
		check       httpmock.Responder
		wantChecks  int
		wantCreates int
		wantShort   bool
	}{
		{
			name:       "v2.1 answers 200 sufficient:false",
			clientOpts: []Option{WithPreBuildCheck(true)},
			check: buildsAnswer(200, `{"sufficient":false,"estimate":{"estimatedSeconds":300,"confidence":"high","basedOnSamples":12},
				"balance":{"welcomeBonus":0,"dailyGift":60,"paid":0,"total":60},"recommendation":{"suggestedPackage":"mini","costToComplete":5,"purchaseUrl":"https://pay.example/mini"}}`),
			wantChecks: 1, wantShort: true,
		},
		{
			name:       "deployed worker answers 402",
			clientOpts: []Option{WithPreBuildCheck(true)},
			check:      buildsAnswer(402, `{"error":"INSUFFICIENT_AI_TIME","http_status":402,"balance_seconds":120,"resume_token":"0123456789abcdef0123456789abcdef"}`),
			wantChecks: 1, wantShort: true,
		},
		{
			name:       "sufficient",
			clientOpts: []Option{WithPreBuildCheck(true)},
			check:      buildsAnswer(200, `{"sufficient":true,"estimate":null,"balance":{"welcomeBonus":0,"dailyGift":0,"paid":3600,"total":3600}}`),
			wantChecks: 1, wantCreates: 1,
		},
		{
			name:        "off by default",
			check:       buildsAnswer(200, `{"sufficient":false}`),
			wantCreates: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, mt, _ := buildsClient(t, tc.clientOpts...)
			checks, creates := buildsRecord(tc.check), buildsRecord(buildsAnswer(200, created))
			mt.RegisterResponder("POST", buildsBase+"/v1/billing/check-sufficient", checks.respond)
			mt.RegisterResponder("POST", buildsBase+"/v1/create-preview-for-new-project", creates.respond)
			b, err := c.Builds.CreatePreview(context.Background(), CreatePreviewRequest{UserID: "u1", Prompt: "x", TemplateFiles: files})
			if n := len(checks.requests()); n != tc.wantChecks {
				t.Errorf("%d balance checks, want %d", n, tc.wantChecks)
			}
			if n := len(creates.requests()); n != tc.wantCreates {
				t.Errorf("%d builds started, want %d", n, tc.wantCreates)
			}
			if tc.wantShort {
				var ib *InsufficientBalanceError
				if !errors.As(err, &ib) || !errors.Is(err, ErrInsufficientBalance) {
					t.Fatalf("error %v, want *InsufficientBalanceError", err)
				}
				if !ib.Code.Equal(CodeInsufficientAITime) {
					t.Errorf("code %q, want %q", ib.Code, CodeInsufficientAITime)
				}
				if !ib.HasAvailable {
					t.Error("the balance the check reported is missing from the error")
				}
				return
			}
			if err != nil || b.ID != "B1" {
				t.Fatalf("got %+v, %v; want build B1", b, err)
			}
			if tc.wantChecks > 0 {
				var sent struct {
					UserID, OperationType, ProjectSize string
					IsUpdate                           bool
				}
				if err := json.Unmarshal([]byte(checks.requests()[0].Body), &sent); err != nil {
					t.Fatal(err)
				}
				want := struct {
					UserID, OperationType, ProjectSize string
					IsUpdate                           bool
				}{"u1", "main_build", "medium", false}
				if sent != want {
					t.Errorf("check asked %+v, want %+v (12 template files are a medium project)", sent, want)
				}
			}
		})
	}
}

func TestBuildsRollbackIdempotencyKeyReusedAcrossRetries(t *testing.T) {
	c, mt, _ := buildsClient(t)
	rec := buildsRecord(
		buildsAnswer(500, `{"error":"internal"}`),
		buildsAnswer(200, `{"success":true,"rollbackVersionId":"V9","targetVersionId":"V3","previewUrl":"https://p.example/V9","status":"rollingBack","jobId":"J9"}`),
	)
	mt.RegisterResponder("POST", buildsBase+"/v1/versions/rollback", rec.respond)
	req := RollbackRequest{UserID: "u1", ProjectID: "p1", TargetVersionID: "V3"}
	res, err := c.Builds.Rollback(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	reqs := rec.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d attempts, want 2: a 500 is retried because the key makes the call idempotent", len(reqs))
	}
	key := reqs[0].Header.Get("Idempotency-Key")
	if _, err := uuid.Parse(key); err != nil {
		t.Fatalf("Idempotency-Key %q is not a UUID", key)
	}
	if got := reqs[1].Header.Get("Idempotency-Key"); got != key {
		t.Errorf("retry sent Idempotency-Key %q, first attempt %q: a retried rollback could run twice", got, key)
	}
	wantBody := `{"projectId":"p1","targetVersionId":"V3","userId":"u1"}`
	for i, r := range reqs {
		if r.Body != wantBody {
			t.Errorf("attempt %d body %s, want %s", i+1, r.Body, wantBody)
		}
	}
	want := &RollbackResult{RollbackVersionID: "V9", TargetVersionID: "V3", PreviewURL: "https://p.example/V9", Status: "rollingBack", JobID: "J9", IdempotencyKey: key}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}

	// A second call is a second rollback: a new key.
	if _, err := c.Builds.Rollback(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if got := rec.requests()[2].Header.Get("Idempotency-Key"); got == key || got == "" {
		t.Errorf("second call sent key %q; want a fresh one", got)
	}
	// A caller's key is sent as given.
	req.IdempotencyKey = "rollback-p1-V3"
	res, err = c.Builds.Rollback(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.requests()[3].Header.Get("Idempotency-Key"); got != "rollback-p1-V3" || res.IdempotencyKey != got {
		t.Errorf("sent key %q, result key %q; want the caller's", got, res.IdempotencyKey)
	}
}

func TestBuildsRollbackInProgress(t *testing.T) {
	c, mt, _ := buildsClient(t)
	mt.RegisterResponder("POST", buildsBase+"/v1/versions/rollback",
		buildsAnswer(409, `{"error":"rollback_in_progress","message":"A rollback is already running"}`))
	_, err := c.Builds.Rollback(context.Background(), RollbackRequest{UserID: "u1", ProjectID: "p1", TargetVersionID: "V3"})
	var apiErr *APIError
	if !errors.Is(err, ErrConflict) || !errors.As(err, &apiErr) || apiErr.Code != CodeRollbackInProgress {
		t.Fatalf("error %v, want a conflict with code %s", err, CodeRollbackInProgress)
	}
}

func TestBuildsRebuild(t *testing.T) {
	c, mt, _ := buildsClient(t)
	rec := buildsRecord(buildsAnswer(200, `{"success":true,"jobId":123,"versionId":"v 1"}`))
	mt.RegisterResponder("POST", buildsBase+"/v1/versions/v%201/rebuild", rec.respond)
	b, err := c.Builds.Rebuild(context.Background(), "v 1")
	if err != nil {
		t.Fatal(err)
	}
	if b.ID != "123" || b.JobID != "123" || b.VersionID != "v 1" {
		t.Errorf("got %+v; want build and job 123 of version %q", b, "v 1")
	}
	r := rec.requests()[0]
	if r.Body != "" || r.Header.Get("Content-Type") != "" {
		t.Errorf("rebuild sent body %q with Content-Type %q; want none", r.Body, r.Header.Get("Content-Type"))
	}
}

func TestBuildsStatus(t *testing.T) {
	c, mt, _ := buildsClient(t)
	rec := buildsRecord(buildsAnswer(200, `{"buildId":"B1","status":"failed","progress":60,"previewUrl":null,
		"error":"Build failed: missing module","currentPhase":"build","finished":true,"eventCount":"17","lastUpdate":"2025-03-04T05:06:07.000Z"}`))
	mt.RegisterResponder("GET", buildsBase+"/v1/builds/B1/status", rec.respond)
	st, err := c.Builds.Status(context.Background(), "B1", "user 1")
	if err != nil {
		t.Fatal(err)
	}
	want := &BuildStatus{
		ID: "B1", Status: "failed", Progress: 0.6, Error: &BuildEventError{Message: "Build failed: missing module"},
		CurrentPhase: "build", Finished: true, EventCount: 17, LastUpdate: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC),
	}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if q := rec.requests()[0].Query; q != "userId=user+1" {
		t.Errorf("query %q, want userId=user+1", q)
	}
}

func TestBuildsRefuseBadInputBeforeSending(t *testing.T) {
	c, mt, _ := buildsClient(t)
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"create: empty user": func() error {
			_, err := c.Builds.CreatePreview(ctx, CreatePreviewRequest{Prompt: "x"})
			return err
		},
		"create: empty prompt": func() error {
			_, err := c.Builds.CreatePreview(ctx, CreatePreviewRequest{UserID: "u1", Prompt: "  "})
			return err
		},
		"create: project id with a slash": func() error {
			_, err := c.Builds.CreatePreview(ctx, CreatePreviewRequest{UserID: "u1", ProjectID: "a/../b", Prompt: "x"})
			return err
		},
		"create: unknown framework": func() error {
			_, err := c.Builds.CreatePreview(ctx, CreatePreviewRequest{UserID: "u1", Prompt: "x", Framework: "angular"})
			return err
		},
		"update: framework in the wrong case": func() error {
			_, err := c.Builds.UpdateProject(ctx, UpdateProjectRequest{UserID: "u1", ProjectID: "p1", Prompt: "x", Framework: "React"})
			return err
		},
		"update: dot-dot project": func() error {
			_, err := c.Builds.UpdateProject(ctx, UpdateProjectRequest{UserID: "u1", ProjectID: "..", Prompt: "x"})
			return err
		},
		"rollback: empty target": func() error {
			_, err := c.Builds.Rollback(ctx, RollbackRequest{UserID: "u1", ProjectID: "p1"})
			return err
		},
		"rollback: idempotency key with a line break": func() error {
			_, err := c.Builds.Rollback(ctx, RollbackRequest{UserID: "u1", ProjectID: "p1", TargetVersionID: "v1", IdempotencyKey: "k1\r\nX-Evil: 1"})
			return err
		},
		"rebuild: version with a slash": func() error {
			_, err := c.Builds.Rebuild(ctx, "v1/../../admin")
			return err
		},
		"status: control character": func() error {
			_, err := c.Builds.Status(ctx, "B1\n", "u1")
			return err
		},
		"versions: empty project": func() error {
			for _, err := range c.Builds.Versions(ctx, "", "") {
				return err
			}
			return nil
		},
		"versions: unknown state": func() error {
			for _, err := range c.Builds.Versions(ctx, "p1", "draft") {
				return err
			}
			return nil
		},
		"wait: empty user": func() error {
			_, err := c.Builds.Wait(ctx, "B1", "", nil)
			return err
		},
	} {
		var ve *ValidationError
		if err := call(); !errors.As(err, &ve) {
			t.Errorf("%s: error %v, want *ValidationError", name, err)
		}
	}
	if n := mt.GetTotalCallCount(); n != 0 {
		t.Errorf("%d requests were sent for invalid input", n)
	}
}

// A queued build is a success even when a field it does not need comes with
// an odd type: taking it for a failure would make a retrying caller start a
// second build.
func TestBuildsOddTypedFieldDoesNotHideAQueuedBuild(t *testing.T) {
	c, mock := newMockClient(t)
	mock.RegisterResponder("POST", "=~/v1/create-preview-for-new-project", httpmock.NewStringResponder(200,
		`{"success":true,"jobId":"j1","buildId":"b1","projectId":"p1","status":"queued","message":{"text":"queued"},"code":7,"correlationId":12}`))
	b, err := c.Builds.CreatePreview(context.Background(), CreatePreviewRequest{UserID: "u1", Prompt: "x"})
	if err != nil || b.ID != "b1" || b.ProjectID != "p1" {
		t.Fatalf("got %+v, %v", b, err)
	}
}

// Every method sends the caller's CallOptions with its request, and a
// Response asked for is filled; a build's correlation id is the one sent
// when the worker names none.
func TestBuildsCallOptionsReachTheRequest(t *testing.T) {
	c, mt, _ := buildsClient(t)
	rec := buildsRecord(buildsAnswer(200, `{"success":true,"buildId":"B1","jobId":"J1","rollbackVersionId":"V9","status":"queued",
		"versions":[],"events":[{"id":1,"event_type":"completed","phase":"deploy","finished":true}]}`))
	mt.RegisterNoResponder(rec.respond)
	ctx := context.Background()
	opts := func(name string, r *Response) []CallOption {
		return []CallOption{WithHeader("X-Trace", name), WithCorrelationID("corr-" + name), WithResponse(r)}
	}
	var resp Response
	b, err := c.Builds.CreatePreview(ctx, CreatePreviewRequest{UserID: "u1", Prompt: "x"}, opts("create", &resp)...)
	if err != nil {
		t.Fatal(err)
	}
	if b.CorrelationID != "corr-create" || resp.StatusCode != 200 || resp.CorrelationID != "corr-create" || resp.Attempts != 1 {
		t.Errorf("build correlation id %q, response %+v; want corr-create, a 200 after 1 attempt", b.CorrelationID, resp)
	}
	calls := map[string]func(r *Response) error{
		"update": func(r *Response) error {
			_, err := c.Builds.UpdateProject(ctx, UpdateProjectRequest{UserID: "u1", ProjectID: "p1", Prompt: "x"}, opts("update", r)...)
			return err
		},
		"rebuild": func(r *Response) error { _, err := c.Builds.Rebuild(ctx, "v1", opts("rebuild", r)...); return err },
		"rollback": func(r *Response) error {
			_, err := c.Builds.Rollback(ctx, RollbackRequest{UserID: "u1", ProjectID: "p1", TargetVersionID: "v1"}, opts("rollback", r)...)
			return err
		},
		"status": func(r *Response) error { _, err := c.Builds.Status(ctx, "B1", "u1", opts("status", r)...); return err },
		"versions": func(r *Response) error {
			for _, err := range c.Builds.Versions(ctx, "p1", "", opts("versions", r)...) {
				return err
			}
			return nil
		},
		"wait": func(r *Response) error {
			_, err := c.Builds.Wait(ctx, "B1", "u1", &FollowOptions{MetadataWait: -1}, opts("wait", r)...)
			return err
		},
	}
	for name, call := range calls {
		var r Response
		n := len(rec.requests())
		if err := call(&r); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		reqs := rec.requests()
		if len(reqs) != n+1 {
			t.Errorf("%s made %d requests, want 1", name, len(reqs)-n)
			continue
		}
		if h := reqs[n].Header; h.Get("X-Trace") != name || h.Get("X-Correlation-Id") != "corr-"+name {
			t.Errorf("%s sent X-Trace %q and correlation id %q", name, h.Get("X-Trace"), h.Get("X-Correlation-Id"))
		}
		if r.StatusCode != 200 || r.CorrelationID != "corr-"+name {
			t.Errorf("%s: response %+v, want its 200 recorded", name, r)
		}
	}
}

// A build or rollback started for a project makes the project's cached
// export link stale: the next export asks the worker again.
func TestBuildsDropTheProjectsExportLink(t *testing.T) {
	c, mt, _ := buildsClient(t)
	link := fmt.Sprintf(`{"success":true,"downloadUrl":"https://store.test/exports/p1.zip?X-Amz-Signature=x","expiresAt":%q,"filename":"p1.zip","size":1}`,
		time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339))
	exports := buildsRecord(buildsAnswer(200, link))
	mt.RegisterResponder("GET", buildsBase+"/v1/projects/p1/export", exports.respond)
	mt.RegisterResponder("POST", buildsBase+"/v1/update-project", buildsAnswer(200, `{"success":true,"buildId":"B1","projectId":"p1"}`))
	mt.RegisterResponder("POST", buildsBase+"/v1/versions/rollback", buildsAnswer(200, `{"success":true,"rollbackVersionId":"V9"}`))
	ctx := context.Background()
	export := func() {
		t.Helper()
		if _, err := c.Exports.ProjectLink(ctx, "p1", "u1"); err != nil {
			t.Fatal(err)
		}
	}
	export()
	export()
	if n := len(exports.requests()); n != 1 {
		t.Fatalf("%d export requests, want 1: the link is cached", n)
	}
	if _, err := c.Builds.UpdateProject(ctx, UpdateProjectRequest{UserID: "u1", ProjectID: "p1", Prompt: "x"}); err != nil {
		t.Fatal(err)
	}
	export()
	if n := len(exports.requests()); n != 2 {
		t.Errorf("%d export requests, want 2: an update makes the project's link stale", n)
	}
	if _, err := c.Builds.Rollback(ctx, RollbackRequest{UserID: "u1", ProjectID: "p1", TargetVersionID: "v1"}); err != nil {
		t.Fatal(err)
	}
	export()
	if n := len(exports.requests()); n != 3 {
		t.Errorf("%d export requests, want 3: a rollback makes the project's link stale", n)
	}
}

// A rebuild whose outcome is unknown may have started: RebuildMissing
// drops the user's balance and the links as when it surely started.
func TestRebuildMissingDropsWhenTheOutcomeIsUnknown(t *testing.T) {
	c, mt, notes := buildsClient(t)
	link := fmt.Sprintf(`{"success":true,"downloadUrl":"https://store.test/exports/p1.zip?X-Amz-Signature=x","expiresAt":%q,"filename":"p1.zip","size":1}`,
		time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339))
	exports := buildsRecord(buildsAnswer(200, link))
	mt.RegisterResponder("GET", buildsBase+"/v1/projects/p1/export", exports.respond)
	rebuilds := buildsRecord(buildsAnswer(500, `{"error":"boom"}`))
	mt.RegisterResponder("POST", buildsBase+"/v1/versions/v1/rebuild", rebuilds.respond)
	ctx := context.Background()
	if _, err := c.Exports.ProjectLink(ctx, "p1", "u1"); err != nil {
		t.Fatal(err)
	}
	missing := &ArtifactMissingError{APIError: &APIError{StatusCode: 404}, CanRebuild: true, VersionID: "v1", UserID: "u1",
		from: linkRequest{linkProject, "p1", "u1"}}
	_, err := c.Exports.RebuildMissing(ctx, missing, nil)
	if !errors.Is(err, ErrOutcomeUnknown) || len(rebuilds.requests()) != 1 {
		t.Fatalf("RebuildMissing: %v after %d rebuild requests; want ErrOutcomeUnknown after one", err, len(rebuilds.requests()))
	}
	if got := notes.list(); len(got) != 1 || got[0] != "u1" {
		t.Errorf("balances dropped: %q; want u1's", got)
	}
	if _, err := c.Exports.ProjectLink(ctx, "p1", "u1"); err != nil {
		t.Fatal(err)
	}
	if n := len(exports.requests()); n != 2 {
		t.Errorf("%d export requests, want 2: the project's link is stale once a rebuild may have started", n)
	}
}

// RebuildMissing needs the user to wait for the rebuild: an error without
// one is refused before the rebuild is asked for, not after it started.
func TestRebuildMissingRefusesAMissingUserBeforeRebuilding(t *testing.T) {
	c, mt, _ := buildsClient(t)
	rebuilds := buildsRecord(buildsAnswer(200, `{"success":true,"jobId":"J1","versionId":"v1"}`))
	mt.RegisterResponder("POST", buildsBase+"/v1/versions/v1/rebuild", rebuilds.respond)
	_, err := c.Exports.RebuildMissing(context.Background(), &ArtifactMissingError{APIError: &APIError{StatusCode: 404}, CanRebuild: true, VersionID: "v1"}, nil)
	var ve *ValidationError
	if !errors.As(err, &ve) || len(rebuilds.requests()) != 0 {
		t.Fatalf("got %v after %d rebuild requests; want a *ValidationError before any", err, len(rebuilds.requests()))
	}
}
