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
//
// On a terminal the progress bars redraw in place; piped to a file or a CI
// log they are plain lines. The archive goes to a temporary folder that is
// removed when the program ends (pass -out DIR to keep it), and a summary
// closes the run.
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
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

func main() {
	build := flag.Bool("build", false, "with a real worker: also create a build (costs AI time)")
	userID := flag.String("user", os.Getenv("SHEEN_USER_ID"), "with a real worker: the user id to act for")
	out := flag.String("out", "", "keep the downloaded archive in this folder (default: a temporary folder, removed at the end)")
	flag.Parse()

	// Ctrl-C ends the run through its context, so the temporary folder is
	// still removed.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	err := run(ctx, os.Stdout, options{build: *build, userID: *userID, outDir: *out, tty: isTerminal(os.Stdout)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		cancel()
		os.Exit(1)
	}
}

// isTerminal reports whether f is a terminal (a character device), where a
// progress bar can redraw its line; a file, a pipe or a CI log gets plain
// lines instead. TERM=dumb gets plain lines too.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}

type options struct {
	build  bool
	userID string
	// signing and step configure the fake worker: its scheme (the deployed
	// worker's dual scheme by default) and the time between build steps.
	signing sheen.Signing
	step    time.Duration
	// perMinute, when set, makes the fake worker rate limit (v2.1's is 60)
	// and the client pace itself to match.
	perMinute int
	// outDir keeps the archive there; empty means a temporary folder,
	// removed before run returns.
	outDir string
	// tempRoot is where the temporary folder is made (default os.TempDir).
	tempRoot string
	// tty redraws progress bars in place; otherwise they are plain lines.
	tty bool
	// fake is the fake worker in use, nil against a real one.
	fake *sheentest.Server
}

// summary is what the closing lines report.
type summary struct {
	started             time.Time
	balanceBefore       time.Duration
	build, preview      string
	events              int
	buildTook           time.Duration
	archive             string
	archiveBytes        int64
	format, sha         string
	outputBytes         int64
	kept                bool
	refusedThenUnlocked string
}

