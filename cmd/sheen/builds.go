package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"

	sheen "github.com/sheenapps/sheen-go"
)

var frameworks = []string{string(sheen.FrameworkReact), string(sheen.FrameworkNextJS), string(sheen.FrameworkVue), string(sheen.FrameworkSvelte)}

func (a *app) buildCommand() *cobra.Command {
	var prompt, project, framework string
	var watch bool
	cmd := &cobra.Command{
		Use:   "build USER --prompt TEXT [--project ID] [--framework F] [--watch]",
		Short: "Start a build of a new project (or a new build of --project)",
		Long: `Start a build for USER from a prompt. The worker makes a project unless
--project names one. A balance too short for it ends with exit code 4 and
says the balance, what the build needs and what would cover it.

With --watch, follow the build to its end: exit 0 when deployed, 10 when
it failed.`,
		GroupID: groupBuilds,
		Args:    exactArgs("USER"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			if err := oneOf("--framework", framework, append([]string{""}, frameworks...)...); err != nil {
				return err
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			b, err := c.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{
				UserID: args[0], ProjectID: project, Prompt: prompt, Framework: sheen.Framework(framework),
			})
			if err != nil {
				return withSuggestions(ctx, c, err, args[0], sheen.OperationMainBuild)
			}
			return a.started(ctx, c, b, args[0], watch)
		}),
	}
	cmd.Flags().StringVar(&prompt, "prompt", "", "what to build (required)")
	cmd.Flags().StringVar(&project, "project", "", "the project's id (default: the worker makes one)")
	cmd.Flags().StringVar(&framework, "framework", "", "react, nextjs, vue or svelte (default: the worker's, react)")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow the build to its end")
	_ = cmd.MarkFlagRequired("prompt")
	_ = cmd.RegisterFlagCompletionFunc("framework", fixedCompletions(frameworks...))
	return cmd
}

func (a *app) updateCommand() *cobra.Command {
	var prompt, framework string
	var watch bool
	cmd := &cobra.Command{
		Use:     "update USER PROJECT --prompt TEXT [--watch]",
		Short:   "Start a build that changes an existing project",
		GroupID: groupBuilds,
		Args:    exactArgs("USER", "PROJECT"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			if err := oneOf("--framework", framework, append([]string{""}, frameworks...)...); err != nil {
				return err
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			b, err := c.Builds.UpdateProject(ctx, sheen.UpdateProjectRequest{
				UserID: args[0], ProjectID: args[1], Prompt: prompt, Framework: sheen.Framework(framework),
			})
			if err != nil {
				return withSuggestions(ctx, c, err, args[0], sheen.OperationUpdate)
			}
			return a.started(ctx, c, b, args[0], watch)
		}),
	}
	cmd.Flags().StringVar(&prompt, "prompt", "", "what to change (required)")
	cmd.Flags().StringVar(&framework, "framework", "", "react, nextjs, vue or svelte (default: unchanged)")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow the build to its end")
	_ = cmd.MarkFlagRequired("prompt")
	_ = cmd.RegisterFlagCompletionFunc("framework", fixedCompletions(frameworks...))
	return cmd
}

// withSuggestions completes a build's 402, which says the balance and the
// need but not what would cover it, with the suggestions of the billing
// check (whose own 402 says what to buy but not the need). Any other error,
// or a check that fails, leaves err as it is.
func withSuggestions(ctx context.Context, c *sheen.WorkerClient, err error, user string, op sheen.OperationType) error {
	var short *sheen.InsufficientBalanceError
	if !errors.As(err, &short) || len(short.Suggestions) > 0 || short.Recommendation != nil {
		return err
	}
	check, cerr := c.Billing.CheckSufficient(ctx, sheen.CheckSufficientRequest{
		UserID: user, OperationType: op, ProjectSize: sheen.ProjectSizeSmall, IsUpdate: op == sheen.OperationUpdate,
	})
	if cerr == nil {
		short.Suggestions, short.Recommendation = check.Suggestions, check.Recommendation
	}
	return err
}

