package sheen_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

// A prompt run on a project by the worker's model, and, once the worker's
// hourly budget is spent (here after one call), by a fallback model; the
// result says which one answered.
func ExampleAIService_Generate() {
	srv := sheentest.NewServer(sheentest.WithSigning(sheen.SigningDual),
		sheentest.WithProjectFolder("u1", "p1"), sheentest.WithGenerateBudget(1))
	defer srv.Close()

	// In production: sheen.NewWorkerClientFromEnv, with CLAUDE_WORKER_URL
	// and CLAUDE_SHARED_SECRET when the endpoint has its own.
	client, err := srv.Client(sheen.WithGenerate(sheen.GenerateConfig{Fallback: func(ctx context.Context, req sheen.GenerateRequest) (string, error) {
		return "(another model) " + req.Prompt, nil
	}}))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for _, prompt := range []string{"Add a dark mode toggle", "Add a contact form"} {
		res, err := client.AI.Generate(ctx, sheen.GenerateRequest{UserID: "u1", ProjectID: "p1", Prompt: prompt})
		var ge *sheen.GenerateError
		switch {
		case errors.As(err, &ge):
			fmt.Println("the run failed:", ge.Message)
		case errors.Is(err, sheen.ErrOutcomeUnknown):
			fmt.Println("the model may have run: check the project before trying again")
		case err != nil:
			log.Fatal(err)
		case res.Fallback:
			fmt.Printf("fallback: %s (%v)\n", res.Output, errors.Is(res.FallbackCause, sheen.ErrRateLimited))
		default:
			fmt.Printf("worker: %s\n", res.Output)
		}
	}
	fmt.Println("refusals in 5 minutes:", client.AI.RateLimitRefusals().Count)
	// Output:
	// worker: Done: Add a dark mode toggle
	// fallback: (another model) Add a contact form (true)
	// refusals in 5 minutes: 1
}
