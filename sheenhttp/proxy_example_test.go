package sheenhttp_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/sheenapps/sheen-go/sheenhttp"
	"github.com/sheenapps/sheen-go/sheentest"
)

// A web backend mounts the proxy under /api/worker/ so its browser front end
// can call the worker as the signed-in user, and only as that user.
func ExampleNewProxy() {
	worker := sheentest.NewServer(sheentest.WithUser("user-123", time.Hour))
	defer worker.Close()
	client, err := worker.Client()
	if err != nil {
		log.Fatal(err)
	}

	sessions := map[string]string{"s3cr3t-session": "user-123"} // your session store
	proxy, err := sheenhttp.NewProxy(client, sheenhttp.ProxyConfig{
		Prefix: "/api/worker",
		Authorize: func(r *http.Request) (string, error) {
			c, err := r.Cookie("session")
			if err != nil || sessions[c.Value] == "" {
				return "", errors.New("not signed in")
			}
			return sessions[c.Value], nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/worker/", proxy)
	app := httptest.NewServer(mux)
	defer app.Close()

	// What the browser's fetch calls do.
	call := func(method, path, body string) {
		req, _ := http.NewRequest(method, app.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.AddCookie(&http.Cookie{Name: "session", Value: "s3cr3t-session"})
		resp, err := app.Client().Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Code       string `json:"code"`
			Sufficient *bool  `json:"sufficient"`
			Totals     *struct {
				Seconds json.Number `json:"total_seconds"` // the worker may send "3600"
			} `json:"totals"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		switch {
		case out.Totals != nil:
			fmt.Println(resp.StatusCode, "balance:", out.Totals.Seconds, "s")
		case out.Sufficient != nil:
			fmt.Println(resp.StatusCode, "sufficient:", *out.Sufficient)
		default:
			fmt.Println(resp.StatusCode, out.Code)
		}
	}
	call("GET", "/api/worker/v1/billing/balance/user-123", "")
	// No userId in the body: the proxy fills in the signed-in user.
	call("POST", "/api/worker/v1/billing/check-sufficient", `{"operationType":"main_build","projectSize":"small","isUpdate":false}`)
	call("GET", "/api/worker/v1/billing/balance/user-456", "")
	call("POST", "/api/worker/v1/billing/check-sufficient", `{"userId":"user-456","operationType":"main_build"}`)
	call("GET", "/api/worker/v1/admin/users", "")
	fmt.Println("requests that reached the worker:", len(worker.Requests()))
	// Output:
	// 200 balance: 3600 s
	// 200 sufficient: true
	// 403 FORBIDDEN
	// 403 FORBIDDEN
	// 404 NOT_FOUND
	// requests that reached the worker: 2
}
