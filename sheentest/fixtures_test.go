package sheentest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sheen "github.com/sheenapps/sheen-go"
)

var update = flag.Bool("update", false, "rewrite sheentest/fixtures from what the server sends now")

// fixtureNow is what the fixtures' server clock reads when they are made.
var fixtureNow = time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC)

const (
	fixtureBase   = "https://worker.test"
	fixtureSecret = "sheentest-fixtures-secret-0123456789abcdef"
	fixtureUser   = "5b0e6c3a-8f0e-4d3e-9a57-2f1c3f1d7a10"
	fixturePoor   = "0b6f3a10-0000-4000-8000-000000000001"
)

// The checked-in fixtures are what the server sends: regenerate them from
// the server and compare. After a deliberate change to an answer, run
//
//	go test ./sheentest -run TestFixtures -update
func TestFixtures(t *testing.T) {
	got := generateFixtures(t)
	again := generateFixtures(t)
	for name, body := range got {
		if !bytes.Equal(body, again[name]) {
			t.Errorf("fixture %s differs between two runs: a value that changes from run to run is not made fixed:\n%s\n%s", name, body, again[name])
		}
	}
	if t.Failed() {
		return
	}
	dir := "fixtures"
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]bool{}
	for _, f := range fixtureTable {
		file := fixtureFile(f)
		want[file] = true
		body, ok := got[f.Name]
		if !ok {
			t.Errorf("fixture %s is in the table but no scenario makes it", f.Name)
			continue
		}
		path := filepath.Join(dir, file)
		if *update {
			if old, err := os.ReadFile(path); err == nil && sameFixture(f, old, body) {
				continue // keep the bytes: gzip output may differ between Go releases
			}
			if err := os.WriteFile(path, body, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		old, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("fixture %s: %v (run go test ./sheentest -run TestFixtures -update)", f.Name, err)
			continue
		}
		if !sameFixture(f, old, body) {
			t.Errorf("fixture %s is out of date: the server now sends\n%s\nthe file has\n%s\n(after a deliberate change: go test ./sheentest -run TestFixtures -update)", path, clip(body), clip(old))
		}
		if emb := FixtureNamed(f.Name); !bytes.Equal(emb.Body, old) {
			t.Errorf("fixture %s: the embedded copy differs from the file", f.Name)
		}
	}
	for name := range got {
		if !slices.ContainsFunc(fixtureTable, func(f Fixture) bool { return f.Name == name }) {
			t.Errorf("scenario %s makes a fixture the table does not list", name)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !want[e.Name()] {
			t.Errorf("fixtures/%s belongs to no fixture: remove it", e.Name())
		}
	}
}

// Every route the SDK calls has a golden answer, and every fixture
// answers with its table's status and content type.
func TestFixturesCoverEveryRoute(t *testing.T) {
	for _, route := range sheen.Routes() {
		if !slices.ContainsFunc(Fixtures(), func(f Fixture) bool { return f.Route == route && f.Status == 200 }) {
			t.Errorf("no fixture answers %s with 200", route)
		}
	}
	for _, f := range Fixtures() {
		if len(f.Body) == 0 {
			t.Errorf("fixture %s has no body", f.Name)
			continue
		}
		resp, err := f.Respond(nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != f.Status || !bytes.Equal(body, f.Body) {
			t.Errorf("fixture %s answers %d with %d bytes", f.Name, resp.StatusCode, len(body))
		}
		if f.ContentType == jsonType && !json.Valid(f.Body) {
			t.Errorf("fixture %s is not JSON", f.Name)
		}
	}
	if _, err := FixtureNamed("no-such-fixture").Respond(nil); err == nil || !strings.Contains(err.Error(), "no-such-fixture") {
		t.Errorf("an unknown fixture answers %v", err)
	}
}

func sameFixture(f Fixture, a, b []byte) bool {
	if f.Route != RouteStore {
		return bytes.Equal(a, b)
	}
	ta, errA := tarEntries(a)
	tb, errB := tarEntries(b)
	return errA == nil && errB == nil && ta == tb
}

// tarEntries lists a .tar.gz's entries and contents, so archives compare
// by what they hold, not by how gzip compressed it.
func tarEntries(b []byte) (string, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	tr := tar.NewReader(zr)
	var sb strings.Builder
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return sb.String(), nil
		}
		if err != nil {
			return "", err
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&sb, "%s %o %d %s\n%s\n", h.Name, h.Mode, h.Size, h.ModTime.UTC().Format(time.RFC3339), data)
	}
}

