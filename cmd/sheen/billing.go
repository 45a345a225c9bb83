package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	sheen "github.com/sheenapps/sheen-go"
)

func (a *app) balanceCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "balance USER",
		Short:   "Show a user's AI-time balance",
		GroupID: groupBilling,
		Args:    exactArgs("USER"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			bal, err := c.Billing.RefreshBalance(ctx, args[0])
			if err != nil {
				return err
			}
			if a.json {
				a.writeJSON(balanceJSON(args[0], bal))
				return nil
			}
			a.printBalance(args[0], bal)
			return nil
		}),
	}
}

type jsonBalance struct {
	UserID             string       `json:"userId"`
	Shape              string       `json:"shape"`
	TotalSeconds       float64      `json:"totalSeconds"`
	PaidSeconds        float64      `json:"paidSeconds"`
	BonusSeconds       float64      `json:"bonusSeconds"`
	Plan               string       `json:"plan,omitempty"`
	SubscriptionStatus string       `json:"subscriptionStatus,omitempty"`
	NextExpiryAt       string       `json:"nextExpiryAt,omitempty"`
	DailyResetAt       string       `json:"dailyResetAt,omitempty"`
	Buckets            []jsonBucket `json:"buckets,omitempty"`
}

type jsonBucket struct {
	Source           string  `json:"source"`
	RemainingSeconds float64 `json:"remainingSeconds"`
	ExpiresAt        string  `json:"expiresAt,omitempty"`
}

func balanceJSON(user string, b sheen.Balance) jsonBalance {
	shape := "v2.1"
	if b.Bucketed {
		shape = "bucketed"
	}
	out := jsonBalance{
		UserID: user, Shape: shape,
		TotalSeconds: seconds(b.Total), PaidSeconds: seconds(b.Paid), BonusSeconds: seconds(b.Bonus),
		Plan: b.Plan, SubscriptionStatus: b.SubscriptionStatus,
		NextExpiryAt: stamp(b.NextExpiryAt), DailyResetAt: stamp(b.DailyResetAt),
	}
	for _, k := range b.Buckets() {
		out.Buckets = append(out.Buckets, jsonBucket{Source: k.Source, RemainingSeconds: seconds(k.Remaining), ExpiresAt: stamp(k.ExpiresAt)})
	}
	return out
}

