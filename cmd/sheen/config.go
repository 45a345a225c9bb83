package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"golang.org/x/term"

	sheen "github.com/sheenapps/sheen-go"
)

// termIsTerminal is term.IsTerminal, named for isTerminal.
var termIsTerminal = term.IsTerminal

// userAgent identifies the CLI to the worker.
const userAgent = "sheen-cli/" + sheen.Version

// connect returns the client the commands use, making it on first use:
// the embedded fake worker's with --fake, else one configured from the
// environment with the flags on top.
func (a *app) connect() (*sheen.WorkerClient, error) {
	if a.client != nil {
		return a.client, nil
	}
	opts, err := a.clientOptions()
	if err != nil {
		return nil, err
	}
	if a.fake {
		if a.baseURL != "" || a.signing != "" || a.secretFile != "" {
			return nil, usagef("--fake runs its own worker: drop --base-url, --signing and --secret-file")
		}
		f, err := startFake(a.fakeStep)
		if err != nil {
			return nil, err
		}
		a.fakeEnv = f
		c, err := f.srv.Client(opts...)
		if err != nil {
			return nil, err
		}
		a.client = c
		return c, nil
	}
	if a.secretFile == "" && os.Getenv(sheen.EnvSecret) == "" {
		return nil, usagef("no shared secret: set %s or pass --secret-file (or try --fake)", sheen.EnvSecret)
	}
	c, err := sheen.NewWorkerClientFromEnv(opts...)
	if err != nil {
		// The SDK names its options; report says them as flags.
		return nil, &usageError{err: err}
	}
	a.client = c
	return c, nil
}

// clientOptions turns the global flags into SDK options; they win over the
// environment because NewWorkerClientFromEnv applies them last.
func (a *app) clientOptions() ([]sheen.Option, error) {
	if a.attempts < 1 || a.attempts > 100 {
		return nil, usagef("--attempts must be between 1 and 100")
	}
	opts := []sheen.Option{
		sheen.WithUserAgent(userAgent),
		sheen.WithRetry(sheen.RetryConfig{MaxAttempts: a.attempts, MaxWait: sheen.DefaultMaxWait}),
		sheen.WithLogger(slog.New(&noticeHandler{a: a})),
	}
	if a.baseURL != "" {
		opts = append(opts, sheen.WithBaseURL(a.baseURL))
	}
	if a.insecureHTTP {
		opts = append(opts, sheen.WithInsecureHTTP())
	}
	if a.signing != "" {
		var s sheen.Signing
		if err := s.UnmarshalText([]byte(a.signing)); err != nil {
			return nil, usagef("--signing: %v", err)
		}
		opts = append(opts, sheen.WithSigning(s))
	}
	if a.secretFile != "" {
		secret, err := readSecretFile(a.secretFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sheen.WithSecret(secret))
	}
	return opts, nil
}

// readSecretFile reads a secret from a file, without its final line end.
// Errors never quote the file's content.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", usagef("--secret-file: %v", err)
	}
	secret := string(bytes.TrimRight(b, "\r\n"))
	if len(secret) < sheen.MinSecretLength {
		return "", usagef("--secret-file: the secret in %s is %d characters; it must be at least %d", path, len(secret), sheen.MinSecretLength)
	}
	return secret, nil
}

// noticeHandler receives the SDK's log records. It tells a person when a
// call waits before trying again (a 429's Retry-After, a 5xx backoff), so
// a rate-limited command does not look hung, and with --verbose it shows
// every attempt. The SDK's records never hold the secret, signatures or
// signed queries.
type noticeHandler struct {
	a     *app
	attrs []slog.Attr
}

func (h *noticeHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= slog.LevelDebug
}

func (h *noticeHandler) Handle(_ context.Context, r slog.Record) error {
	if h.a.verbose {
		var b bytes.Buffer
		th := slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: dropTime})
		_ = th.WithAttrs(h.attrs).Handle(context.Background(), r)
		fmt.Fprint(h.a.stderr, b.String())
		return nil
	}
	var n notice
	r.Attrs(n.read)
	if h.a.barLive && (r.Level >= slog.LevelInfo || n.wait > 0) {
		fmt.Fprintln(h.a.stderr)
	}
	switch {
	case r.Level >= slog.LevelWarn:
		fmt.Fprintln(h.a.stderr, flagWords(r.Message))
	case r.Level >= slog.LevelInfo && n.hasOffset:
		fmt.Fprintf(h.a.stderr, "%s (after %s)\n", r.Message, bytesHuman(n.offset))
	case r.Level >= slog.LevelInfo:
		fmt.Fprintln(h.a.stderr, r.Message)
	case n.wait <= 0:
	case n.status == 429:
		fmt.Fprintf(h.a.stderr, "sheen: rate limited by the worker: trying again in %s (at %s)\n", human(n.wait), time.Now().Add(n.wait).Format("15:04:05"))
	case n.status != 0:
		fmt.Fprintf(h.a.stderr, "sheen: %s %s answered %d: trying again in %s\n", n.method, n.path, n.status, human(n.wait))
	default:
		fmt.Fprintf(h.a.stderr, "sheen: %s %s failed (%s): trying again in %s\n", n.method, n.path, n.err, human(n.wait))
	}
	return nil
}

// notice is what a log record of the SDK says about an attempt.
type notice struct {
	status            int
	wait              time.Duration
	method, path, err string
	offset            int64
	hasOffset         bool
}

func (n *notice) read(at slog.Attr) bool {
	switch at.Key {
	case "status":
		n.status = int(at.Value.Int64())
	case "wait":
		n.wait = at.Value.Duration()
	case "path":
		n.path = at.Value.String()
	case "method":
		n.method = at.Value.String()
	case "error":
		n.err = at.Value.String()
	case "offset":
		n.offset, n.hasOffset = at.Value.Int64(), true
	}
	return true
}

func (h *noticeHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &noticeHandler{a: h.a, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}

func (h *noticeHandler) WithGroup(string) slog.Handler { return h }

func dropTime(_ []string, at slog.Attr) slog.Attr {
	if at.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return at
}