func clip(b []byte) []byte {
	if len(b) > 2000 {
		return append(b[:2000:2000], "..."...)
	}
	return b
}

// exchange is one request and its answer, as the client saw them.
type exchange struct {
	method, target string
	header         http.Header
	reqBody        []byte
	status         int
	respHeader     http.Header
	body           []byte
}

// wireLog sits under the SDK's signing transport (and is the download
// client's transport) and keeps every exchange.
type wireLog struct {
	base *http.Transport
	mu   sync.Mutex
	log  []exchange
}

func (r *wireLog) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		reqBody, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, exchange{method: req.Method, target: req.URL.RequestURI(), header: req.Header.Clone(), reqBody: reqBody, status: resp.StatusCode, respHeader: resp.Header.Clone(), body: body})
	return resp, nil
}

// fixtureGen runs the scenarios and keeps one normalised body per fixture.
type fixtureGen struct {
	t   *testing.T
	out map[string][]byte
}

// rig is one fake worker with a recording client.
type rig struct {
	g   *fixtureGen
	srv *Server
	c   *sheen.WorkerClient
	rec *wireLog
}

func (g *fixtureGen) rig(opts []Option, clientOpts ...sheen.Option) *rig {
	g.t.Helper()
	base := []Option{WithTest(g.t), WithSecret(fixtureSecret), WithClockSkew(time.Until(fixtureNow))}
	srv := NewServer(append(base, opts...)...)
	rec := &wireLog{base: &http.Transport{}}
	g.t.Cleanup(rec.base.CloseIdleConnections)
	hc := &http.Client{Transport: rec}
	c, err := srv.Client(append([]sheen.Option{sheen.WithHTTPClient(hc), sheen.WithDownloadHTTPClient(hc)}, clientOpts...)...)
	if err != nil {
		g.t.Fatal(err)
	}
	return &rig{g: g, srv: srv, c: c, rec: rec}
}

// mark returns where the recorder's log stands, for capture.
func (r *rig) mark() int {
	r.rec.mu.Lock()
	defer r.rec.mu.Unlock()
	return len(r.rec.log)
}

// capture keeps, as fixture name, the last answer since mark with the
// fixture's status, after checking that the server routed it to the
// fixture's route.
func (r *rig) capture(name string, since int) exchange {
	t := r.g.t
	t.Helper()
	i := slices.IndexFunc(fixtureTable, func(f Fixture) bool { return f.Name == name })
	if i < 0 {
		t.Fatalf("fixture %s is not in the table", name)
	}
	f := fixtureTable[i]
	r.rec.mu.Lock()
	log := slices.Clone(r.rec.log[since:])
	r.rec.mu.Unlock()
	j := lastIndex(log, func(e exchange) bool { return e.status == f.Status })
	if j < 0 {
		t.Fatalf("fixture %s: no answer with status %d among %d", name, f.Status, len(log))
	}
	ex := log[j]
	if f.Route != "" {
		path := ex.target
		if strings.HasPrefix(path, "/_store/") {
			path, _, _ = strings.Cut(path, "?")
			path += "?[redacted]"
		}
		reqs := r.srv.Requests()
		k := lastIndex(reqs, func(q Request) bool { return q.Path == path && q.Method == ex.method })
		if k < 0 || reqs[k].Route != f.Route {
			t.Fatalf("fixture %s: %s %s did not reach route %s", name, ex.method, ex.target, f.Route)
		}
	}
	for k, want := range f.Header {
		got := ex.respHeader.Get(k)
		if n, err := strconv.ParseFloat(got, 64); err == nil && (k == "Retry-After" || k == "X-Ratelimit-Reset") {
			got = strconv.FormatInt(int64(math.Round(n/10)*10), 10) // seconds to a window's end
		}
		if got != want[0] {
			t.Errorf("fixture %s: the server sends %s: %q, the table says %q", name, k, got, want[0])
		}
	}
	body := ex.body
	if f.Route != RouteStore {
		var err error
		if body, err = normalise(ex.body, r.srv.URL); err != nil {
			t.Fatalf("fixture %s: %v\n%s", name, err, ex.body)
		}
	}
	if _, dup := r.g.out[name]; dup {
		t.Fatalf("fixture %s made twice", name)
	}
	r.g.out[name] = body
	return ex
}