type jsonBuild struct {
	Type          string `json:"type,omitempty"`
	BuildID       string `json:"buildId"`
	ProjectID     string `json:"projectId,omitempty"`
	UserID        string `json:"userId"`
	Status        string `json:"status,omitempty"`
	BaseVersionID string `json:"baseVersionId,omitempty"`
	EstimatedTime string `json:"estimatedTime,omitempty"`
	CorrelationID string `json:"correlationId,omitempty"`
}

// started reports a build the worker accepted and, with watch, follows it.
func (a *app) started(ctx context.Context, c *sheen.WorkerClient, b *sheen.Build, user string, watch bool) error {
	doc := jsonBuild{
		BuildID: b.ID, ProjectID: b.ProjectID, UserID: user, Status: b.Status,
		BaseVersionID: b.BaseVersionID, EstimatedTime: b.EstimatedTime, CorrelationID: b.CorrelationID,
	}
	switch {
	case a.json && watch:
		a.streaming = true
		doc.Type = "build"
		a.writeJSONLine(doc)
	case a.json:
		a.writeJSON(doc)
	default:
		a.printf("Build %s started for project %s", b.ID, orDash(b.ProjectID))
		if b.Status != "" {
			a.printf(" (%s)", b.Status)
		}
		a.printf("\n")
		switch {
		case watch:
		case a.fake:
			a.printf("  the fake worker ends with this command: add --watch to follow the build\n")
		default:
			a.printf("  follow it: sheen watch %s --user %s\n", b.ID, user)
		}
	}
	if !watch {
		return nil
	}
	return a.follow(ctx, c, b.ID, user)
}

// follow follows a build to its end, showing its progress, and reports how
// it ended: nil when it deployed, a *sheen.BuildFailedError when it failed.
func (a *app) follow(ctx context.Context, c *sheen.WorkerClient, buildID, user string) error {
	if a.json {
		a.streaming = true
	}
	p := a.newBuildProgress()
	res, err := c.Builds.Wait(ctx, buildID, user, &sheen.FollowOptions{OnEvent: p.event})
	p.done(err == nil)
	if err != nil {
		return err
	}
	if a.json {
		a.writeJSONLine(resultJSON(res))
		return nil
	}
	a.printf("Deployed build %s: preview %s\n", res.ID, orDash(res.PreviewURL))
	if res.VersionID != "" {
		a.printf("  version %s %s, built in %s (%d events)\n", res.VersionID, res.VersionName, human(res.Duration), res.Events)
	}
	if res.MetadataError != nil {
		a.printf("  the metadata phase failed (%s): %s; the build stands\n", res.MetadataError.Code, oneLine(res.MetadataError.Message))
	}
	return nil
}

type jsonResult struct {
	Type            string          `json:"type"`
	BuildID         string          `json:"buildId"`
	PreviewURL      string          `json:"previewUrl"`
	VersionID       string          `json:"versionId,omitempty"`
	VersionName     string          `json:"versionName,omitempty"`
	DurationSeconds float64         `json:"durationSeconds"`
	Events          int             `json:"events"`
	LastEventID     int64           `json:"lastEventId"`
	MetadataDone    bool            `json:"metadataDone"`
	MetadataError   *jsonBuildError `json:"metadataError,omitempty"`
}

func resultJSON(r *sheen.BuildResult) jsonResult {
	out := jsonResult{
		Type: "result", BuildID: r.ID, PreviewURL: r.PreviewURL, VersionID: r.VersionID, VersionName: r.VersionName,
		DurationSeconds: seconds(r.Duration), Events: r.Events, LastEventID: r.LastEventID, MetadataDone: r.MetadataDone,
	}
	if r.MetadataError != nil {
		out.MetadataError = &jsonBuildError{Code: r.MetadataError.Code, Message: r.MetadataError.Message}
	}
	return out
}

