// Command quickstart walks the whole job a Go service does with the worker:
// check a balance, check that a build is affordable, start a build, follow
// it to the end with a progress bar, export the project and download the
// archive, then meet an insufficient balance and react to it.
//
// With no environment it starts the in-process fake worker (sheentest), so
//
//	go run ./examples/quickstart
//
// works on a fresh machine. With WORKER_BASE_URL and WORKER_SHARED_SECRET set
// it talks to that worker instead, read-only unless -build is given.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

func main() {
	build := flag.Bool("build", false, "with a real worker: also create a build (costs AI time)")
	userID := flag.String("user", os.Getenv("SHEEN_USER_ID"), "with a real worker: the user id to act for")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout, options{build: *build, userID: *userID}); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

type options struct {
	build  bool
	userID string
	// signing and step configure the fake worker: its scheme (the deployed
	// worker's dual scheme by default) and the time between build steps.
	signing sheen.Signing
	step    time.Duration
	// perMinute, when set, raises both sides' rate limit above v2.1's 60.
	perMinute int
	// fake is the fake worker in use, nil against a real one.
	fake *sheentest.Server
}

func run(ctx context.Context, out io.Writer, opt options) error {
	var client *sheen.WorkerClient
	var follow []sheen.FollowOption
	if os.Getenv(sheen.EnvBaseURL) == "" {
		// No worker configured: start the fake one, signing like the
		// deployed worker, moving builds a step every 300 ms.
		if opt.step == 0 {
			opt.signing, opt.step = sheen.SigningDual, 300*time.Millisecond
		}
		fakeOpts := []sheentest.Option{sheentest.WithSigning(opt.signing), sheentest.WithBuildPace(sheentest.PaceTimed, opt.step)}
		var clientOpts []sheen.Option
		if opt.perMinute > 0 {
			fakeOpts = append(fakeOpts, sheentest.WithRateLimit(opt.perMinute))
			clientOpts = append(clientOpts, sheen.WithRateLimit(opt.perMinute))
		}
		fake := sheentest.NewServer(fakeOpts...)
		defer fake.Close()
		fmt.Fprintf(out, "No WORKER_BASE_URL: started the fake worker at %s (%s signing)\n", fake.URL, opt.signing)
		c, err := fake.Client(clientOpts...)
		if err != nil {
			return err
		}
		client, opt.fake, opt.build = c, fake, true
		if opt.userID == "" {
			opt.userID = "7d1f7e52-5b0e-4c7a-9a59-2f2d0f0a6b11"
		}
		// The fake is quick: poll it faster than the worker's own UI does.
		follow = append(follow, sheen.WithPollInterval(func(string) time.Duration { return 150 * time.Millisecond }))
	} else {
		c, err := sheen.NewWorkerClientFromEnv()
		if err != nil {
			return err
		}
		client = c
		fmt.Fprintf(out, "Talking to %s (%s signing)\n", client.BaseURL(), client.Signing())
		if opt.userID == "" {
			return errors.New("set -user (or SHEEN_USER_ID) to the user to act for")
		}
	}

	// 1. The balance.
	bal, err := client.Billing.Balance(ctx, opt.userID)
	if err != nil {
		return fmt.Errorf("balance: %w", err)
	}
	fmt.Fprintf(out, "\n1. Balance of %s: %s of AI time (%s paid, %s bonus)\n", opt.userID, minutes(bal.Total), minutes(bal.Paid), minutes(bal.Bonus))

	// 2. Can this user afford a small build?
	check, err := client.Billing.CheckSufficient(ctx, sheen.CheckSufficientRequest{
		UserID: opt.userID, OperationType: sheen.OperationMainBuild, ProjectSize: sheen.EstimateProjectSize(3),
	})
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	fmt.Fprintf(out, "2. A small build needs about %s: affordable = %v\n", minutes(check.Required), check.Sufficient)
	if !opt.build {
		fmt.Fprintln(out, "\nRead-only run against a real worker: pass -build to create a build.")
		return nil
	}
	if !check.Sufficient {
		return errors.New("not enough AI time for a build")
	}

	// 3. Start a build and follow it to the end.
	b, err := client.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{
		UserID: opt.userID, Prompt: "A landing page for a neighbourhood bakery, with opening hours and a menu",
		Framework: "react",
	})
	if err != nil {
		return fmt.Errorf("create build: %w", err)
	}
	fmt.Fprintf(out, "3. Build %s started for project %s\n", b.BuildID, b.ProjectID)
	bar := newBar(out, "   build   ")
	res, err := client.Builds.Wait(ctx, b.BuildID, opt.userID, append(follow, sheen.WithEventCallback(func(e sheen.BuildEvent) {
		if e.HasProgress && e.Phase != "metadata" {
			bar.set(e.Progress, e.Title)
		}
	}))...)
	bar.done()
	var failed *sheen.BuildFailedError
	if errors.As(err, &failed) {
		return fmt.Errorf("the build failed (%s): %s", failed.Code, failed.Message)
	}
	if err != nil {
		return fmt.Errorf("follow build: %w", err)
	}
	fmt.Fprintf(out, "   done: preview at %s, version %s\n", res.PreviewURL, res.VersionID)

	// 4. Export the project and download the archive.
	link, err := client.Exports.ExportProject(ctx, b.ProjectID, opt.userID)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	fmt.Fprintf(out, "4. Download link (query redacted when printed): %s\n", link)
	dir, err := os.MkdirTemp("", "sheen-quickstart-")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, link.Filename)
	dbar := newBar(out, "   download")
	dl, err := client.Exports.DownloadToFile(ctx, link, path, sheen.WithProgress(func(written, total int64) {
		if total > 0 {
			dbar.set(float64(written)/float64(total), fmt.Sprintf("%d/%d bytes", written, total))
		}
	}))
	dbar.done()
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	sum, err := fileSHA256(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "   saved %s\n   %d bytes, sha256 %s, really a %s archive (the name says %s)\n",
		path, dl.Written, sum, dl.Format, filepath.Ext(link.Filename))

	// 5. What an insufficient balance looks like, and how to react.
	if opt.fake == nil {
		return nil
	}
	return insufficientDemo(ctx, out, client, opt.fake)
}

