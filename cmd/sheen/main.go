package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	sheen "github.com/sheenapps/sheen-go"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// app is one run of the command: where it writes, how it was configured,
// and the client it made (lazily, the first time a command needs one).
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	// Global flags.
	baseURL    string
	signing    string
	secretFile string
	fake       bool
	fakeStep   time.Duration
	json       bool
	showURL    bool
	verbose    bool
	timeout    time.Duration
	attempts   int
	// insecureHTTP allows http:// to a worker that is not on loopback.
	insecureHTTP bool

	// streaming is set once a command has written JSON lines: an error
	// then ends the stream as one more line.
	streaming bool

	// barLive is set while a progress bar owns the last line of stderr:
	// a notice then starts on a line of its own.
	barLive bool

	// tty reports whether stderr is a terminal where progress bars can
	// redraw their line.
	tty bool

	client  *sheen.WorkerClient
	fakeEnv *fakeWorker

	// args is the command line, for report: when cobra refuses it before
	// reading the flags, --json is looked for there.
	args []string
}

// run executes the command line args and returns the process's exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, tty: isTerminal(stderr), args: args}
	defer a.close()
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	return a.report(cmd, err)
}

// close stops the embedded fake worker, if one was started.
func (a *app) close() {
	if a.fakeEnv != nil {
		a.fakeEnv.close()
	}
}

// report writes err for a person (or as a JSON document with --json) and
// returns its exit code.
func (a *app) report(cmd *cobra.Command, err error) int {
	if !a.json {
		// An unknown command, or a flag error before --json, stops cobra
		// before it sets the flag.
		a.json = jsonRequested(a.args)
	}
	var ue *usageError
	if !errors.As(err, &ue) && !isRunError(err) {
		// cobra refused the command line before any command ran: an
		// unknown command or flag, a missing argument or required flag.
		ue = &usageError{err: err}
	}
	if ue != nil {
		if a.json {
			a.writeJSON(errorDocument(ue, exitUsage))
		} else {
			fmt.Fprintf(a.stderr, "sheen: %s\n", flagWords(strings.TrimPrefix(ue.err.Error(), "sheen: ")))
			fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return exitUsage
	}
	err = unwrapRun(err)
	code := exitCode(err)
	var done *answered
	if errors.As(err, &done) {
		return code
	}
	switch {
	case a.json && a.streaming:
		doc := errorDocument(err, code)
		doc.Type = "error"
		a.writeJSONLine(doc)
	case a.json:
		a.writeJSON(errorDocument(err, code))
	default:
		fmt.Fprintln(a.stderr, explain(err, a.explainContext()))
	}
	return code
}

// jsonRequested reports whether the command line args asks for --json,
// read without cobra: the last --json or --json=BOOL before "--" decides.
func jsonRequested(args []string) bool {
	on := false
	for _, arg := range args {
		if arg == "--" {
			break
		}
		if arg == "--json" {
			on = true
		} else if v, ok := strings.CutPrefix(arg, "--json="); ok {
			on, _ = strconv.ParseBool(v)
		}
	}
	return on
}

// usageError is a command line or configuration the command cannot run
// with (exit code 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef makes a usageError.
func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// runError marks an error returned by a command that ran, as opposed to
// one cobra returned while reading the command line.
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

func isRunError(err error) bool {
	var re *runError
	return errors.As(err, &re)
}

func unwrapRun(err error) error {
	var re *runError
	if errors.As(err, &re) {
		return re.err
	}
	return err
}

// runE adapts a command body: it gives it the command's context (bounded
// by --timeout) and marks what it returns as a runError.
func (a *app) runE(fn func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ctx := cmd.Context()
		if a.timeout < 0 {
			return usagef("--timeout must not be negative (0, the default, is no limit)")
		}
		if a.timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, a.timeout)
			defer cancel()
		}
		if err := fn(ctx, args); err != nil {
			return &runError{err: err}
		}
		return nil
	}
}

// isTerminal reports whether w is a terminal where a progress bar can
// redraw its line. TERM=dumb counts as no terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	return termIsTerminal(int(f.Fd()))
}

// oneLine shortens text for a single line of output.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:197] + "..."
	}
	return s
}
