package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

func TestAuthRefused(t *testing.T) {
	srv, c := worker(t)
	c.env = append(c.env, sheen.EnvSecret+"="+strings.Repeat("w", 40)) // the last one wins
	r := c.run(t, "balance", "u1")
	wantCode(t, r, exitAuth)
	wantIn(t, "refused signature", r.stderr, "the worker refused the request (403 INVALID_SIGNATURE)", "check the secret (WORKER_SHARED_SECRET or --secret-file)")
	doc := decode[errorDoc](t, c.run(t, "balance", "u1", "--json"))
	if doc.Error.Kind != "auth" || doc.Error.Status != http.StatusForbidden || doc.Error.Code != "INVALID_SIGNATURE" {
		t.Errorf("auth document: %+v", doc.Error)
	}
	for _, out := range []string{r.stdout, r.stderr} {
		if strings.Contains(out, srv.Secret) || strings.Contains(out, strings.Repeat("w", 40)) {
			t.Errorf("a secret was printed:\n%s", r)
		}
	}
}

func TestServerAndNetworkErrors(t *testing.T) {
	srv, c := worker(t)
	srv.AddFault(sheentest.Fault{Route: sheen.RouteBalance, Status: http.StatusInternalServerError, Body: `{"error":"database down"}`})
	r := c.run(t, "--attempts", "1", "balance", "u1")
	wantCode(t, r, exitServer)
	wantIn(t, "5xx", r.stderr, "sheen: the worker failed (500): database down", "try again later")

	// Retried 5xx waits are announced, then the last answer is reported.
	r = c.run(t, "--attempts", "2", "balance", "u1")
	wantCode(t, r, exitServer)
	wantIn(t, "retried 5xx", r.stderr, "GET /v1/billing/balance/u1 answered 500: trying again in ")

	srv.ClearFaults()
	srv.AddFault(sheentest.Fault{Route: sheen.RouteBalance, Status: http.StatusOK, Body: "<html>a proxy's page</html>", Header: http.Header{"Content-Type": {"text/html"}}})
	wantCode(t, c.run(t, "--attempts", "1", "balance", "u1"), exitServer)

	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	r = c.run(t, "--attempts", "1", "--base-url", closed, "balance", "u1")
	wantCode(t, r, exitNetwork)
	wantIn(t, "connection refused", r.stderr, "sheen: cannot reach the worker at "+closed+": connection refused")
	doc := decode[errorDoc](t, c.run(t, "--attempts", "1", "--base-url", closed, "balance", "u1", "--json"))
	if doc.Error.Kind != "network" || doc.Error.ExitCode != exitNetwork {
		t.Errorf("network document: %+v", doc.Error)
	}

	// --timeout bounds the whole command.
	srv.ClearFaults()
	srv.AddFault(sheentest.Fault{Route: sheen.RouteBalance, Delay: time.Minute})
	r = c.run(t, "--timeout", "300ms", "balance", "u1")
	wantCode(t, r, exitNetwork)
	wantIn(t, "timeout", r.stderr, "sheen: timed out")
}

