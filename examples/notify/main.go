// Command notify sends an email (printed here) for every build that
// finishes: the preview link when the deploy succeeded, the worker's message
// when the build failed. It runs a pgevents.Feed, which hands each finished
// build to one replica of this service, once, even when several replicas
// run or one restarts; the mailer uses the completion's key as its
// idempotency key, so an email is never sent twice.
//
// With no environment it starts a throwaway PostgreSQL server, writes a few
// builds into project_build_events as the worker would, prints their emails
// and exits:
//
//	go run ./examples/notify
//
// With DATABASE_URL set it runs against that database (the worker's), creates
// the feed's tables there if they are missing, and prints an email for every
// build that finishes from now on until interrupted. -demo also creates the
// events table if missing, writes the sample builds under ids of the run's
// own (so it can run again on the same database), and exits once their
// emails are sent (not for a real worker's database).
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sheenapps/sheen-go/internal/pgtest"
	"github.com/sheenapps/sheen-go/pgevents"
)

func main() {
	demo := flag.Bool("demo", false, "with DATABASE_URL: also write sample builds, and exit once they are handled")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, os.Getenv("DATABASE_URL"), *demo); err != nil {
		fmt.Fprintln(os.Stderr, "notify:", err)
		os.Exit(1)
	}
}

// run sends the emails. Without a database URL it starts a throwaway
// server and runs the demo.
func run(ctx context.Context, out io.Writer, dbURL string, demo bool) error {
	if dbURL == "" {
		cluster, err := pgtest.Start(ctx)
		if err != nil {
			return fmt.Errorf("no DATABASE_URL, and no throwaway PostgreSQL: %w", err)
		}
		defer cluster.Stop()
		fmt.Fprintln(out, "No DATABASE_URL: started a throwaway PostgreSQL server")
		dbURL, demo = cluster.ConnString("postgres"), true
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if demo {
		if _, err := pool.Exec(ctx, pgtest.BuildEventsDDL); err != nil {
			return err
		}
		if err := pgevents.InstallNotifyTrigger(ctx, pool); err != nil {
			return err
		}
	}
	if err := pgevents.InstallFeed(ctx, pool); err != nil {
		return err
	}

	opts := []pgevents.FeedOption{pgevents.FeedConcurrency(4)}
	if !demo {
		opts = append(opts, pgevents.FeedStartAtEnd()) // no emails about last year's builds
	}
	feed, err := pgevents.NewFeed(pool, "build-emails", opts...)
	if err != nil {
		return err
	}
	mailer := &printMailer{out: out, sent: map[string]bool{}}
	// The demo writes builds with ids of this run's own (a second run on
	// the same database writes new builds: the feed handles a build once,
	// and would never hand it the first run's again), and waits for those
	// only: other builds the feed hands over get their email, but are not
	// waited for.
	var builds []demoBuild
	var waiting *pendingBuilds
	if demo {
		builds = demoBuildsOfRun(rand.Text()[:8])
		waiting = newPendingBuilds(builds)
	}
	if err := feed.OnFinished(func(ctx context.Context, c pgevents.Completion) error {
		if err := mailer.Send(ctx, emailFor(c)); err != nil {
			return err // the feed runs it again later, then parks it
		}
		if waiting != nil {
			waiting.handled(c.BuildID)
		}
		return nil
	}); err != nil {
		return err
	}

	runCtx, stopFeed := context.WithCancel(ctx)
	defer stopFeed()
	ran := make(chan error, 1)
	go func() { ran <- feed.Run(runCtx) }()
	if !demo {
		fmt.Fprintln(out, "Waiting for builds to finish (Ctrl-C stops)")
		return <-ran
	}
	if err := writeDemoBuilds(ctx, pool, builds); err != nil {
		stopFeed()
		<-ran
		return err
	}
	select {
	case <-waiting.done:
	case <-ctx.Done():
	case err := <-ran: // the feed stopped on its own: nothing more will come
		if err == nil {
			err = errors.New("the feed stopped before the demo builds were handled")
		}
		return err
	}
	stopFeed()
	if err := <-ran; err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Fprintf(out, "%d emails sent, one per finished build\n", mailer.count())
	return nil
}

// pendingBuilds is the demo builds not handled yet; done is closed once
// every one has been.
type pendingBuilds struct {
	mu   sync.Mutex
	ids  map[string]bool
	done chan struct{}
}

func newPendingBuilds(builds []demoBuild) *pendingBuilds {
	p := &pendingBuilds{ids: map[string]bool{}, done: make(chan struct{})}
	for _, b := range builds {
		p.ids[b.id] = true
	}
	return p
}

// handled records that the build's email went out (a second time for the
// same build, after a retry, changes nothing).
func (p *pendingBuilds) handled(buildID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.ids[buildID] {
		return
	}
	delete(p.ids, buildID)
	if len(p.ids) == 0 {
		close(p.done)
	}
}

// email is a message to send.
type email struct {
	To, Subject, Body string
	// IdempotencyKey makes the provider send the message once, however
	// often it is asked to.
	IdempotencyKey string
}

// emailFor writes the email for a finished build.
func emailFor(c pgevents.Completion) email {
	e := email{To: addressOf(c.UserID), IdempotencyKey: c.Key}
	if c.Failure != nil {
		e.Subject = "Your build did not finish"
		e.Body = fmt.Sprintf("Build %s failed: %s", c.BuildID, c.Failure.Message)
		if c.Failure.Code != "" {
			e.Body += " (" + c.Failure.Code + ")"
		}
		return e
	}
	name := c.Result.VersionName
	if name == "" {
		name = "Your site"
	}
	e.Subject = name + " is live"
	e.Body = "Preview it at " + c.Result.PreviewURL
	return e
}

// printMailer stands in for an email provider: it prints each message,
// and, as providers do with an idempotency key, sends a key only once.
type printMailer struct {
	mu   sync.Mutex
	out  io.Writer
	sent map[string]bool
}

func (m *printMailer) Send(_ context.Context, e email) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sent[e.IdempotencyKey] {
		return nil // sent already: a retry after a crash, not a new email
	}
	if _, err := fmt.Fprintf(m.out, "--- email\nTo: %s\nSubject: %s\nIdempotency-Key: %s\n\n%s\n", e.To, e.Subject, e.IdempotencyKey, e.Body); err != nil {
		return err // not sent: a retry sends it
	}
	m.sent[e.IdempotencyKey] = true
	return nil
}

