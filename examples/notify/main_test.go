package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sheenapps/sheen-go/internal/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Main(m)) }

// `go run ./examples/notify` with no environment: a throwaway server, the
// demo builds, one email per finished build, then exit.
func TestNotifyWithoutEnvironment(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, &out, "", false)
	if errors.Is(err, pgtest.ErrNoPostgres) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("notify failed: %v\n%s", err, out.String())
	}
	checkDemoOutput(t, out.String())
}

// demoEmails matches the demo's three emails, in any order, capturing each
// build's run tag.
var demoEmails = []*regexp.Regexp{
	regexp.MustCompile(`To: alice@example.com\nSubject: Bakery landing page is live\nIdempotency-Key: sheen-build-finished:build-emails:01JDEMOBAKERY-([A-Z2-7]{8})\n\nPreview it at https://01jdemobakery.preview.example\n`),
	regexp.MustCompile(`To: bob@example.com\nSubject: Your build did not finish\nIdempotency-Key: sheen-build-finished:build-emails:01JDEMOBROKEN-([A-Z2-7]{8})\n\nBuild 01JDEMOBROKEN-([A-Z2-7]{8}) failed: Module not found: react-router \(BUILD_FAILED\)\n`),
	regexp.MustCompile(`To: alice@example.com\nSubject: Your site is live\nIdempotency-Key: sheen-build-finished:build-emails:01JDEMOPORTFOLIO-([A-Z2-7]{8})\n\nPreview it at https://01jdemoportfolio.preview.example\n`),
}

// checkDemoOutput checks that text is one demo run's output: each email
// once, for builds of one run, and the count. It returns the run's tag.
func checkDemoOutput(t *testing.T, text string) string {
	t.Helper()
	tags := map[string]bool{}
	for _, re := range demoEmails {
		m := re.FindAllStringSubmatch(text, -1)
		if len(m) != 1 {
			t.Errorf("output has %d emails matching %s, want 1:\n%s", len(m), re, text)
			continue
		}
		for _, tag := range m[0][1:] {
			tags[tag] = true
		}
	}
	if n := strings.Count(text, "--- email"); n != 3 {
		t.Errorf("%d emails printed, want 3:\n%s", n, text)
	}
	if !strings.Contains(text, "3 emails sent, one per finished build") {
		t.Errorf("no count of 3 emails:\n%s", text)
	}
	if len(tags) != 1 {
		t.Errorf("the emails are for the builds of %d runs, want 1: %v", len(tags), tags)
	}
	for tag := range tags {
		return tag
	}
	return ""
}

// `DATABASE_URL=... go run ./examples/notify -demo`, twice on one database:
// the second run writes builds of its own, sends their three emails and
// exits, as the first did (it used to wait for ever for builds the feed had
// handled already). goleak (TestMain) checks that neither run leaves a
// goroutine behind.
func TestNotifyDemoTwiceOnOneDatabase(t *testing.T) {
	dbURL := pgtest.Shared(t).NewDatabase(t)
	var tags []string
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		var out bytes.Buffer
		err := run(ctx, &out, dbURL, true)
		cancel()
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i+1, err, out.String())
		}
		tags = append(tags, checkDemoOutput(t, out.String()))
	}
	if tags[0] == tags[1] {
		t.Errorf("both runs wrote builds tagged %s", tags[0])
	}
}

// A run whose context ends while it waits for the emails returns, without
// leaving a goroutine behind (goleak, TestMain). The mail server is down:
// no email goes out, so only the context can end the wait; it ends at the
// feed's first retry of an email (a second later by the feed's backoff),
// when the demo builds are long written and the run is waiting.
func TestNotifyDemoHonoursItsContext(t *testing.T) {
	dbURL := pgtest.Shared(t).NewDatabase(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &mailServerDown{cancel: cancel, tried: map[string]bool{}}
	err := run(ctx, out, dbURL, true)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if !out.retried {
		t.Error("run returned before the feed retried an email")
	}
}

// mailServerDown refuses every email, and cancels the run at the first
// retry of one.
type mailServerDown struct {
	mu      sync.Mutex
	tried   map[string]bool
	retried bool
	cancel  context.CancelFunc
}

func (w *mailServerDown) Write(p []byte) (int, error) {
	_, key, ok := strings.Cut(string(p), "Idempotency-Key: ")
	if !ok {
		return len(p), nil
	}
	key, _, _ = strings.Cut(key, "\n")
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.tried[key] {
		w.retried = true
		w.cancel()
	}
	w.tried[key] = true
	return 0, errors.New("the mail server is down")
}

// A second send with the same key is not a second email.
func TestMailerSendsAKeyOnce(t *testing.T) {
	var out bytes.Buffer
	m := &printMailer{out: &out, sent: map[string]bool{}}
	e := email{To: "a@example.com", Subject: "s", Body: "b", IdempotencyKey: "k"}
	for range 2 {
		if err := m.Send(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(out.String(), "--- email"); n != 1 || m.count() != 1 {
		t.Errorf("%d emails for one key, want 1", n)
	}
}

// An email the provider failed to send is sent by the retry, not taken
// for sent.
func TestMailerRetriesAFailedSend(t *testing.T) {
	down := &mailServerDown{cancel: func() {}, tried: map[string]bool{}}
	m := &printMailer{out: down, sent: map[string]bool{}}
	e := email{To: "a@example.com", Subject: "s", Body: "b", IdempotencyKey: "k"}
	if err := m.Send(context.Background(), e); err == nil {
		t.Fatal("a send the provider refused reported no error")
	}
	var out bytes.Buffer
	m.out = &out
	if err := m.Send(context.Background(), e); err != nil || m.count() != 1 || strings.Count(out.String(), "--- email") != 1 {
		t.Errorf("the retry: %v, %d sent, output %q", err, m.count(), out.String())
	}
}