func TestConfiguration(t *testing.T) {
	srv, c := worker(t)
	dir := t.TempDir()

	// The secret from a file, instead of the environment.
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte(srv.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noSecret := cli{env: []string{sheen.EnvBaseURL + "=" + srv.URL, sheen.EnvSigning + "=dual"}, dir: dir}
	wantCode(t, noSecret.run(t, "--secret-file", file, "balance", "u1"), exitOK)

	r := noSecret.run(t, "balance", "u1")
	wantCode(t, r, exitUsage)
	wantIn(t, "no secret", r.stderr, "no shared secret: set WORKER_SHARED_SECRET or pass --secret-file (or try --fake)")

	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("hunter2-too-short"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = noSecret.run(t, "--secret-file", short, "balance", "u1")
	wantCode(t, r, exitUsage)
	wantIn(t, "short secret", r.stderr, "is 17 characters; it must be at least 32")
	if strings.Contains(r.stderr, "hunter2") {
		t.Errorf("the secret file's content was printed: %s", r.stderr)
	}

	// Flags win over the environment: the wrong scheme is refused.
	r = c.run(t, "--signing", "bodypath", "--attempts", "1", "balance", "u1")
	if r.code == exitOK {
		t.Errorf("--signing bodypath did not win over WORKER_SIGNING=dual: %s", r)
	}

	for _, args := range [][]string{
		{"balance"}, {"balance", "a", "b"}, {"balance", " "}, {"frobnicate"}, {"balance", "u1", "--nope"},
		{"--signing", "rot13", "balance", "u1"}, {"--attempts", "0", "balance", "u1"},
		{"--fake", "--base-url", srv.URL, "balance", "u1"},
	} {
		r := c.run(t, args...)
		wantCode(t, r, exitUsage)
		wantIn(t, fmt.Sprint(args), r.stderr, "sheen: ", "--help' for usage.")
	}
	doc := decode[errorDoc](t, c.run(t, "--json", "balance"))
	if doc.Error.Kind != "usage" || !strings.Contains(doc.Error.Message, "missing USER") {
		t.Errorf("usage document: %+v", doc.Error)
	}
}

// sdkOption is an SDK option's name (WithBaseURL), which a person at the
// command line cannot set.
var sdkOption = regexp.MustCompile(`\bWith[A-Z]`)

// Under --json every failure is one JSON document on stdout, with nothing
// on stderr, also those cobra refuses before it reads --json (an unknown
// command, an unknown flag before it) and those of its help and completion
// commands; and no message names an SDK option instead of a flag.
func TestJSONForEveryFailure(t *testing.T) {
	_, c := worker(t)
	for _, tc := range []struct {
		args []string
		want string // in the message
	}{
		{[]string{"--json", "bogus"}, `unknown command "bogus"`},
		{[]string{"bogus", "--json"}, `unknown command "bogus"`},
		{[]string{"--json", "balanse", "u1"}, "did you mean balance?"},
		{[]string{"--json", "--nope", "balance", "u1"}, "unknown flag: --nope"},
		{[]string{"balance", "u1", "--nope", "--json"}, "unknown flag: --nope"},
		{[]string{"--json", "help", "bogus"}, `unknown help topic "bogus"`},
		{[]string{"--json", "completion", "bogus"}, `unknown command "bogus"`},
		{[]string{"--json", "balance"}, "missing USER"},
		{[]string{"--json", "--timeout", "-1s", "balance", "u1"}, "--timeout must not be negative"},
		{[]string{"--json", "--attempts", "101", "balance", "u1"}, "--attempts must be between 1 and 100"},
		{[]string{"--json", "--base-url", "https://user:hunter2@worker.test", "balance", "u1"}, "--base-url must not carry credentials"},
		{[]string{"--json", "--base-url", "ftp://worker.test", "balance", "u1"}, `--base-url has scheme "ftp"`},
		{[]string{"--json", "--base-url", "http://10.1.2.3", "balance", "u1"}, "--base-url uses plain http:// on 10.1.2.3, which is not loopback; use https:// (or --insecure-http"},
	} {
		r := c.run(t, tc.args...)
		wantCode(t, r, exitUsage)
		doc := decode[errorDoc](t, r)
		if doc.Error.Kind != "usage" || doc.Error.ExitCode != exitUsage {
			t.Errorf("%v: %+v", tc.args, doc.Error)
		}
		wantIn(t, fmt.Sprint(tc.args), doc.Error.Message, tc.want)
		if r.stderr != "" {
			t.Errorf("%v: stderr is not quiet under --json:\n%s", tc.args, r)
		}
		if sdkOption.MatchString(r.stdout) || strings.Contains(r.stdout, "hunter2") {
			t.Errorf("%v: the message names an SDK option or quotes the password:\n%s", tc.args, r)
		}
	}

	// The same in text, on stderr; and the environment is named as such.
	r := c.run(t, "--base-url", "http://10.1.2.3", "balance", "u1")
	wantCode(t, r, exitUsage)
	wantIn(t, "plain http", r.stderr, "sheen: --base-url uses plain http://", "--insecure-http")
	env := cli{env: []string{sheen.EnvBaseURL + "=http://10.1.2.3", sheen.EnvSecret + "=" + strings.Repeat("s", 32)}, dir: c.dir}
	r = env.run(t, "balance", "u1")
	wantCode(t, r, exitUsage)
	wantIn(t, "plain http from the environment", r.stderr, "sheen: "+sheen.EnvBaseURL+" uses plain http://", "--insecure-http")
	for _, args := range [][]string{{"help", "bogus"}, {"completion", "bogus"}, {"bogus"}} {
		r := c.run(t, args...)
		wantCode(t, r, exitUsage)
		wantIn(t, fmt.Sprint(args), r.stderr, "sheen: unknown", "--help' for usage.")
	}
	wantCode(t, c.run(t, "help", "balance"), exitOK)
	wantCode(t, c.run(t, "completion", "zsh"), exitOK)
}

// flagWords turns every SDK option name the SDK's messages hold, in the
// SDK's own errors, into what the command line sets.
func TestFlagWords(t *testing.T) {
	secret := strings.Repeat("s", sheen.MinSecretLength)
	for _, tc := range []struct {
		opts []sheen.Option
		want string
	}{
		{[]sheen.Option{sheen.WithBaseURL("http://10.1.2.3"), sheen.WithSecret(secret)}, "--base-url uses plain http:// on 10.1.2.3, which is not loopback; use https:// (or --insecure-http"},
		{[]sheen.Option{sheen.WithSecret("short")}, "the shared secret ($" + sheen.EnvSecret + " or --secret-file) is 5 characters"},
		{[]sheen.Option{sheen.WithSecret(secret), sheen.WithSecretV2("short")}, "$" + sheen.EnvSecretV2 + " is 5 characters"},
		{[]sheen.Option{sheen.WithSecret(secret), sheen.WithRetry(sheen.RetryConfig{MaxAttempts: 101})}, "--attempts 101; it must be between 1 and 100"},
	} {
		_, err := sheen.NewWorkerClient(tc.opts...)
		if err == nil {
			t.Fatalf("want an error for %s", tc.want)
		}
		got := explain(err, explainContext{})
		if !strings.Contains(got, tc.want) || sdkOption.MatchString(got) {
			t.Errorf("explain(%q) = %q; want %q in it and no SDK option", err, got, tc.want)
		}
	}
	// The advice the SDK appends to a 401 from a worker that wants dual.
	e := &sheen.AuthError{APIError: &sheen.APIError{StatusCode: 401, Code: sheen.CodeInvalidSignature,
		Message: "bad; use sheen.WithSigning(sheen.SigningDual) or set " + sheen.EnvSigning + "=dual"}}
	if got := explain(e, explainContext{}); !strings.Contains(got, "use --signing dual or set "+sheen.EnvSigning+"=dual") {
		t.Errorf("explain(401) = %q", got)
	}
}

// With --verbose every attempt is logged, and still no secret, signature
// or signed query shows.
func TestVerboseShowsNoSecrets(t *testing.T) {
	srv, c := worker(t)
	_, v := deployed(t, srv, "u1")
	var all strings.Builder
	for _, args := range [][]string{
		{"-v", "balance", "u1"}, {"-v", "download", v, "--user", "u1"}, {"-v", "export", v, "--user", "u1"},
		{"-v", "--json", "download", v, "--user", "u1", "--force"}, {"-v", "build", "u1", "--prompt", "x", "--watch"},
	} {
		r := c.run(t, args...)
		all.WriteString(r.stdout + r.stderr)
	}
	out := all.String()
	wantIn(t, "verbose log", out, "sheen: attempt", "method=GET", "status=200")
	if strings.Contains(out, srv.Secret) {
		t.Error("the secret was printed")
	}
	for _, leak := range []string{"X-Signature=", "X-Expires=", "x-sheen-signature", "X-Sheen-Signature"} {
		if strings.Contains(out, leak) {
			t.Errorf("output holds %q:\n%s", leak, out)
		}
	}
}

// exitCode sorts the SDK's errors by kind; the order matters where one
// error wraps another.
func TestExitCode(t *testing.T) {
	api := func(status int, code sheen.ErrorCode) *sheen.APIError {
		return &sheen.APIError{StatusCode: status, Code: code, Message: "m"}
	}
	for _, tc := range []struct {
		err  error
		want int
	}{
		{&sheen.ValidationError{Field: "userId", Reason: "empty"}, exitUsage},
		{usagef("bad"), exitUsage},
		{&sheen.InsufficientBalanceError{APIError: api(402, "")}, exitInsufficient},
		{&sheen.RateLimitError{APIError: api(429, "")}, exitRateLimited},
		{&sheen.AuthError{APIError: api(401, sheen.CodeMissingSignature)}, exitAuth},
		{&sheen.AuthError{APIError: api(408, sheen.CodeTimestampOutOfRange)}, exitAuth},
		{api(404, ""), exitNotFound},
		{&sheen.ArtifactMissingError{APIError: api(404, "")}, exitNotFound},
		{&sheen.DownloadError{Err: &sheen.ArtifactMissingError{APIError: api(404, "")}}, exitNotFound},
		{&sheen.DownloadError{Err: sheen.ErrTruncated}, exitNetwork},
		{&sheen.DownloadError{Err: sheen.ErrLinkExpired}, exitAuth},
		{api(503, ""), exitServer},
		{&sheen.ResponseError{StatusCode: 200, Err: errors.New("html")}, exitServer},
		{&sheen.OutcomeUnknownError{Err: api(502, "")}, exitUnknown},
		{&sheen.BuildFailedError{ID: "b", Message: "m"}, exitFailed},
		{&sheen.GenerateError{Message: "m"}, exitFailed},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), exitNetwork},
		{&sheen.AttemptTimeoutError{Timeout: time.Second}, exitNetwork},
		{context.Canceled, exitInterrupted},
		{api(409, sheen.CodeRollbackInProgress), exitFailure},
		{api(413, ""), exitFailure},
		{&answered{code: exitInsufficient}, exitInsufficient},
		{errors.New("disk full"), exitFailure},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%T %v) = %d, want %d", tc.err, tc.err, got, tc.want)
		}
	}
}

