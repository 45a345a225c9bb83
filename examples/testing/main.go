// Command testing is a small service written against the SDK, to show how
// such a service is unit-tested: main_test.go's helpers, then the same tests
// twice, once against sheentest's fake worker (sheentest_test.go) and once
// with httpmock and sheentest's golden fixtures (httpmock_test.go).
//
// The service publishes sites: POST /publish?user=<id> with a prompt as the
// body builds a site for that user, follows the build to its end, downloads
// the archive and answers with what was published. A user short of AI time
// gets 402 with what is missing; a failed build gets 422 with the worker's
// message for the user.
//
// With no environment it starts the in-process fake worker (sheentest), so
//
//	go run ./examples/testing
//
// works on a fresh machine: it publishes three times through its own HTTP
// endpoint and prints the answers (a site published, a user short of AI
// time, a failed build), then serves until Ctrl-C (-once: exits instead).
// With WORKER_BASE_URL and WORKER_SHARED_SECRET set it talks to that worker:
//
//	WORKER_BASE_URL=... WORKER_SHARED_SECRET=... go run ./examples/testing -addr :8080
//	curl -d 'A landing page for a bakery' 'localhost:8080/publish?user=<id>'
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "address to listen on")
	once := flag.Bool("once", false, "with the fake worker: print the demo's answers and exit instead of serving")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, *addr, *once); err != nil {
		log.Print(err)
		stop()
		os.Exit(1)
	}
}

// The fake worker's demo users.
const (
	richUser  = "7d1f7e52-5b0e-4c7a-9a59-2f2d0f0a6b11" // two hours of AI time
	shortUser = "0c9a3f1e-2d4b-4e6f-8a1c-3b5d7f9e1a20" // 30 seconds: a build asks for more
)

// run serves the service on addr until ctx ends. With no worker configured
// it starts the fake one and first publishes through the service's own
// endpoint, printing the answers; once returns after that.
func run(ctx context.Context, out io.Writer, addr string, once bool) error {
	worker, fake, err := newWorker(out)
	if err != nil {
		return err
	}
	if fake != nil {
		defer fake.Close()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: newService(worker), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		shutdown, done := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer done()
		_ = srv.Shutdown(shutdown)
		<-served // Serve has returned: nothing of the server outlives run
	}()
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(out, "Publishing through %s on %s/publish\n", worker.BaseURL(), base)
	if fake != nil {
		if err := demo(ctx, out, base, fake); err != nil {
			return err
		}
		if once {
			return nil
		}
		fmt.Fprintf(out, "\nTry it (Ctrl-C to stop):\n  curl -d 'A landing page for a bakery' '%s/publish?user=%s'\n", base, richUser)
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-served:
		served <- err // for the deferred shutdown
		return err
	}
}

// newWorker is a client for the worker in WORKER_BASE_URL and
// WORKER_SHARED_SECRET or, when both are unset, for a fake worker started
// here (signing like the deployed worker), which the caller closes.
func newWorker(out io.Writer) (*sheen.WorkerClient, *sheentest.Server, error) {
	if os.Getenv(sheen.EnvBaseURL) != "" || os.Getenv(sheen.EnvSecret) != "" {
		c, err := sheen.NewWorkerClientFromEnv()
		return c, nil, err
	}
	fake := sheentest.NewServer(sheentest.WithSigning(sheen.SigningDual),
		sheentest.WithUser(richUser, 2*time.Hour), sheentest.WithUser(shortUser, 30*time.Second))
	fmt.Fprintf(out, "No WORKER_BASE_URL or WORKER_SHARED_SECRET: started the fake worker at %s\n", fake.URL)
	c, err := fake.Client()
	if err != nil {
		fake.Close()
		return nil, nil, err
	}
	return c, fake, nil
}