func (m *printMailer) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sent)
}

// The demo's users and their addresses; a real service looks them up.
var (
	alice = uuid.MustParse("7d1f7e52-5b0e-4c7a-9a59-2f2d0f0a6b11").String()
	bob   = uuid.MustParse("0b6c3a8e-2f41-4c55-8d0e-6a1f9c2b7d34").String()
	users = map[string]string{alice: "alice@example.com", bob: "bob@example.com"}
)

func addressOf(userID string) string {
	if a, ok := users[userID]; ok {
		return a
	}
	return "user-" + userID + "@example.invalid"
}

// demoBuild is a sample build, event by event, as the worker writes it.
type demoBuild struct {
	id, user string
	events   []demoEvent
}

type demoEvent struct {
	typ, phase, title string
	progress          float64
	finished          bool
	preview           string
	errCode, errMsg   string
	versionName       string
}

// demoBuildsOfRun is the sample builds with ids made for one run: the
// sample's id, a dash and tag.
func demoBuildsOfRun(tag string) []demoBuild {
	builds := make([]demoBuild, len(demoBuilds))
	for i, b := range demoBuilds {
		b.id += "-" + tag
		builds[i] = b
	}
	return builds
}

// demoBuilds is the sample; each run writes it under ids of its own
// (demoBuildsOfRun).
var demoBuilds = []demoBuild{
	{id: "01JDEMOBAKERY", user: alice, events: []demoEvent{
		{typ: "started", phase: "setup", title: "Planning your app"},
		{typ: "progress", phase: "build", title: "Building", progress: 0.6},
		{typ: "completed", phase: "deploy", title: "Deployed", progress: 1, finished: true, preview: "https://01jdemobakery.preview.example"},
		{typ: "completed", phase: "metadata", title: "Named your version", progress: 1, versionName: "Bakery landing page"},
	}},
	{id: "01JDEMOBROKEN", user: bob, events: []demoEvent{
		{typ: "started", phase: "setup", title: "Planning your app"},
		{typ: "failed", phase: "build", title: "Build failed", errCode: "BUILD_FAILED", errMsg: "Module not found: react-router"},
	}},
	{id: "01JDEMOPORTFOLIO", user: alice, events: []demoEvent{
		{typ: "started", phase: "setup", title: "Planning your app"},
		{typ: "completed", phase: "deploy", title: "Deployed", progress: 1, finished: true, preview: "https://01jdemoportfolio.preview.example"},
		{typ: "failed", phase: "metadata", title: "Could not name the version", errCode: "METADATA_FAILED", errMsg: "no name"},
	}},
}

// writeDemoBuilds writes the builds' events, a little apart, as the
// worker would.
func writeDemoBuilds(ctx context.Context, pool *pgxpool.Pool, builds []demoBuild) error {
	for step := 0; ; step++ {
		wrote := false
		for _, b := range builds {
			if step >= len(b.events) {
				continue
			}
			e := b.events[step]
			if _, err := pool.Exec(ctx, `INSERT INTO project_build_events
				(build_id, event_type, user_id, event_phase, event_title, overall_progress, finished, preview_url, error_code, user_error_message, version_name)
				VALUES ($1, $2, $3, $4, $5, $6, $7, NULLIF($8, ''), NULLIF($9, ''), NULLIF($10, ''), NULLIF($11, ''))`,
				b.id, e.typ, b.user, e.phase, e.title, e.progress, e.finished, e.preview, e.errCode, e.errMsg, e.versionName); err != nil {
				return fmt.Errorf("writing the demo builds: %w", err)
			}
			wrote = true
		}
		if !wrote {
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
