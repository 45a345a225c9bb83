package main

import (
	"context"
	"strings"

	"github.com/spf13/cobra"

	sheen "github.com/sheenapps/sheen-go"
)

func (a *app) generateCommand() *cobra.Command {
	var prompt string
	cmd := &cobra.Command{
		Use:   "generate USER PROJECT --prompt TEXT",
		Short: "Run a prompt on a project with the worker's model",
		Long: `Run a prompt on PROJECT's working folder with the worker's model and print
its output. It costs AI time and changes files, so it is never sent twice:
a failure after the worker may have started it exits 9 (outcome unknown),
a run the worker reports as failed exits 10.`,
		GroupID: groupBuilds,
		Args:    exactArgs("USER", "PROJECT"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			res, err := c.AI.Generate(ctx, sheen.GenerateRequest{UserID: args[0], ProjectID: args[1], Prompt: prompt})
			if err != nil {
				return err
			}
			if a.json {
				a.writeJSON(map[string]any{
					"userId": args[0], "projectId": args[1], "fallback": res.Fallback, "output": res.Output, "correlationId": res.CorrelationID,
				})
				return nil
			}
			out := res.Output
			if !strings.HasSuffix(out, "\n") {
				out += "\n"
			}
			a.printf("%s", out)
			return nil
		}),
	}
	cmd.Flags().StringVar(&prompt, "prompt", "", "what the model is asked to do (required)")
	_ = cmd.MarkFlagRequired("prompt")
	return cmd
}
