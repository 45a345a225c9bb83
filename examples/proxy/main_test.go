package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	sheen "github.com/sheenapps/sheen-go"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// browser is a test's stand-in for one user's browser: a cookie jar and the
// app's address.
type browser struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newBrowser(t *testing.T, front *httptest.Server) *browser {
	jar, _ := cookiejar.New(nil)
	hc := *front.Client() // a copy: Client returns one shared client, and each browser has its own cookies
	hc.Jar = jar
	return &browser{t: t, base: front.URL, hc: &hc}
}

// call sends a request and returns the status and the JSON body.
func (b *browser) call(method, path, body string, header ...string) (int, map[string]any) {
	b.t.Helper()
	req, err := http.NewRequest(method, b.base+path, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

func (b *browser) login(name string) {
	b.t.Helper()
	resp, err := b.hc.PostForm(b.base+"/login", url.Values{"user": {name}})
	if err != nil {
		b.t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "Signed in as <b>"+name+"</b>") {
		b.t.Fatalf("login as %s: %d\n%s", name, resp.StatusCode, page)
	}
}

// The demo runs against the fake worker when WORKER_BASE_URL is unset, as
// `go run ./examples/proxy` does: a signed-in user reads their balance,
// builds a project and follows and exports it through the proxy; the other
// user can touch none of it; signed out, nothing passes.
func TestProxyDemoAgainstFakeWorker(t *testing.T) {
	t.Setenv(sheen.EnvBaseURL, "")
	client, users, stop, err := workerClient(io.Discard, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	a, err := newApp(client, users)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(a)
	defer front.Close()

	alice, bob, nobody := newBrowser(t, front), newBrowser(t, front), newBrowser(t, front)
	aliceBalance := "/api/worker/v1/billing/balance/" + users["alice"]
	if st, m := nobody.call("GET", aliceBalance, ""); st != 401 || m["code"] != "UNAUTHORIZED" {
		t.Errorf("signed out: %d %v", st, m)
	}

	alice.login("alice")
	if st, m := alice.call("GET", "/app/me", ""); st != 200 || m["userId"] != users["alice"] {
		t.Fatalf("me: %d %v", st, m)
	}
	if st, m := alice.call("GET", aliceBalance, ""); st != 200 || m["totals"] == nil {
		t.Errorf("balance: %d %v", st, m)
	}
	st, p := alice.call("POST", "/app/projects", `{"prompt":"A landing page for a bakery"}`)
	if st != 200 {
		t.Fatalf("create project: %d %v", st, p)
	}
	projectID, buildID := p["projectId"].(string), p["buildId"].(string)
	deadline := time.Now().Add(30 * time.Second) // a safety net, not a timing assertion
	for {
		st, s := alice.call("GET", "/api/worker/v1/builds/"+buildID+"/status", "")
		if st != 200 {
			t.Fatalf("status: %d %v", st, s)
		}
		if s["finished"] == true {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the build did not finish: %v", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	st, v := alice.call("GET", "/api/worker/v1/projects/"+projectID+"/versions", "")
	versions, _ := v["versions"].([]any)
	if st != 200 || len(versions) != 1 {
		t.Fatalf("versions: %d %v", st, v)
	}
	versionID := versions[0].(map[string]any)["id"].(string)
	if st, x := alice.call("GET", "/api/worker/v1/projects/"+projectID+"/export", ""); st != 200 || x["downloadUrl"] == nil {
		t.Errorf("export: %d %v", st, x)
	}
	if st, x := alice.call("GET", "/api/worker/v1/versions/"+versionID+"/download", ""); st != 200 || x["downloadUrl"] == nil {
		t.Errorf("version download: %d %v", st, x)
	}

	bob.login("bob")
	for _, c := range []struct{ method, path, body string }{
		{"GET", aliceBalance, ""},
		{"GET", "/api/worker/v1/projects/" + projectID + "/versions", ""},
		{"GET", "/api/worker/v1/versions/" + versionID + "/download", ""},
		{"POST", "/api/worker/v1/versions/" + versionID + "/rebuild", ""},
		{"POST", "/api/worker/v1/update-project", `{"projectId":"` + projectID + `","prompt":"Make it mine"}`},
		{"GET", "/api/worker/v1/billing/events/" + users["bob"] + "?userId=" + users["alice"], ""},
	} {
		if st, m := bob.call(c.method, c.path, c.body); st != 403 || m["code"] != "FORBIDDEN" {
			t.Errorf("bob: %s %s: %d %v", c.method, c.path, st, m)
		}
	}
	// The worker checks builds against the userId the proxy sets.
	if st, _ := bob.call("GET", "/api/worker/v1/builds/"+buildID+"/status", ""); st != 404 {
		t.Errorf("bob reading alice's build: %d", st)
	}
	// Projects are created through the app, not the proxy.
	if st, _ := bob.call("POST", "/api/worker/v1/create-preview-for-new-project", `{"prompt":"x"}`); st != 404 {
		t.Errorf("create-preview through the proxy: %d", st)
	}
	// The app's own POSTs refuse cross-site requests too.
	if st, _ := bob.call("POST", "/app/projects", `{"prompt":"x"}`, "Sec-Fetch-Site", "cross-site"); st != 403 {
		t.Errorf("cross-site project creation: %d", st)
	}

	resp, err := alice.hc.PostForm(front.URL+"/logout", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if st, _ := alice.call("GET", aliceBalance, ""); st != 401 {
		t.Errorf("after logout: %d", st)
	}
}
