package sheen_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"log"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

// The examples here run against sheentest's fake worker, like those of
// example_exports_test.go; builtProject is defined there.

// Every exported method of a service (AIService, BillingService, ...) has
// a runnable example, as the README promises: a method added without one
// fails here.
func TestEveryServiceMethodHasAnExample(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var methods []string
	examples := map[string]bool{}
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			if strings.HasSuffix(name, "_test.go") {
				if fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Example") {
					examples[fn.Name.Name] = true
				}
				continue
			}
			if fn.Recv == nil || len(fn.Recv.List) != 1 || !fn.Name.IsExported() {
				continue
			}
			star, ok := fn.Recv.List[0].Type.(*ast.StarExpr)
			if !ok {
				continue
			}
			if recv, ok := star.X.(*ast.Ident); ok && strings.HasSuffix(recv.Name, "Service") && ast.IsExported(recv.Name) {
				methods = append(methods, recv.Name+"_"+fn.Name.Name)
			}
		}
	}
	if len(methods) < 20 {
		t.Fatalf("found only %d service methods: %v", len(methods), methods)
	}
	for _, m := range methods {
		if !examples["Example"+m] {
			t.Errorf("%s has no Example%s", strings.Replace(m, "_", ".", 1), m)
		}
	}
}

// fakeWorker starts a fake worker with opts and a client for it.
func fakeWorker(opts ...sheentest.Option) (*sheentest.Server, *sheen.WorkerClient) {
	worker := sheentest.NewServer(opts...)
	client, err := worker.Client()
	if err != nil {
		log.Fatal(err)
	}
	return worker, client
}

// RateLimitRefusals reads the alert rule on the worker's generation
// budget: more than 3 refusals (429) of /generate within 5 minutes means
// the hourly budget is spent. It costs no request. It counts the worker's
// 429 answers, retries included: here each call is tried once, since a
// retry within seconds finds an hourly budget still spent.
func ExampleAIService_RateLimitRefusals() {
	worker, client := fakeWorker(sheentest.WithProjectFolder("u1", "p1"), sheentest.WithGenerateBudget(1))
	defer worker.Close()
	ctx := context.Background()

	for i := range 5 {
		_, err := client.AI.Generate(ctx, sheen.GenerateRequest{UserID: "u1", ProjectID: "p1", Prompt: fmt.Sprintf("Change %d", i+1)},
			sheen.WithCallAttempts(1))
		fmt.Println("prompt", i+1, "refused:", errors.Is(err, sheen.ErrRateLimited))
	}
	alert := client.AI.RateLimitRefusals()
	fmt.Println(alert.Count, "refusals in", alert.Window, "alerting:", alert.Alerting)
	// Output:
	// prompt 1 refused: false
	// prompt 2 refused: true
	// prompt 3 refused: true
	// prompt 4 refused: true
	// prompt 5 refused: true
	// 4 refusals in 5m0s alerting: true
}

// RefreshBalance skips the cache: use it when the balance has surely
// changed (a payment landed). Balance calls after it get the fresh value
// from the cache.
func ExampleBillingService_RefreshBalance() {
	worker, client := fakeWorker(sheentest.WithUser("user-42", time.Hour))
	defer worker.Close()
	ctx := context.Background()

	before, err := client.Billing.Balance(ctx, "user-42")
	if err != nil {
		log.Fatal(err)
	}
	worker.Credit("user-42", 30*time.Minute) // a payment lands
	cached, _ := client.Billing.Balance(ctx, "user-42")
	fresh, err := client.Billing.RefreshBalance(ctx, "user-42")
	if err != nil {
		log.Fatal(err)
	}
	after, _ := client.Billing.Balance(ctx, "user-42")
	fmt.Println("before:", before.Total, "cached:", cached.Total, "refreshed:", fresh.Total, "then:", after.Total)
	fmt.Println("requests:", worker.Calls(sheen.RouteBalance))
	// Output:
	// before: 1h0m0s cached: 1h0m0s refreshed: 1h30m0s then: 1h30m0s
	// requests: 2
}

// InvalidateBalance drops a user's cached balance without a request; the
// next Balance asks the worker.
func ExampleBillingService_InvalidateBalance() {
	worker, client := fakeWorker(sheentest.WithUser("user-42", time.Hour))
	defer worker.Close()
	ctx := context.Background()

	if _, err := client.Billing.Balance(ctx, "user-42"); err != nil {
		log.Fatal(err)
	}
	worker.Credit("user-42", 15*time.Minute)
	client.Billing.InvalidateBalance("user-42")
	b, err := client.Billing.Balance(ctx, "user-42")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("total:", b.Total, "requests:", worker.Calls(sheen.RouteBalance))
	// Output:
	// total: 1h15m0s requests: 2
}