func (a *app) printBalance(user string, b sheen.Balance) {
	a.printf("%s has %s of AI time (%s paid, %s bonus)\n", user, human(b.Total), human(b.Paid), human(b.Bonus))
	if b.Plan != "" || b.SubscriptionStatus != "" {
		a.printf("  plan %s, subscription %s\n", orDash(b.Plan), orDash(b.SubscriptionStatus))
	}
	if !b.DailyResetAt.IsZero() {
		a.printf("  daily gift renews at %s\n", local(b.DailyResetAt))
	}
	if buckets := b.Buckets(); len(buckets) > 0 {
		rows := make([][]string, 0, len(buckets))
		for _, k := range buckets {
			rows = append(rows, []string{"  " + k.Source, human(k.Remaining), local(k.ExpiresAt)})
		}
		table(a.stdout, "  SOURCE\tREMAINING\tEXPIRES", rows)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) checkCommand() *cobra.Command {
	var op, size string
	cmd := &cobra.Command{
		Use:   "check USER [--op OPERATION] [--size SIZE]",
		Short: "Ask whether a user can afford an operation (exit 4 when not)",
		Long: `Ask the worker whether USER can afford an operation. Exits 0 when the
balance covers it and 4 when it does not, so it can guard a build in a
script; the answer says what is missing and what would cover it.`,
		GroupID: groupBilling,
		Args:    exactArgs("USER"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			req := sheen.CheckSufficientRequest{UserID: args[0], OperationType: sheen.OperationType(op), ProjectSize: sheen.ProjectSize(size)}
			if err := oneOf("--op", op, string(sheen.OperationMainBuild), string(sheen.OperationMetadataGeneration), string(sheen.OperationUpdate)); err != nil {
				return err
			}
			if err := oneOf("--size", size, string(sheen.ProjectSizeSmall), string(sheen.ProjectSizeMedium), string(sheen.ProjectSizeLarge)); err != nil {
				return err
			}
			req.IsUpdate = req.OperationType == sheen.OperationUpdate
			c, err := a.connect()
			if err != nil {
				return err
			}
			res, err := c.Billing.CheckSufficient(ctx, req)
			if err != nil {
				return err
			}
			if a.json {
				a.writeJSON(checkJSON(req, res))
			} else {
				a.printCheck(req, res)
			}
			if !res.Sufficient {
				return &answered{code: exitInsufficient}
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&op, "op", string(sheen.OperationMainBuild), "the operation: main_build, metadata_generation or update")
	cmd.Flags().StringVar(&size, "size", string(sheen.ProjectSizeSmall), "the project's size: small, medium or large")
	_ = cmd.RegisterFlagCompletionFunc("op", fixedCompletions(string(sheen.OperationMainBuild), string(sheen.OperationMetadataGeneration), string(sheen.OperationUpdate)))
	_ = cmd.RegisterFlagCompletionFunc("size", fixedCompletions(string(sheen.ProjectSizeSmall), string(sheen.ProjectSizeMedium), string(sheen.ProjectSizeLarge)))
	return cmd
}

type jsonCheck struct {
	UserID           string           `json:"userId"`
	Operation        string           `json:"operation"`
	Size             string           `json:"size"`
	Sufficient       bool             `json:"sufficient"`
	AvailableSeconds *float64         `json:"availableSeconds,omitempty"`
	RequiredSeconds  *float64         `json:"requiredSeconds,omitempty"`
	ShortfallSeconds *float64         `json:"shortfallSeconds,omitempty"`
	Confidence       string           `json:"confidence,omitempty"`
	Suggestions      []jsonSuggestion `json:"suggestions"`
	PurchaseURL      string           `json:"purchaseUrl,omitempty"`
}

func checkJSON(req sheen.CheckSufficientRequest, r *sheen.SufficientCheck) jsonCheck {
	out := jsonCheck{
		UserID: req.UserID, Operation: string(req.OperationType), Size: string(req.ProjectSize),
		Sufficient: r.Sufficient, Suggestions: suggestionsJSON(r.Suggestions),
	}
	if r.Required > 0 {
		need, short := seconds(r.Required), seconds(r.Shortfall())
		out.RequiredSeconds, out.ShortfallSeconds = &need, &short
	}
	if r.HasAvailable {
		v := seconds(r.Available)
		out.AvailableSeconds = &v
	}
	if r.Estimate != nil {
		out.Confidence = r.Estimate.Confidence
	}
	if r.Recommendation != nil {
		out.PurchaseURL = r.Recommendation.PurchaseURL
	}
	return out
}

func (a *app) printCheck(req sheen.CheckSufficientRequest, r *sheen.SufficientCheck) {
	what := fmt.Sprintf("%s (%s)", req.OperationType, req.ProjectSize)
	var facts []string
	if r.Required > 0 {
		facts = append(facts, "needs about "+human(r.Required))
	}
	if r.HasAvailable {
		facts = append(facts, "has "+human(r.Available))
	}
	verdict := "can afford"
	if !r.Sufficient {
		verdict = "cannot afford"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", req.UserID, verdict, what)
	if len(facts) > 0 {
		b.WriteString(": " + strings.Join(facts, ", "))
	}
	if s := r.Shortfall(); s > 0 && !r.Sufficient {
		fmt.Fprintf(&b, " (short %s)", human(s))
	}
	writeSuggestions(&b, r.Suggestions, r.Recommendation)
	a.printf("%s\n", b.String())
}

func (a *app) usageCommand() *cobra.Command {
	var period string
	cmd := &cobra.Command{
		Use:     "usage USER [--period day|month]",
		Short:   "Show the AI time a user spent over a day or a month",
		GroupID: groupBilling,
		Args:    exactArgs("USER"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			if err := oneOf("--period", period, "", string(sheen.UsagePeriodDay), string(sheen.UsagePeriodMonth)); err != nil {
				return err
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			rep, err := c.Billing.Usage(ctx, args[0], sheen.UsagePeriod(period))
			if err != nil {
				return err
			}
			if a.json {
				a.writeJSON(usageJSON(args[0], period, rep))
				return nil
			}
			a.printUsage(args[0], period, rep)
			return nil
		}),
	}
	cmd.Flags().StringVar(&period, "period", "", "day or month (default: the worker's, a month)")
	_ = cmd.RegisterFlagCompletionFunc("period", fixedCompletions(string(sheen.UsagePeriodDay), string(sheen.UsagePeriodMonth)))
	return cmd
}

type jsonUsage struct {
	UserID      string             `json:"userId"`
	Period      string             `json:"period,omitempty"`
	TotalSecs   float64            `json:"totalSeconds"`
	ByOperation map[string]float64 `json:"byOperationSeconds"`
	Daily       []jsonUsageDay     `json:"daily"`
}

type jsonUsageDay struct {
	Date    string  `json:"date"`
	Seconds float64 `json:"seconds"`
}

func usageJSON(user, period string, r *sheen.UsageReport) jsonUsage {
	out := jsonUsage{UserID: user, Period: period, TotalSecs: seconds(r.Total), ByOperation: map[string]float64{}, Daily: []jsonUsageDay{}}
	for k, v := range r.ByOperation {
		out.ByOperation[k] = seconds(v)
	}
	for _, d := range r.DailyTrend {
		out.Daily = append(out.Daily, jsonUsageDay{Date: d.Date, Seconds: seconds(d.Used)})
	}
	return out
}

func (a *app) printUsage(user, period string, r *sheen.UsageReport) {
	if period == "" {
		period = "the worker's default period"
	} else {
		period = "the last " + period
	}
	a.printf("%s used %s of AI time over %s\n", user, human(r.Total), period)
	for _, k := range slices.Sorted(maps.Keys(r.ByOperation)) {
		a.printf("  %-20s %s\n", k, human(r.ByOperation[k]))
	}
	if len(r.DailyTrend) > 0 {
		rows := make([][]string, 0, len(r.DailyTrend))
		for _, d := range r.DailyTrend {
			rows = append(rows, []string{"  " + d.Date, human(d.Used)})
		}
		table(a.stdout, "  DAY\tUSED", rows)
	}
}

func (a *app) historyCommand() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:     "history USER [--limit N]",
		Short:   "List a user's latest billing events, newest first",
		GroupID: groupBilling,
		Args:    exactArgs("USER"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			if limit < 0 || limit > 100 {
				return usagef("--limit must be 1 to 100 (0: the worker's default)")
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			evs, err := c.Billing.History(ctx, args[0], limit)
			if err != nil {
				return err
			}
			if a.json {
				out := make([]jsonBillingEvent, 0, len(evs))
				for _, e := range evs {
					out = append(out, jsonBillingEvent{Type: e.Type, Seconds: seconds(e.Amount), Reason: e.Reason, At: stamp(e.Timestamp)})
				}
				a.writeJSON(map[string]any{"userId": args[0], "events": out})
				return nil
			}
			if len(evs) == 0 {
				a.printf("%s has no billing events\n", args[0])
				return nil
			}
			rows := make([][]string, 0, len(evs))
			for _, e := range evs {
				rows = append(rows, []string{local(e.Timestamp), e.Type, human(e.Amount), oneLine(e.Reason)})
			}
			table(a.stdout, "WHEN\tTYPE\tAMOUNT\tREASON", rows)
			return nil
		}),
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "how many events, 1 to 100 (default: the worker's, 20)")
	return cmd
}

type jsonBillingEvent struct {
	Type    string  `json:"type"`
	Seconds float64 `json:"seconds"`
	Reason  string  `json:"reason"`
	At      string  `json:"at,omitempty"`
}

// exactArgs wants exactly the named arguments, and says which are missing.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usagef("missing %s", strings.Join(names[len(args):], " "))
		case len(args) > len(names):
			return usagef("too many arguments: want %s", strings.Join(names, " "))
		}
		for i, a := range args {
			if strings.TrimSpace(a) == "" {
				return usagef("%s is empty", names[i])
			}
		}
		return nil
	}
}

// oneOf refuses a flag value outside the allowed ones.
func oneOf(flag, value string, allowed ...string) error {
	if slices.Contains(allowed, value) {
		return nil
	}
	var shown []string
	for _, v := range allowed {
		if v != "" {
			shown = append(shown, v)
		}
	}
	return usagef("%s must be %s (not %q)", flag, strings.Join(shown, ", "), value)
}

// fixedCompletions completes a flag from a fixed list.
func fixedCompletions(values ...string) cobra.CompletionFunc {
	return cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp)
}