// call runs fn and captures its answer as fixture name; fn's error is
// what the SDK made of it, checked by want (nil: no error).
func (r *rig) call(name string, fn func(ctx context.Context) error, want func(error) bool) {
	r.g.t.Helper()
	m := r.mark()
	err := fn(context.Background())
	if (want == nil && err != nil) || (want != nil && !want(err)) {
		r.g.t.Fatalf("fixture %s: the SDK returned %v", name, err)
	}
	r.capture(name, m)
}

func lastIndex[T any](s []T, f func(T) bool) int {
	for i := len(s) - 1; i >= 0; i-- {
		if f(s[i]) {
			return i
		}
	}
	return -1
}

func isAs[E error](err error) bool {
	var e E
	return errors.As(err, &e)
}

func generateFixtures(t *testing.T) map[string][]byte {
	t.Helper()
	g := &fixtureGen{t: t, out: map[string][]byte{}}
	g.main()
	g.v21()
	g.tooLarge()
	g.refusals()
	g.timestamped()
	g.rateLimited()
	return g.out
}

func (g *fixtureGen) main() {
	r := g.rig(nil)
	c, srv := r.c, r.srv
	r.srv.Credit(fixtureUser, time.Hour)

	r.call("balance", func(ctx context.Context) error { _, err := c.Billing.RefreshBalance(ctx, fixtureUser); return err }, nil)
	r.call("legacy-balance", func(ctx context.Context) error { _, err := c.Billing.LegacyBalance(ctx, fixtureUser); return err }, nil)
	r.call("check-sufficient", func(ctx context.Context) error {
		res, err := c.Billing.CheckSufficient(ctx, sheen.CheckSufficientRequest{UserID: fixtureUser, OperationType: sheen.OperationMainBuild, ProjectSize: sheen.ProjectSizeSmall})
		if err == nil && !res.Sufficient {
			err = errors.New("not sufficient")
		}
		return err
	}, nil)

	var build *sheen.Build
	r.call("create-preview", func(ctx context.Context) error {
		var err error
		build, err = c.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{
			UserID: fixtureUser, Prompt: "A landing page for a neighbourhood bakery, with opening hours and a menu", Framework: sheen.FrameworkReact,
		})
		return err
	}, nil)
	var res *sheen.BuildResult
	r.call("build-events", func(ctx context.Context) error {
		var err error
		res, err = c.Builds.Wait(ctx, build.ID, fixtureUser, nil)
		return err
	}, nil)
	r.call("build-events.none", func(ctx context.Context) error {
		var raw []byte
		return c.Do(ctx, "GET", fmt.Sprintf("/v1/builds/%s/events?userId=%s&lastEventId=%d", build.ID, fixtureUser, res.LastEventID), nil, &raw)
	}, nil)
	r.call("build-status", func(ctx context.Context) error {
		_, err := c.Builds.Status(ctx, build.ID, fixtureUser)
		return err
	}, nil)

	var link sheen.DownloadLink
	r.call("export-project", func(ctx context.Context) error {
		var err error
		link, err = c.Exports.ProjectLink(ctx, build.ProjectID, fixtureUser)
		return err
	}, nil)
	r.call("archive", func(ctx context.Context) error { _, err := c.Exports.Download(ctx, link, io.Discard, nil); return err }, nil)

	first := res.VersionID
	r.call("update-project", func(ctx context.Context) error {
		// The fake builds at once (PaceInstant): the update is deployed
		// when this returns.
		_, err := c.Builds.UpdateProject(ctx, sheen.UpdateProjectRequest{UserID: fixtureUser, ProjectID: build.ProjectID, Prompt: "Add a page for wedding cakes"})
		return err
	}, nil)
	r.call("rollback", func(ctx context.Context) error {
		_, err := c.Builds.Rollback(ctx, sheen.RollbackRequest{UserID: fixtureUser, ProjectID: build.ProjectID, TargetVersionID: first, IdempotencyKey: "rollback-1"})
		return err
	}, nil)
	r.call("versions", func(ctx context.Context) error {
		for _, err := range c.Builds.Versions(ctx, build.ProjectID, "") {
			if err != nil {
				return err
			}
		}
		return nil
	}, nil)
	r.call("download-version", func(ctx context.Context) error {
		_, err := c.Exports.VersionLink(ctx, first, fixtureUser)
		return err
	}, nil)
	r.call("usage", func(ctx context.Context) error {
		_, err := c.Billing.Usage(ctx, fixtureUser, sheen.UsagePeriodMonth)
		return err
	}, nil)
	r.call("billing-events", func(ctx context.Context) error { _, err := c.Billing.History(ctx, fixtureUser, 20); return err }, nil)
	r.call("check-batch", func(ctx context.Context) error {
		_, err := c.Billing.CheckBatch(ctx, sheen.CheckBatchRequest{UserID: fixtureUser, Operations: []sheen.BatchOperation{
			{Type: sheen.BatchOperationBuild, Estimate: 10 * time.Minute},
			{Type: sheen.BatchOperationExport, Estimate: 3 * time.Hour},
		}})
		return err
	}, nil)

	srv.DropArtifact(srv.LatestVersion(build.ProjectID))
	c.Exports.Invalidate(link)
	var missing *sheen.ArtifactMissingError
	r.call("export-project.artifact-missing", func(ctx context.Context) error {
		_, err := c.Exports.ProjectLink(ctx, build.ProjectID, fixtureUser)
		errors.As(err, &missing)
		return err
	}, isAs[*sheen.ArtifactMissingError])
	r.call("rebuild", func(ctx context.Context) error { _, err := c.Builds.Rebuild(ctx, missing.VersionID); return err }, nil)

	srv.SetBalance(fixturePoor, 30*time.Second)
	r.call("check-sufficient.insufficient", func(ctx context.Context) error {
		res, err := c.Billing.CheckSufficient(ctx, sheen.CheckSufficientRequest{UserID: fixturePoor, OperationType: sheen.OperationMainBuild, ProjectSize: sheen.ProjectSizeSmall})
		if err == nil && res.Sufficient {
			err = errors.New("sufficient")
		}
		return err
	}, nil)
	r.call("create-preview.insufficient", func(ctx context.Context) error {
		_, err := c.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: fixturePoor, Prompt: "A portfolio site"})
		return err
	}, isAs[*sheen.InsufficientBalanceError])

	srv.FailNextBuild("BUILD_FAILED", "Module not found: ./Menu")
	r.call("build-events.failed", func(ctx context.Context) error {
		b, err := c.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: fixtureUser, Prompt: "A menu page"})
		if err != nil {
			return err
		}
		_, err = c.Builds.Wait(ctx, b.ID, fixtureUser, nil)
		return err
	}, isAs[*sheen.BuildFailedError])

	r.call("error.validation", func(ctx context.Context) error {
		return c.Do(ctx, "POST", "/v1/billing/check-sufficient", map[string]any{"userId": fixtureUser, "operationType": "painting", "projectSize": "small", "isUpdate": false}, nil)
	}, func(err error) bool {
		var ae *sheen.APIError
		return errors.As(err, &ae) && ae.StatusCode == http.StatusBadRequest
	})
	r.call("error.not-found", func(ctx context.Context) error {
		return c.Do(ctx, "GET", "/v1/projects/p1/screenshots", nil, nil)
	}, func(err error) bool { return errors.Is(err, sheen.ErrNotFound) })
}

