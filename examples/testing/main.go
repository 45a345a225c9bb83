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
	"io"
	"log"
	"net/http"
	"time"

	sheen "github.com/sheenapps/sheen-go"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "address to listen on")
	flag.Parse()
	worker, err := sheen.NewWorkerClientFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("publishing through %s on http://%s/publish", worker.BaseURL(), *addr)
	srv := &http.Server{Addr: *addr, Handler: newService(worker), ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
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
