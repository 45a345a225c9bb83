package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheentest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// user is one signed-in (or not) visitor of the app, without a browser.
type user struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newUser(t *testing.T, front *httptest.Server, name string) *user {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Transport: front.Client().Transport, Jar: jar} // a jar of its own
	u := &user{t: t, base: front.URL, hc: hc}
	if name != "" {
		resp, err := hc.PostForm(front.URL+"/login", url.Values{"user": {name}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	return u
}

func (u *user) do(method, path, body string) (*http.Response, []byte) {
	u.t.Helper()
	req, _ := http.NewRequest(method, u.base+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := u.hc.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

// events reads a build's stream to its end and returns its blocks.
func (u *user) events(buildID string) (int, []string) {
	u.t.Helper()
	resp, err := u.hc.Get(u.base + "/app/builds/" + buildID + "/events")
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	var blocks []string
	var cur strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if sc.Text() == "" {
			blocks = append(blocks, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(sc.Text() + "\n")
	}
	return resp.StatusCode, blocks
}

// Without a browser: what the page does, as HTTP requests. The page is
// served; the stream and the proxy serve only the signed-in user, and only
// their own builds; a build's stream runs from its first event to its end;
// a user without AI time gets the 402 with suggestions.
func TestWebappAgainstFakeWorker(t *testing.T) {
	w, a := newTestApp(t, sheentest.PaceInstant)
	front := httptest.NewServer(a)
	defer front.Close()

	nobody, alice, bob := newUser(t, front, ""), newUser(t, front, "alice"), newUser(t, front, "bob")
	if resp, body := nobody.do("GET", "/", ""); resp.StatusCode != 200 || !strings.Contains(string(body), "new EventSource(") {
		t.Errorf("page: %d", resp.StatusCode)
	}
	if resp, _ := nobody.do("GET", "/app/me", ""); resp.StatusCode != 401 {
		t.Errorf("me signed out: %d", resp.StatusCode)
	}

	resp, body := alice.do("POST", "/api/worker/v1/create-preview-for-new-project", `{"prompt":"A bakery","framework":"react"}`)
	var build struct{ BuildID, ProjectID string }
	if err := json.Unmarshal(body, &build); resp.StatusCode != 200 || err != nil || build.BuildID == "" {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	if st, _ := nobody.events(build.BuildID); st != 401 {
		t.Errorf("stream signed out: %d", st)
	}
	if st, _ := bob.events(build.BuildID); st != 404 {
		t.Errorf("bob streaming alice's build: %d", st)
	}
	st, blocks := alice.events(build.BuildID)
	if st != 200 || len(blocks) != 10 || !strings.HasPrefix(blocks[0], "retry: ") ||
		!strings.HasPrefix(blocks[1], "id: 1\n") || !strings.HasPrefix(blocks[9], "event: end\ndata: {\"status\":\"deployed\"") {
		t.Errorf("alice's stream: %d %q", st, blocks)
	}
	if resp, _ := alice.do("GET", "/api/worker/v1/projects/"+build.ProjectID+"/export", ""); resp.StatusCode != 200 {
		t.Errorf("export: %d", resp.StatusCode)
	}
	if resp, _ := bob.do("GET", "/api/worker/v1/projects/"+build.ProjectID+"/export", ""); resp.StatusCode != 404 {
		t.Errorf("bob exporting alice's project: %d", resp.StatusCode)
	}
	// Routes the page does not use are not served.
	if resp, _ := alice.do("GET", "/api/worker/v1/billing/usage/"+w.users["alice"], ""); resp.StatusCode != 404 {
		t.Errorf("usage through the proxy: %d", resp.StatusCode)
	}

	// Bob has a minute of AI time: the check before a build says so.
	resp, body = bob.do("POST", "/api/worker/v1/billing/check-sufficient", `{"operationType":"main_build","projectSize":"small","isUpdate":false}`)
	if resp.StatusCode != 402 || !strings.Contains(string(body), `"suggestions":[`) {
		t.Errorf("bob's check: %d %s", resp.StatusCode, body)
	}
}

// After Ctrl-C, serve ends the build streams but lets a request under way
// (a proxied POST) finish, and returns only once it has, with the stream
// closed. A request that outlasts the grace period is cut, and serve says
// so.
func TestServeShutsDownGracefully(t *testing.T) {
	t.Setenv(sheen.EnvBaseURL, "")
	for _, outlasts := range []bool{false, true} {
		t.Run(map[bool]string{false: "within grace", true: "outlasting grace"}[outlasts], func(t *testing.T) {
			_, a := newTestApp(t, sheentest.PaceInstant)
			srv := newServer(a)
			entered, release := make(chan struct{}), make(chan struct{})
			defer func() {
				select {
				case <-release:
				default:
					close(release)
				}
			}()
			srv.Handler = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/slow" { // a request under way when the signal comes
					close(entered)
					<-release
					_, _ = io.WriteString(rw, "done")
					return
				}
				a.ServeHTTP(rw, r)
			})
			shuttingDown := make(chan struct{})
			srv.RegisterOnShutdown(func() { close(shuttingDown) })
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			grace := time.Minute
			if outlasts {
				grace = time.Millisecond
			}
			served := make(chan error, 1)
			go func() { served <- serve(ctx, srv, ln, a.stream, grace) }()

			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			type answer struct {
				status int
				body   string
				err    error
			}
			slow := make(chan answer, 1)
			go func() {
				resp, err := client.Get("http://" + ln.Addr().String() + "/slow")
				if err != nil {
					slow <- answer{err: err}
					return
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				slow <- answer{resp.StatusCode, string(b), err}
			}()
			<-entered
			cancel() // Ctrl-C
			<-shuttingDown
			if outlasts {
				// The request is still held: serve gives up on it after grace.
				if err := <-served; err == nil || !strings.Contains(err.Error(), "cut") {
					t.Errorf("serve: %v; want an error that says requests were cut", err)
				}
				if got := <-slow; got.err == nil {
					t.Errorf("the cut request got %d %q and no error", got.status, got.body)
				}
			} else {
				select {
				case err := <-served:
					t.Fatalf("serve returned (%v) while a request was under way", err)
				default:
				}
				close(release)
				if got := <-slow; got.err != nil || got.status != http.StatusOK || got.body != "done" {
					t.Errorf("the request under way got %d %q, %v; want it answered whole", got.status, got.body, got.err)
				}
				if err := <-served; err != nil {
					t.Errorf("serve: %v", err)
				}
			}
			// The stream is closed: it refuses new browsers.
			rec := httptest.NewRecorder()
			a.stream.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/app/builds/b1/events", nil))
			if rec.Code != http.StatusServiceUnavailable {
				t.Errorf("the stream after serve returned: %d, want 503", rec.Code)
			}
		})
	}
}

// newTestApp is the web app over the embedded fake worker at pace, both
// closed when the test ends (the app's build stream first).
func newTestApp(t *testing.T, pace sheentest.BuildPace) (*worker, *app) {
	t.Helper()
	t.Setenv(sheen.EnvBaseURL, "")
	w, err := newWorker(io.Discard, pace, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.close)
	a, err := newApp(w)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.stream.Close)
	return w, a
}