// The exit codes are documented twice, in --help and in the package doc:
// both must list every code with its meaning.
func TestExitCodesDocumented(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	help := cli{}.run(t, "--help")
	wantCode(t, help, exitOK)
	for _, e := range exitTable {
		wantIn(t, "package doc", string(doc), fmt.Sprintf("//\t%4d  %-20s  %s\n", e.code, e.kind, e.meaning))
		wantIn(t, "--help", help.stdout, fmt.Sprintf("%3d  %s\n", e.code, e.meaning))
	}
}

func TestRateLimitAdvice(t *testing.T) {
	now := time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC)
	e := &sheen.RateLimitError{APIError: &sheen.APIError{StatusCode: 429, RetryAfter: 90 * time.Second}, Limit: 60, Remaining: 0}
	got := explainRateLimit(e, now)
	wantIn(t, "429 advice", got, "try again in 1m30s (at "+now.Add(90*time.Second).Local().Format("15:04:05")+")", "allows 60 requests per window")

	// No Retry-After: the window's reset says when.
	e = &sheen.RateLimitError{APIError: &sheen.APIError{StatusCode: 429}, Limit: -1, Reset: now.Add(42 * time.Second)}
	wantIn(t, "429 advice from reset", explainRateLimit(e, now), "try again in 42s")
}