func (g *fixtureGen) v21() {
	r := g.rig([]Option{WithShapes(ShapesV21)})
	c := r.c
	r.srv.Credit(fixtureUser, time.Hour)
	r.call("balance.v21", func(ctx context.Context) error { _, err := c.Billing.RefreshBalance(ctx, fixtureUser); return err }, nil)
	r.srv.SetBalance(fixturePoor, 30*time.Second)
	r.call("check-sufficient.insufficient-v21", func(ctx context.Context) error {
		res, err := c.Billing.CheckSufficient(ctx, sheen.CheckSufficientRequest{UserID: fixturePoor, OperationType: sheen.OperationMainBuild, ProjectSize: sheen.ProjectSizeSmall})
		if err == nil && res.Sufficient {
			err = errors.New("sufficient")
		}
		return err
	}, nil)
}

func (g *fixtureGen) tooLarge() {
	r := g.rig([]Option{WithMaxExportSize(100)})
	c := r.c
	r.call("export-project.too-large", func(ctx context.Context) error {
		b, err := c.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: fixtureUser, Prompt: "A photo gallery"})
		if err != nil {
			return err
		}
		_, err = c.Exports.ProjectLink(ctx, b.ProjectID, fixtureUser)
		return err
	}, func(err error) bool { return errors.Is(err, sheen.ErrPayloadTooLarge) })
}

