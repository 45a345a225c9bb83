package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	sheen "github.com/sheenapps/sheen-go"
)

// Command groups, in the order --help lists them.
const (
	groupBilling = "billing"
	groupBuilds  = "builds"
	groupExports = "exports"
	groupOther   = "other"
)

func (a *app) rootCommand() *cobra.Command {
	// List commands in the order they are added (by task), not A to Z.
	cobra.EnableCommandSorting = false
	root := &cobra.Command{
		Use:   "sheen",
		Short: "Operate a SheenApps worker from a terminal",
		Long:  rootLong(),
		Example: strings.Join([]string{
			"  sheen --fake balance " + fakeDemoUser,
			"  sheen --fake build " + fakeDemoUser + " --prompt 'A bakery landing page' --watch",
			"  sheen balance USER --json | jq .totalSeconds",
			"  sheen check USER --op main_build --size medium && sheen build USER --prompt '...' --watch",
			"  sheen download VERSION --user USER --out site.tar.gz",
		}, "\n"),
		Version:       sheen.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Read the global flags before the command name as cobra reaches
		// them, so "--nope balance" is an unknown flag (not an unknown
		// command "balance" taken for its value) and --json is known.
		TraverseChildren:  true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
		// Traversing skips cobra's check of the command name: an unknown
		// one reaches the root as an argument, refused here.
		Args:                       unknownCommand,
		SuggestionsMinimumDistance: 2,
		RunE:                       func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })
	root.SetVersionTemplate("sheen {{.Version}} (sheen-go SDK " + sheen.Version + ")\n")

	pf := root.PersistentFlags()
	pf.StringVar(&a.baseURL, "base-url", "", "the worker's URL (default $"+sheen.EnvBaseURL+", else "+sheen.DefaultBaseURL+")")
	pf.StringVar(&a.signing, "signing", "", "how requests are signed: bodypath, timestamp or dual (default $"+sheen.EnvSigning+")")
	pf.StringVar(&a.secretFile, "secret-file", "", "read the shared secret from this file instead of $"+sheen.EnvSecret)
	pf.BoolVar(&a.fake, "fake", false, "run against an embedded fake worker: no setup, nothing leaves this machine")
	pf.BoolVar(&a.json, "json", false, "machine-readable output: one JSON document (JSON lines for --watch and watch)")
	pf.BoolVar(&a.showURL, "show-url", false, "print signed download URLs in full (they are bearer credentials)")
	pf.BoolVarP(&a.verbose, "verbose", "v", false, "log every request attempt to stderr (never the secret or signatures)")
	pf.DurationVar(&a.timeout, "timeout", 0, "give up after this long, waits and retries included (default: no limit)")
	pf.BoolVar(&a.insecureHTTP, "insecure-http", false, "allow a plain http:// worker URL on a host that is not loopback (trusted networks only)")
	pf.IntVar(&a.attempts, "attempts", sheen.DefaultMaxAttempts, "how many times a call may be tried (1: no retries)")
	pf.DurationVar(&a.fakeStep, "fake-step", defaultFakeStep, "with --fake: time between two steps of a build")
	_ = pf.MarkHidden("fake-step")

	root.AddGroup(
		&cobra.Group{ID: groupBilling, Title: "Billing:"},
		&cobra.Group{ID: groupBuilds, Title: "Builds:"},
		&cobra.Group{ID: groupExports, Title: "Archives:"},
		&cobra.Group{ID: groupOther, Title: "Other:"},
	)
	root.SetHelpCommandGroupID(groupOther)
	root.SetCompletionCommandGroupID(groupOther)
	for _, c := range []*cobra.Command{
		a.balanceCommand(), a.checkCommand(), a.usageCommand(), a.historyCommand(),
		a.buildCommand(), a.updateCommand(), a.statusCommand(), a.watchCommand(),
		a.versionsCommand(), a.rollbackCommand(), a.generateCommand(),
		a.exportCommand(), a.downloadCommand(),
		a.verifyCommand(),
	} {
		root.AddCommand(c)
	}
	strictHelpAndCompletion(root)
	return root
}

// unknownCommand refuses arguments to a command that only has
// subcommands: the first is a command name it does not know.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	err := fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		err = fmt.Errorf("%w (did you mean %s?)", err, strings.Join(s, " or "))
	}
	return &usageError{err: err}
}

// strictHelpAndCompletion makes cobra's own help and completion commands
// refuse what they do not know (an unknown topic or shell) as a usage
// error, which report writes as JSON under --json, instead of printing
// help and exiting 0.
func strictHelpAndCompletion(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "help":
			c.Run = nil
			c.RunE = func(c *cobra.Command, args []string) error {
				cmd, rest, err := c.Root().Find(args)
				if cmd == nil || err != nil || len(rest) > 0 {
					return usagef("unknown help topic %q", strings.Join(args, " "))
				}
				cmd.InitDefaultHelpFlag()
				cmd.InitDefaultVersionFlag()
				return cmd.Help()
			}
		case "completion":
			// Args (cobra.NoArgs) refuses an unknown shell once the
			// command can run.
			c.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
		}
	}
}

// rootLong is the text --help shows above the command list.
func rootLong() string {
	var b strings.Builder
	b.WriteString(`sheen answers an operator's questions about a SheenApps worker without
hand-made signatures: a user's AI-time balance, whether they can afford a
build; it starts builds and follows them, lists and rolls back versions,
and downloads archives. It is built on the sheen-go SDK, so it signs,
paces and retries exactly as a Go service using the SDK does.

Configuration (flags win over the environment):
  ` + sheen.EnvBaseURL + `          the worker (--base-url), default ` + sheen.DefaultBaseURL + `
  ` + sheen.EnvSecret + `     the shared secret (or --secret-file; never a flag value)
  ` + sheen.EnvSecretV2 + `  a separate secret for v2 signatures, if any
  ` + sheen.EnvSigning + `           bodypath, timestamp or dual (--signing)
  ` + sheen.EnvGenerateURL + `        where generate runs, if not the worker,
  ` + sheen.EnvGenerateSecret + `     and its secret

Try it with no setup: --fake starts an embedded fake worker for the run
(a fresh one each time), signing like the deployed worker. It knows:
`)
	for _, l := range fakeHelpLines() {
		b.WriteString("  " + l + "\n")
	}
	b.WriteString(`Any other user id starts with the fake's welcome bonus (50m + 15m daily).

Output: text for people; --json for scripts (one document, or JSON lines for
streams). Progress bars are drawn on stderr when it is a terminal, plain
lines otherwise. Signed download URLs are redacted unless --show-url.

Exit codes:
`)
	for _, e := range exitTable {
		fmt.Fprintf(&b, "  %3d  %s\n", e.code, e.meaning)
	}
	return strings.TrimRight(b.String(), "\n")
}
