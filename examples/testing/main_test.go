package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"

	sheen "github.com/sheenapps/sheen-go"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// publish asks the service to publish prompt for user, as a client of the
// service would, and decodes the answer into out.
func publish(t *testing.T, worker *sheen.WorkerClient, user, prompt string, out any) int {
	t.Helper()
	rec := httptest.NewRecorder()
	newService(worker).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/publish?user="+user, strings.NewReader(prompt)))
	if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
		t.Fatalf("answer %d %q: %v", rec.Code, rec.Body, err)
	}
	return rec.Code
}

const user = "5b0e6c3a-8f0e-4d3e-9a57-2f1c3f1d7a10"