// refusals any route gives: no signature, a wrong one, a body too large.
func (g *fixtureGen) refusals() {
	r := g.rig(nil)
	raw := &http.Client{Transport: r.rec}
	r.call("error.missing-signature", func(ctx context.Context) error {
		return rawCall(ctx, raw, "GET", r.srv.URL+"/v1/billing/balance/"+fixtureUser, nil, nil)
	}, nil)
	wrong, err := r.srv.Client(sheen.WithHTTPClient(raw), sheen.WithSecret(strings.Repeat("w", 40)), sheen.WithRetry(sheen.RetryConfig{MaxAttempts: 1, MaxWait: time.Second}))
	if err != nil {
		g.t.Fatal(err)
	}
	r.call("error.invalid-signature", func(ctx context.Context) error {
		_, err := wrong.Billing.RefreshBalance(ctx, fixtureUser)
		return err
	}, func(err error) bool { return errors.Is(err, sheen.ErrUnauthorized) || isAs[*sheen.AuthError](err) })
	r.call("error.body-too-large", func(ctx context.Context) error {
		return rawCall(ctx, raw, "POST", r.srv.URL+"/v1/create-preview-for-new-project", bytes.Repeat([]byte(" "), 1<<20+1), nil)
	}, nil)
}

// timestamped: the deployed worker's scheme, from a client whose clock is
// far from the server's (408, learnt, retried), then a replay (409).
func (g *fixtureGen) timestamped() {
	r := g.rig([]Option{WithSigning(sheen.SigningDual)})
	r.call("error.timestamp-out-of-range", func(ctx context.Context) error {
		_, err := r.c.Billing.RefreshBalance(ctx, fixtureUser)
		return err
	}, nil)
	last := r.rec.log[len(r.rec.log)-1]
	raw := &http.Client{Transport: r.rec}
	r.call("error.replay", func(ctx context.Context) error {
		return rawCall(ctx, raw, last.method, r.srv.URL+last.target, last.reqBody, last.header)
	}, nil)
}

func (g *fixtureGen) rateLimited() {
	r := g.rig([]Option{WithRateLimit(1)})
	if _, err := r.c.Billing.RefreshBalance(context.Background(), fixtureUser); err != nil {
		g.t.Fatal(err)
	}
	// A second client, whose limiter has not heard the window is used up.
	other, err := r.srv.Client(sheen.WithHTTPClient(&http.Client{Transport: r.rec}), sheen.WithRetry(sheen.RetryConfig{MaxAttempts: 1, MaxWait: time.Second}))
	if err != nil {
		g.t.Fatal(err)
	}
	r.call("error.rate-limited", func(ctx context.Context) error {
		_, err := other.Billing.RefreshBalance(ctx, fixtureUser)
		return err
	}, isAs[*sheen.RateLimitError])
}

// rawCall sends a request that did not go through the SDK.
func rawCall(ctx context.Context, hc *http.Client, method, url string, body []byte, header http.Header) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if header != nil {
		req.Header = header.Clone()
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

var (
	storeURL = regexp.MustCompile(`/_store/[0-9a-f]+\?X-Expires=(\d+)&X-Signature=[0-9a-f]+`)
	fixedKey = strings.Repeat("0", 24)
	fixedSig = strings.Repeat("0", 64)
)

// normalise makes a JSON answer the same from run to run: the server's URL,
// times (rounded to the hour of a clock reading fixtureNow), random tokens
// and the download link's key and signature. It is indented for reading.
func normalise(body []byte, serverURL string) ([]byte, error) {
	body = bytes.ReplaceAll(body, []byte(serverURL), []byte(fixtureBase))
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	v = normaliseValue("", v)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func normaliseValue(key string, v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = normaliseValue(k, x)
		}
		return v
	case []any:
		for i, x := range v {
			v[i] = normaliseValue(key, x)
		}
		return v
	case json.Number:
		switch key {
		case "serverTime":
			n, _ := v.Int64()
			return json.Number(strconv.FormatInt(time.Unix(n, 0).Round(time.Hour).Unix(), 10))
		case "retryAfter":
			f, _ := v.Float64()
			return json.Number(strconv.FormatInt(int64(math.Round(f/10)*10), 10))
		}
		return v
	case string:
		switch key {
		case "resume_token":
			return "0123456789abcdef0123456789abcdef"
		case "correlationId":
			return "00000000-0000-4000-8000-000000000000"
		}
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return t.Round(time.Hour).UTC().Format(time.RFC3339)
		}
		return storeURL.ReplaceAllStringFunc(v, func(m string) string {
			exp, _ := strconv.ParseInt(storeURL.FindStringSubmatch(m)[1], 10, 64)
			return fmt.Sprintf("/_store/%s?X-Expires=%d&X-Signature=%s", fixedKey, time.Unix(exp, 0).Round(time.Hour).Unix(), fixedSig)
		})
	}
	return v
}