// insufficientDemo meets a 402 and reacts as a service would: show what is
// missing and what to buy, wait for the payment to land, try again.
func insufficientDemo(ctx context.Context, out io.Writer, client *sheen.WorkerClient, fake *sheentest.Server) error {
	const poor = "0b6f3a10-0000-4000-8000-000000000001"
	fake.SetBalance(poor, 30*time.Second)
	fmt.Fprintf(out, "\n5. User %s has 30s of AI time and asks for a build\n", poor)
	req := sheen.CreatePreviewRequest{UserID: poor, Prompt: "A portfolio site"}
	_, err := client.Builds.CreatePreview(ctx, req)
	var short *sheen.InsufficientBalanceError
	if !errors.As(err, &short) {
		return fmt.Errorf("expected an insufficient balance, got %v", err)
	}
	fmt.Fprintf(out, "   refused: %s (code %s)\n   has %s, needs %s\n", short.Message, short.Code, minutes(short.Available), minutes(short.Required))
	for _, s := range short.Suggestions {
		fmt.Fprintf(out, "   suggestion: %s %s%s\n", s.Type, s.Key+s.Plan, map[bool]string{true: " (" + minutes(s.Duration) + ")"}[s.Duration > 0])
	}

	// The user buys the suggested package; the payment lands a moment later.
	go func() {
		time.Sleep(500 * time.Millisecond)
		fake.Credit(poor, time.Hour)
	}()
	fmt.Fprintln(out, "   waiting for the payment to land...")
	bal, err := client.Billing.WaitForBalance(ctx, poor, short.Required, sheen.WithBalancePollInterval(200*time.Millisecond))
	if err != nil {
		return fmt.Errorf("wait for payment: %w", err)
	}
	b, err := client.Builds.CreatePreview(ctx, req)
	if err != nil {
		return fmt.Errorf("build after payment: %w", err)
	}
	fmt.Fprintf(out, "   balance now %s: build %s started\n", minutes(bal.Total), b.BuildID)
	return nil
}

func minutes(d time.Duration) string {
	return d.Round(time.Second).String()
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// bar draws a one-line progress bar.
type bar struct {
	out   io.Writer
	label string
	last  int
}

func newBar(out io.Writer, label string) *bar { return &bar{out: out, label: label, last: -1} }

func (b *bar) set(fraction float64, note string) {
	pct := int(fraction*100 + 0.5)
	if pct == b.last {
		return
	}
	b.last = pct
	filled := pct / 5
	fmt.Fprintf(b.out, "\r%s [%s%s] %3d%% %-40.40s", b.label, strings.Repeat("#", filled), strings.Repeat(".", 20-filled), pct, note)
}

func (b *bar) done() {
	if b.last >= 0 {
		fmt.Fprintln(b.out)
	}
}