func (a *app) statusCommand() *cobra.Command {
	var user string
	cmd := &cobra.Command{
		Use:     "status BUILD --user USER",
		Short:   "Show where a build stands",
		GroupID: groupBuilds,
		Args:    exactArgs("BUILD"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			st, err := c.Builds.Status(ctx, args[0], user)
			if err != nil {
				return err
			}
			if a.json {
				a.writeJSON(statusJSON(st))
				return nil
			}
			a.printf("Build %s: %s, %d%%", st.ID, st.Status, percent(st.Progress))
			if st.CurrentPhase != "" {
				a.printf(", phase %s", st.CurrentPhase)
			}
			a.printf(", %d events, last at %s\n", st.EventCount, local(st.LastUpdate))
			if st.PreviewURL != "" {
				a.printf("  preview %s\n", st.PreviewURL)
			}
			if st.Error != nil {
				a.printf("  failed: %s\n", oneLine(st.Error.Message))
			}
			if !st.Finished {
				a.printf("  follow it: sheen watch %s --user %s\n", st.ID, user)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&user, "user", "", "the build's user (required)")
	_ = cmd.MarkFlagRequired("user")
	return cmd
}

type jsonStatus struct {
	BuildID    string          `json:"buildId"`
	Status     string          `json:"status"`
	Progress   float64         `json:"progress"`
	Phase      string          `json:"phase,omitempty"`
	Finished   bool            `json:"finished"`
	PreviewURL string          `json:"previewUrl,omitempty"`
	EventCount int             `json:"eventCount"`
	LastUpdate string          `json:"lastUpdate,omitempty"`
	Error      *jsonBuildError `json:"error,omitempty"`
}

func statusJSON(st *sheen.BuildStatus) jsonStatus {
	out := jsonStatus{
		BuildID: st.ID, Status: st.Status, Progress: st.Progress, Phase: string(st.CurrentPhase), Finished: st.Finished,
		PreviewURL: st.PreviewURL, EventCount: st.EventCount, LastUpdate: stamp(st.LastUpdate),
	}
	if st.Error != nil {
		out.Error = &jsonBuildError{Code: st.Error.Code, Message: st.Error.Message}
	}
	return out
}

func (a *app) watchCommand() *cobra.Command {
	var user string
	cmd := &cobra.Command{
		Use:   "watch BUILD --user USER",
		Short: "Follow a build to its end (exit 10 when it fails)",
		Long: `Follow a build's events to its end: a progress bar on a terminal, a line
per event otherwise, JSON lines with --json (events, then a "result" or an
"error" line). Exits 0 when the build deployed and 10 when it failed; a
build already over is reported at once.`,
		GroupID: groupBuilds,
		Args:    exactArgs("BUILD"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			return a.follow(ctx, c, args[0], user)
		}),
	}
	cmd.Flags().StringVar(&user, "user", "", "the build's user (required)")
	_ = cmd.MarkFlagRequired("user")
	return cmd
}

func (a *app) versionsCommand() *cobra.Command {
	var state string
	cmd := &cobra.Command{
		Use:     "versions PROJECT [--state all|published|unpublished]",
		Short:   "List a project's versions, newest first",
		GroupID: groupBuilds,
		Args:    exactArgs("PROJECT"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			states := []string{"", string(sheen.VersionsAll), string(sheen.VersionsPublished), string(sheen.VersionsUnpublished)}
			if err := oneOf("--state", state, states...); err != nil {
				return err
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			var vs []sheen.ProjectVersion
			for v, err := range c.Builds.Versions(ctx, args[0], sheen.VersionState(state)) {
				if err != nil {
					return err
				}
				vs = append(vs, v)
			}
			if a.json {
				out := make([]jsonVersion, 0, len(vs))
				for _, v := range vs {
					out = append(out, versionJSON(v))
				}
				a.writeJSON(map[string]any{"projectId": args[0], "versions": out})
				return nil
			}
			if len(vs) == 0 {
				a.printf("%s has no versions\n", args[0])
				return nil
			}
			rows := make([][]string, 0, len(vs))
			for _, v := range vs {
				rows = append(rows, []string{
					v.ID, orDash(v.Semver), orDash(v.Name), local(v.CreatedAt), yesNo(v.IsPublished),
					archive(v), yesNo(v.CanRollback), oneLine(v.Description),
				})
			}
			table(a.stdout, "ID\tSEMVER\tNAME\tCREATED\tPUBLISHED\tARCHIVE\tROLLBACK\tDESCRIPTION", rows)
			return nil
		}),
	}
	cmd.Flags().StringVar(&state, "state", "", "all, published or unpublished (default: the worker's, all)")
	_ = cmd.RegisterFlagCompletionFunc("state", fixedCompletions(string(sheen.VersionsAll), string(sheen.VersionsPublished), string(sheen.VersionsUnpublished)))
	return cmd
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func archive(v sheen.ProjectVersion) string {
	if !v.HasArtifact {
		return "gone"
	}
	return bytesHuman(v.ArtifactSize)
}

type jsonVersion struct {
	ID           string `json:"id"`
	Semver       string `json:"semver,omitempty"`
	Name         string `json:"name,omitempty"`
	Description  string `json:"description,omitempty"`
	Type         string `json:"type,omitempty"`
	CreatedAt    string `json:"createdAt,omitempty"`
	IsPublished  bool   `json:"isPublished"`
	PreviewURL   string `json:"previewUrl,omitempty"`
	HasArtifact  bool   `json:"hasArtifact"`
	ArtifactSize int64  `json:"artifactSize"`
	CanRollback  bool   `json:"canRollback"`
}

func versionJSON(v sheen.ProjectVersion) jsonVersion {
	return jsonVersion{
		ID: v.ID, Semver: v.Semver, Name: v.Name, Description: v.Description, Type: v.Type, CreatedAt: stamp(v.CreatedAt),
		IsPublished: v.IsPublished, PreviewURL: v.PreviewURL, HasArtifact: v.HasArtifact, ArtifactSize: v.ArtifactSize,
		CanRollback: v.CanRollback,
	}
}

func (a *app) rollbackCommand() *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "rollback USER PROJECT VERSION [--idempotency-key KEY]",
		Short: "Roll a project back to an earlier version",
		Long: `Roll PROJECT back to VERSION: the worker makes a new version from it.
The call carries an idempotency key, so the SDK's retries never roll back
twice; pass --idempotency-key to make a repeated command safe as well (the
worker replays its answer for 24 hours).`,
		GroupID: groupBuilds,
		Args:    exactArgs("USER", "PROJECT", "VERSION"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			res, err := c.Builds.Rollback(ctx, sheen.RollbackRequest{UserID: args[0], ProjectID: args[1], TargetVersionID: args[2], IdempotencyKey: key})
			if err != nil {
				return err
			}
			if a.json {
				a.writeJSON(map[string]any{
					"projectId": args[1], "rollbackVersionId": res.RollbackVersionID, "targetVersionId": res.TargetVersionID,
					"previewUrl": res.PreviewURL, "status": res.Status, "jobId": res.JobID, "idempotencyKey": res.IdempotencyKey,
				})
				return nil
			}
			a.printf("Rolled %s back to %s: new version %s (%s)\n", args[1], res.TargetVersionID, orDash(res.RollbackVersionID), orDash(res.Status))
			if res.PreviewURL != "" {
				a.printf("  preview %s\n", res.PreviewURL)
			}
			a.printf("  idempotency key %s (repeat with --idempotency-key to replay, not redo)\n", res.IdempotencyKey)
			return nil
		}),
	}
	cmd.Flags().StringVar(&key, "idempotency-key", "", "the rollback's idempotency key (default: a fresh one)")
	return cmd
}