func run(ctx context.Context, out io.Writer, opt options) (err error) {
	sum := &summary{started: time.Now()}
	defer func() {
		if err == nil {
			sum.print(out)
		}
	}()
	var client *sheen.WorkerClient
	var poll func(sheen.Phase) time.Duration
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
		poll = func(sheen.Phase) time.Duration { return 150 * time.Millisecond }
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
	sum.balanceBefore = bal.Total
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
	fmt.Fprintf(out, "3. Build %s started for project %s\n", b.ID, b.ProjectID)
	bar := newBar(out, "   build   ", opt.tty)
	buildStart := time.Now()
	res, err := client.Builds.Wait(ctx, b.ID, opt.userID, &sheen.FollowOptions{PollInterval: poll, OnEvent: func(e sheen.BuildEvent) {
		if e.HasProgress && e.Phase != "metadata" {
			bar.set(e.Progress, e.Title, e.Title)
		}
	}})
	bar.done()
	var failed *sheen.BuildFailedError
	if errors.As(err, &failed) {
		return fmt.Errorf("the build failed (%s): %s", failed.Code, failed.Message)
	}
	if err != nil {
		return fmt.Errorf("follow build: %w", err)
	}
	fmt.Fprintf(out, "   done: preview at %s, version %s\n", res.PreviewURL, res.VersionID)
	sum.build, sum.preview, sum.events, sum.buildTook = b.ID, res.PreviewURL, res.Events, time.Since(buildStart)

	// 4. Export the project and download the archive.
	link, err := client.Exports.ProjectLink(ctx, b.ProjectID, opt.userID)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	// The URL's query is a bearer credential: the link prints without it.
	fmt.Fprintf(out, "4. Download link for %s, valid until %s: %s\n", link.Filename, link.ExpiresAt.UTC().Format(time.RFC3339), link)
	dir := opt.outDir
	if dir == "" {
		if dir, err = os.MkdirTemp(opt.tempRoot, "sheen-quickstart-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	sum.kept = opt.outDir != ""
	path := filepath.Join(dir, link.Filename)
	dbar := newBar(out, "   download", opt.tty)
	dl, err := client.Exports.DownloadToFile(ctx, link, path, &sheen.DownloadOptions{Progress: func(written, total int64) {
		if total > 0 {
			pct := int(100 * written / total)
			dbar.set(float64(written)/float64(total), fmt.Sprintf("%d/%d bytes", written, total), fmt.Sprint(pct/25))
		}
	}})
	dbar.done()
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	digest, err := fileSHA256(path)
	if err != nil {
		return err
	}
	sum.archive, sum.archiveBytes, sum.format, sum.sha, sum.outputBytes = path, dl.Written, string(dl.Format), digest, link.Size
	fmt.Fprintf(out, "   saved %s\n   archive: %d bytes, sha256 %s, really a %s archive (the name says %s)\n",
		path, dl.Written, digest, dl.Format, filepath.Ext(link.Filename))
	if link.Size > 0 {
		fmt.Fprintf(out, "   the worker's size field, %d bytes, is the build output's size, not the archive's\n", link.Size)
	}

	// The rest runs on the fake worker only: a real generation costs money
	// and changes the project, and the 402 demo needs a poor user.
	if opt.fake == nil {
		return nil
	}

	// 5. Run a prompt on the project with the worker's model.
	gen, err := client.AI.Generate(ctx, sheen.GenerateRequest{UserID: opt.userID, ProjectID: b.ProjectID, Prompt: "Add a dark mode toggle"})
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	fmt.Fprintf(out, "\n5. AI generation on %s, answered by %s: %s\n", b.ProjectID, answeredBy(gen), firstLine(gen.Output, 72))

	// 6. What an insufficient balance looks like, and how to react.
	return insufficientDemo(ctx, out, client, opt.fake, sum)
}

// insufficientDemo meets a 402 and reacts as a service would: show what is
// missing and what to buy, wait for the payment to land, try again.
func insufficientDemo(ctx context.Context, out io.Writer, client *sheen.WorkerClient, fake *sheentest.Server, sum *summary) error {
	const poor = "0b6f3a10-0000-4000-8000-000000000001"
	fake.SetBalance(poor, 30*time.Second)
	fmt.Fprintf(out, "\n6. User %s has 30s of AI time and asks for a build\n", poor)
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
	landed := make(chan struct{})
	defer func() { <-landed }()
	go func() {
		defer close(landed)
		select {
		case <-time.After(500 * time.Millisecond):
			fake.Credit(poor, time.Hour)
		case <-ctx.Done():
		}
	}()
	fmt.Fprintln(out, "   waiting for the payment to land (a poll every 2s)...")
	bal, err := client.Billing.WaitForBalance(ctx, poor, short.Required)
	if err != nil {
		return fmt.Errorf("wait for payment: %w", err)
	}
	b, err := client.Builds.CreatePreview(ctx, req)
	if err != nil {
		return fmt.Errorf("build after payment: %w", err)
	}
	fmt.Fprintf(out, "   balance now %s: build %s started\n", minutes(bal.Total), b.ID)
	sum.refusedThenUnlocked = fmt.Sprintf("refused with %s for want of %s, built after a top-up (%s)", short.Code, minutes(short.Required-short.Available), b.ID)
	return nil
}

// print writes the closing summary.
func (s *summary) print(out io.Writer) {
	fmt.Fprintln(out, "\nSummary")
	fmt.Fprintf(out, "  balance   %s of AI time at the start\n", minutes(s.balanceBefore))
	if s.build == "" {
		fmt.Fprintf(out, "  took      %s (read-only: no build, no download)\n", time.Since(s.started).Round(time.Millisecond))
		return
	}
	fmt.Fprintf(out, "  build     %s: %d events in %s, preview %s\n", s.build, s.events, s.buildTook.Round(time.Millisecond), s.preview)
	where := "in a temporary folder, now removed (-out DIR keeps it)"
	if s.kept {
		where = "kept at " + s.archive
	}
	fmt.Fprintf(out, "  archive   %d bytes of %s, sha256 %s, %s\n", s.archiveBytes, s.format, s.sha[:16]+"...", where)
	if s.refusedThenUnlocked != "" {
		fmt.Fprintf(out, "  402       %s\n", s.refusedThenUnlocked)
	}
	fmt.Fprintf(out, "  took      %s\n", time.Since(s.started).Round(time.Millisecond))
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

// bar draws progress: on a terminal one line redrawn in place, elsewhere a
// plain line each time its key changes (a new phase, the next quarter).
type bar struct {
	out     io.Writer
	label   string
	tty     bool
	last    int
	lastKey string
	pending string // plain mode: the latest line not printed yet
}

func newBar(out io.Writer, label string, tty bool) *bar {
	return &bar{out: out, label: label, tty: tty, last: -1}
}

func (b *bar) set(fraction float64, note, key string) {
	pct := int(fraction*100 + 0.5)
	if !b.tty {
		line := fmt.Sprintf("%s %3d%% %s", b.label, pct, note)
		if key == b.lastKey && b.last >= 0 {
			b.pending = line
			return
		}
		b.last, b.lastKey, b.pending = pct, key, ""
		fmt.Fprintln(b.out, line)
		return
	}
	if pct == b.last {
		return
	}
	b.last = pct
	filled := pct / 5
	fmt.Fprintf(b.out, "\r%s [%s%s] %3d%% %-40.40s", b.label, strings.Repeat("#", filled), strings.Repeat(".", 20-filled), pct, note)
}

func (b *bar) done() {
	switch {
	case !b.tty && b.pending != "":
		fmt.Fprintln(b.out, b.pending) // the final state, when its key was seen already
	case b.tty && b.last >= 0:
		fmt.Fprintln(b.out)
	}
}

// firstLine is s's first line, cut to at most n runes.
func firstLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// answeredBy names who answered a prompt: the worker's model or the fallback.
func answeredBy(gen *sheen.GenerateResult) string {
	if gen.Fallback {
		return "the fallback model"
	}
	return "the worker's model"
}