// demo publishes through the service's endpoint at base as a client of the
// service would, once for each answer it gives, and prints the answers.
func demo(ctx context.Context, out io.Writer, base string, fake *sheentest.Server) error {
	hc := &http.Client{Transport: &http.Transport{}, Timeout: time.Minute}
	defer hc.CloseIdleConnections()
	for _, step := range []struct {
		what, user string
		before     func()
	}{
		{what: "a user with two hours of AI time", user: richUser},
		{what: "a user with 30 s of AI time", user: shortUser},
		{what: "a build the worker fails", user: richUser, before: func() { fake.FailNextBuild("BUILD_FAILED", "Module not found: ./Menu") }},
	} {
		if step.before != nil {
			step.before()
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/publish?user="+url.QueryEscape(step.user), strings.NewReader("A landing page for a bakery"))
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("publish for %s: %w", step.what, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("publish for %s: %w", step.what, err)
		}
		fmt.Fprintf(out, "\nPOST /publish for %s:\n  %d %s\n  %s\n", step.what, resp.StatusCode, http.StatusText(resp.StatusCode), strings.TrimSpace(string(body)))
	}
	return nil
}

// service publishes sites through the worker.
type service struct {
	worker *sheen.WorkerClient
	mux    *http.ServeMux
}

func newService(worker *sheen.WorkerClient) *service {
	s := &service{worker: worker, mux: http.NewServeMux()}
	s.mux.HandleFunc("POST /publish", s.handlePublish)
	return s
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// published is the service's answer.
type published struct {
	ProjectID    string `json:"projectId"`
	VersionID    string `json:"versionId"`
	PreviewURL   string `json:"previewUrl"`
	ArchiveBytes int64  `json:"archiveBytes"`
	Format       string `json:"format"`
	SHA256       string `json:"sha256"`
}

// shortOfTime is the answer when the user cannot afford the build.
type shortOfTime struct {
	Error     string `json:"error"`
	Available string `json:"available"`
	Required  string `json:"required"`
	BuyFirst  string `json:"buyFirst,omitempty"`
}

func (s *service) handlePublish(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	prompt, err := io.ReadAll(io.LimitReader(r.Body, 8<<10))
	if user == "" || len(prompt) == 0 || err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want ?user=<id> and a prompt as the body"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Minute)
	defer cancel()
	out, err := s.publish(ctx, user, string(prompt))
	var short *sheen.InsufficientBalanceError
	var failed *sheen.BuildFailedError
	switch {
	case errors.As(err, &short):
		ans := shortOfTime{Error: "not enough AI time", Available: short.Available.String(), Required: short.Required.String()}
		for _, sug := range short.Suggestions {
			if sug.Type == "package" {
				ans.BuyFirst = sug.Key
				break
			}
		}
		writeJSON(w, http.StatusPaymentRequired, ans)
	case errors.As(err, &failed):
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": failed.Message, "code": failed.Code})
	case err != nil:
		log.Printf("publish for %s: %v", user, err) // SDK errors never carry the secret or a signed URL
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "the build service is unavailable"})
	default:
		writeJSON(w, http.StatusOK, out)
	}
}

// publish is the job itself: build, follow, export, download.
func (s *service) publish(ctx context.Context, user, prompt string) (*published, error) {
	build, err := s.worker.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: user, Prompt: prompt})
	if err != nil {
		return nil, err
	}
	res, err := s.worker.Builds.Wait(ctx, build.ID, user, nil)
	if err != nil {
		return nil, err
	}
	link, err := s.worker.Exports.ProjectLink(ctx, build.ProjectID, user)
	if err != nil {
		return nil, err
	}
	sum := sha256.New()
	dl, err := s.worker.Exports.Download(ctx, link, sum, nil)
	if err != nil {
		return nil, err
	}
	return &published{
		ProjectID: build.ProjectID, VersionID: res.VersionID, PreviewURL: res.PreviewURL,
		ArchiveBytes: dl.Written, Format: string(dl.Format), SHA256: hex.EncodeToString(sum.Sum(nil)),
	}, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
