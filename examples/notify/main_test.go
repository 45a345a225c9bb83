package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sheenapps/sheen-go/internal/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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
	text := out.String()
	for _, want := range []string{
		"To: alice@example.com\nSubject: Bakery landing page is live\nIdempotency-Key: sheen-build-finished:build-emails:01JDEMOBAKERY\n\nPreview it at https://01jdemobakery.preview.example\n",
		"To: bob@example.com\nSubject: Your build did not finish\nIdempotency-Key: sheen-build-finished:build-emails:01JDEMOBROKEN\n\nBuild 01JDEMOBROKEN failed: Module not found: react-router (BUILD_FAILED)\n",
		"To: alice@example.com\nSubject: Your site is live\nIdempotency-Key: sheen-build-finished:build-emails:01JDEMOPORTFOLIO\n\nPreview it at https://01jdemoportfolio.preview.example\n",
		"3 emails sent, one per finished build",
	} {
		if strings.Count(text, want) != 1 {
			t.Errorf("output has %q %d times, want once:\n%s", want, strings.Count(text, want), text)
		}
	}
	if n := strings.Count(text, "--- email"); n != 3 {
		t.Errorf("%d emails printed, want 3:\n%s", n, text)
	}
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