// LegacyBalance reads the v2.1 shape: the bonus split into welcome bonus
// and daily gift, and the time spent. It is never cached.
func ExampleBillingService_LegacyBalance() {
	worker, client := fakeWorker(sheentest.WithWelcomeBonus(50*time.Minute, 15*time.Minute))
	defer worker.Close()
	ctx := context.Background()

	b, err := client.Billing.LegacyBalance(ctx, "new-user")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("total:", b.Total, "paid:", b.Paid, "bonus:", b.Bonus)
	fmt.Println("welcome:", b.WelcomeBonus, "daily gift:", b.DailyGift, "renewed at midnight UTC:", b.DailyResetAt.UTC().Format(time.TimeOnly))
	fmt.Println("spent today:", b.Usage.TodayUsed, "bucketed:", b.Bucketed)
	// Output:
	// total: 1h5m0s paid: 0s bonus: 1h5m0s
	// welcome: 50m0s daily gift: 15m0s renewed at midnight UTC: 00:00:00
	// spent today: 0s bucketed: false
}

// CheckBatch asks about several operations run one after another: each
// one's estimate counts against what is left for the next.
func ExampleBillingService_CheckBatch() {
	worker, client := fakeWorker(sheentest.WithUser("user-42", 10*time.Minute))
	defer worker.Close()

	results, err := client.Billing.CheckBatch(context.Background(), sheen.CheckBatchRequest{
		UserID: "user-42",
		Operations: []sheen.BatchOperation{
			{Type: sheen.BatchOperationBuild, Estimate: 6 * time.Minute},
			{Type: sheen.BatchOperationExport, Estimate: 3 * time.Minute},
			{Type: sheen.BatchOperationBuild, Estimate: 6 * time.Minute},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range results {
		fmt.Println(r.Operation, "ok:", r.OK, "missing:", r.Deficit)
		for _, s := range r.Suggestions {
			fmt.Println("  suggestion:", s.Type, s.Key+s.Plan)
		}
	}
	// Output:
	// build ok: true missing: 0s
	// export ok: true missing: 0s
	// build ok: false missing: 5m0s
	//   suggestion: package mini
	//   suggestion: upgrade starter
}

// Usage reports the AI time a user spent over a period, split by
// operation and by day.
func ExampleBillingService_Usage() {
	worker, client, _, _ := builtProject()
	defer worker.Close()

	u, err := client.Billing.Usage(context.Background(), "user-42", sheen.UsagePeriodMonth)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("this month:", u.Total)
	for _, op := range slices.Sorted(maps.Keys(u.ByOperation)) {
		fmt.Println(" ", op, u.ByOperation[op])
	}
	fmt.Println("days with usage:", len(u.DailyTrend))

	_, err = client.Billing.Usage(context.Background(), "user-42", "week")
	var invalid *sheen.ValidationError
	fmt.Println("a week refused before sending:", errors.As(err, &invalid))
	// Output:
	// this month: 2m0s
	//   build 2m0s
	// days with usage: 1
	// a week refused before sending: true
}

// History lists a user's latest billing events (purchases, consumption),
// newest first; limit caps how many.
func ExampleBillingService_History() {
	worker, client, _, _ := builtProject()
	defer worker.Close()
	worker.Credit("user-42", time.Hour)

	events, err := client.Billing.History(context.Background(), "user-42", 10)
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range events {
		fmt.Println(e.Type, e.Amount, e.Reason, "dated:", !e.Timestamp.IsZero())
	}
	// Output:
	// purchase 1h0m0s payment dated: true
	// consumption 2m0s build bld_0002 dated: true
}

// UpdateProject starts a build that changes an existing project; follow it
// with Wait like a first build. It makes a new version.
func ExampleBuildsService_UpdateProject() {
	worker, client, first, projectID := builtProject()
	defer worker.Close()
	ctx := context.Background()

	update, err := client.Builds.UpdateProject(ctx, sheen.UpdateProjectRequest{
		UserID: "user-42", ProjectID: projectID, Prompt: "Add a page with the week's specials",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("build", update.ID, "of", update.ProjectID)
	res, err := client.Builds.Wait(ctx, update.ID, "user-42", nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("version", first.VersionID, "->", res.VersionID, res.VersionName)
	// Output:
	// build bld_0004 of proj_0001
	// version ver_0003 -> ver_0005 v1.0.1
}

// Rebuild makes a version's archive again after the worker lost it (an
// export answered 404 with canRebuild); Wait follows it like any build.
// ExportsService.RebuildMissing does all of this in one call.
func ExampleBuildsService_Rebuild() {
	worker, client, built, _ := builtProject()
	defer worker.Close()
	ctx := context.Background()
	worker.DropArtifact(built.VersionID)

	build, err := client.Builds.Rebuild(ctx, built.VersionID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("rebuilding", build.VersionID, "as job", build.ID)
	if _, err := client.Builds.Wait(ctx, build.ID, "user-42", nil); err != nil {
		log.Fatal(err)
	}
	link, err := client.Exports.VersionLink(ctx, built.VersionID, "user-42")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("archive back:", link.Filename)
	// Output:
	// rebuilding ver_0003 as job bld_0004
	// archive back: ver_0003.zip
}

// Status is the worker's one-shot summary of a build. To follow a build,
// use Wait or Follow rather than polling it.
func ExampleBuildsService_Status() {
	worker, client := fakeWorker(sheentest.WithUser("user-42", time.Hour), sheentest.WithBuildPace(sheentest.PaceManual, 0))
	defer worker.Close()
	ctx := context.Background()

	build, err := client.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: "user-42", Prompt: "A bakery site"})
	if err != nil {
		log.Fatal(err)
	}
	for range 4 { // the build moves on: started, code, dependencies, building
		worker.Step(build.ID)
	}
	st, err := client.Builds.Status(ctx, build.ID, "user-42")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %s, %.0f%%, %d events, finished: %v\n", st.ID, st.Status, st.Progress*100, st.EventCount, st.Finished)

	worker.Finish(build.ID)
	st, err = client.Builds.Status(ctx, build.ID, "user-42")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %s, %.0f%%, %d events, finished: %v, preview: %v\n", st.ID, st.Status, st.Progress*100, st.EventCount, st.Finished, st.PreviewURL != "")
	// Output:
	// bld_0002: building, 65%, 4 events, finished: false
	// bld_0002: completed, 100%, 8 events, finished: true, preview: true
}

// countingSource wraps another EventSource and counts the events it
// fetches.
type countingSource struct {
	inner  sheen.EventSource
	events int
}

// FetchEvents implements sheen.EventSource.
func (c *countingSource) FetchEvents(ctx context.Context, buildID, userID string, after int64) ([]sheen.BuildEvent, bool, error) {
	evs, more, err := c.inner.FetchEvents(ctx, buildID, userID, after)
	c.events += len(evs)
	return evs, more, err
}

// WorkerEventSource is the client's own source of build events (the
// worker's HTTP endpoint, signed, paced and retried), to wrap or to
// combine with another source given to WithBuildEventSource.
func ExampleBuildsService_WorkerEventSource() {
	worker := sheentest.NewServer(sheentest.WithUser("user-42", time.Hour))
	defer worker.Close()
	src := &countingSource{}
	client, err := worker.Client(sheen.WithBuildEventSource(src))
	if err != nil {
		log.Fatal(err)
	}
	src.inner = client.Builds.WorkerEventSource() // before any build is followed
	ctx := context.Background()

	build, err := client.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: "user-42", Prompt: "A bakery site"})
	if err != nil {
		log.Fatal(err)
	}
	res, err := client.Builds.Wait(ctx, build.ID, "user-42", nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("built", res.VersionID, "from", src.events, "events")
	// Output:
	// built ver_0003 from 8 events
}

// VersionLink is a download link for one version's archive rather than
// the project's latest. Printed, its query (the credential) is redacted.
func ExampleExportsService_VersionLink() {
	worker, client, built, projectID := builtProject()
	defer worker.Close()
	ctx := context.Background()

	link, err := client.Exports.VersionLink(ctx, built.VersionID, "user-42")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(link.Filename, "of", link.Version.ID, "in", projectID)
	fmt.Println("redacted when printed:", !strings.Contains(link.String(), "X-Signature="))
	// Output:
	// ver_0003.zip of ver_0003 in proj_0001
	// redacted when printed: true
}

// Invalidate drops a cached link (say, the object store refused it), so
// the next ProjectLink or VersionLink asks the worker again.
func ExampleExportsService_Invalidate() {
	worker, client, _, projectID := builtProject()
	defer worker.Close()
	ctx := context.Background()

	link, err := client.Exports.ProjectLink(ctx, projectID, "user-42")
	if err != nil {
		log.Fatal(err)
	}
	_, _ = client.Exports.ProjectLink(ctx, projectID, "user-42") // from the cache
	fmt.Println("requests:", worker.Calls(sheen.RouteExportProject))

	client.Exports.Invalidate(link)
	if _, err := client.Exports.ProjectLink(ctx, projectID, "user-42"); err != nil {
		log.Fatal(err)
	}
	fmt.Println("after Invalidate:", worker.Calls(sheen.RouteExportProject))
	// Output:
	// requests: 1
	// after Invalidate: 2
}

// Download streams an archive into any io.Writer with flat memory,
// resuming after a break; DownloadToFile does the same into a file.
func ExampleExportsService_Download() {
	worker, client, built, _ := builtProject()
	defer worker.Close()
	ctx := context.Background()
	link, err := client.Exports.VersionLink(ctx, built.VersionID, "user-42")
	if err != nil {
		log.Fatal(err)
	}

	var archive bytes.Buffer
	res, err := client.Exports.Download(ctx, link, &archive, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Written, "bytes in", res.Attempts, "request; the bytes are", res.Format)
	fmt.Println("as the worker stored them:", bytes.Equal(archive.Bytes(), worker.Artifact(built.VersionID)))
	// Output:
	// 437 bytes in 1 request; the bytes are tar.gz
	// as the worker stored them: true
}
