// Command proxy is a small web backend whose browser front end talks to the
// worker without ever holding the shared secret. It signs users in with a
// toy session cookie, creates projects on their behalf (so it knows who owns
// which project), and mounts sheenhttp.NewProxy under /api/worker/ for
// everything else the page does: the balance, a build's status, a project's
// versions, exports.
//
// With no environment it starts the in-process fake worker (sheentest), so
//
//	go run ./examples/proxy
//
// works on a fresh machine: open http://localhost:8080 and sign in as alice or
// bob. With WORKER_BASE_URL and WORKER_SHARED_SECRET set it talks to that
// worker instead, and the users' ids come from SHEEN_ALICE_ID and
// SHEEN_BOB_ID.
//
// The session store, the login and the ownership records are toys kept in
// memory; a real backend has its own. What carries over is the shape: the
// proxy asks Authorize who is signed in, and AuthorizeResource whether a
// project or version is theirs.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/examples/internal/demosession"
	"github.com/sheenapps/sheen-go/sheenhttp"
	"github.com/sheenapps/sheen-go/sheentest"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "address to listen on")
	flag.Parse()

	client, users, stop, err := workerClient(os.Stdout, 300*time.Millisecond)
	if err != nil {
		log.Fatal(err)
	}
	defer stop()
	a, err := newApp(client, users)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Addr: *addr, Handler: a, ReadHeaderTimeout: 10 * time.Second}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	go func() {
		<-ctx.Done()
		shutdown, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		_ = srv.Shutdown(shutdown)
	}()
	fmt.Printf("Open http://%s and sign in as alice or bob (Ctrl-C to stop)\n", *addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// workerClient returns a client for the worker in WORKER_BASE_URL, or for a
// fake worker started here (moving builds a step every step), with the
// users the demo signs in as. stop shuts the fake down.
func workerClient(out io.Writer, step time.Duration) (c *sheen.WorkerClient, users map[string]string, stop func(), err error) {
	// The proxy's client waits at most 10 s for rate-limit quota, so a
	// browser request is never held for minutes, and is never retried:
	// the browser decides that.
	opts := []sheen.Option{sheen.WithRetry(sheen.RetryConfig{MaxAttempts: 1, MaxWait: 10 * time.Second})}
	if os.Getenv(sheen.EnvBaseURL) != "" {
		users = map[string]string{"alice": os.Getenv("SHEEN_ALICE_ID"), "bob": os.Getenv("SHEEN_BOB_ID")}
		if users["alice"] == "" || users["bob"] == "" {
			return nil, nil, nil, errors.New("set SHEEN_ALICE_ID and SHEEN_BOB_ID to two user ids of that worker")
		}
		c, err = sheen.NewWorkerClientFromEnv(opts...)
		return c, users, func() {}, err
	}
	users = map[string]string{
		"alice": "7d1f7e52-5b0e-4c7a-9a59-2f2d0f0a6b11",
		"bob":   "0c9a3f1e-2d4b-4e6f-8a1c-3b5d7f9e1a20",
	}
	fake := sheentest.NewServer(sheentest.WithSigning(sheen.SigningDual),
		sheentest.WithBuildPace(sheentest.PaceTimed, step), sheentest.WithRateLimit(6000),
		sheentest.WithUser(users["alice"], 2*time.Hour), sheentest.WithUser(users["bob"], 30*time.Minute))
	fmt.Fprintf(out, "No WORKER_BASE_URL: started the fake worker at %s\n", fake.URL)
	c, err = fake.Client(append(opts, sheen.WithRateLimit(6000))...)
	if err != nil {
		fake.Close()
		return nil, nil, nil, err
	}
	return c, users, fake.Close, nil
}

// app is the web backend: sign-in, the page, project creation, the proxy.
type app struct {
	http.Handler
	*demosession.Store // the toy sign-in: UserID is the proxy's Authorize
	client             *sheen.WorkerClient

	mu       sync.Mutex
	projects map[string]string // project id -> owner's user id
}

func newApp(client *sheen.WorkerClient, users map[string]string) (*app, error) {
	a := &app{Store: demosession.New(users), client: client, projects: map[string]string{}}

	// The browser may use every default route except creating projects,
	// which goes through /app/projects so the app records who owns them.
	var routes []sheenhttp.ProxyRoute
	for _, rt := range sheenhttp.DefaultProxyRoutes() {
		if rt.Pattern != "POST /v1/create-preview-for-new-project" {
			routes = append(routes, rt)
		}
	}
	proxy, err := sheenhttp.NewProxy(client, sheenhttp.ProxyConfig{
		Prefix:            "/api/worker",
		Routes:            routes,
		Authorize:         a.UserID,
		AuthorizeResource: a.owns,
	})
	if err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	mux.Handle("/api/worker/", proxy)
	mux.HandleFunc("GET /{$}", a.page)
	mux.HandleFunc("POST /login", a.Login)
	mux.HandleFunc("POST /logout", a.Logout)
	mux.HandleFunc("GET /app/me", a.Me)
	mux.HandleFunc("POST /app/projects", a.createProject)
	// The app's own forms and JSON endpoints get the same cross-origin
	// protection the proxy gives its POST routes.
	a.Handler = http.NewCrossOriginProtection().Handler(mux)
	return a, nil
}

// owns is the proxy's AuthorizeResource. Projects are the app's own records.
// Versions are looked up in the user's projects (a real app keeps them in
// its database). Builds are checked by the worker itself: every build route
// carries the userId the proxy sets.
func (a *app) owns(r *http.Request, userID string, kind sheenhttp.ResourceKind, id string) error {
	switch kind {
	case sheenhttp.ResourceProject:
		a.mu.Lock()
		owner, ok := a.projects[id]
		a.mu.Unlock()
		if !ok {
			return sheen.ErrNotFound
		}
		if owner != userID {
			return errors.New("not the user's project")
		}
		return nil
	case sheenhttp.ResourceVersion:
		for _, pid := range a.projectsOf(userID) {
			for v, err := range a.client.Builds.Versions(r.Context(), pid, "") {
				if err != nil {
					return err
				}
				if v.ID == id {
					return nil
				}
			}
		}
		return errors.New("not the user's version")
	case sheenhttp.ResourceBuild:
		return nil
	}
	return fmt.Errorf("unknown resource kind %q", kind)
}

func (a *app) projectsOf(userID string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ids []string
	for id, owner := range a.projects {
		if owner == userID {
			ids = append(ids, id)
		}
	}
	return ids
}

// createProject starts a build for a new project of the signed-in user and
// records the project as theirs.
func (a *app) createProject(w http.ResponseWriter, r *http.Request) {
	name := a.Name(r)
	if name == "" {
		demosession.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "Sign in to continue", "code": "UNAUTHORIZED"})
		return
	}
	var in struct {
		Prompt string `json:"prompt"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&in); err != nil || in.Prompt == "" {
		demosession.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "Send {\"prompt\": \"...\"}", "code": "BAD_REQUEST"})
		return
	}
	userID := a.UserOf(name)
	b, err := a.client.Builds.CreatePreview(r.Context(), sheen.CreatePreviewRequest{UserID: userID, Prompt: in.Prompt, Framework: sheen.FrameworkReact})
	var short *sheen.InsufficientBalanceError
	switch {
	case errors.As(err, &short):
		demosession.WriteJSON(w, http.StatusPaymentRequired, map[string]string{"error": "Not enough AI time for a build", "code": string(sheen.CodeInsufficientAITime)})
		return
	case err != nil:
		log.Printf("create project: %v", err)
		demosession.WriteJSON(w, http.StatusBadGateway, map[string]string{"error": "The build could not be started", "code": "BUILD_NOT_STARTED"})
		return
	}
	a.mu.Lock()
	a.projects[b.ProjectID] = userID
	a.mu.Unlock()
	demosession.WriteJSON(w, http.StatusOK, map[string]string{"projectId": b.ProjectID, "buildId": b.ID})
}

func (a *app) page(w http.ResponseWriter, r *http.Request) {
	name := a.Name(r)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = pageTemplate.Execute(w, map[string]string{"Name": name, "UserID": a.UserOf(name)})
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>sheen-go proxy demo</title>
<style>body{font:16px system-ui;max-width:42rem;margin:2rem auto}pre{background:#f4f4f4;padding:1rem;white-space:pre-wrap}</style>
<h1>Worker proxy demo</h1>
{{if .Name}}
<form method="post" action="/logout">Signed in as <b>{{.Name}}</b> <button>Sign out</button></form>
<p>Balance: <span id="balance">…</span></p>
<form id="build"><input name="prompt" size="50" value="A landing page for a neighbourhood bakery"> <button>Build it</button></form>
<p><button id="peek">Try to read the other user's balance</button></p>
<pre id="log"></pre>
<script>
const me = {{.UserID}};
const log = m => document.getElementById('log').textContent += m + '\n';
// Every worker call goes through the proxy: no secret in the browser.
async function api(path, init) {
  const r = await fetch('/api/worker' + path, {headers: {'Content-Type': 'application/json'}, ...init});
  const body = await r.json().catch(() => ({}));
  return {status: r.status, body};
}
async function balance() {
  const {body} = await api('/v1/billing/balance/' + encodeURIComponent(me));
  const secs = Number(body.totals ? body.totals.total_seconds : body.balance ? body.balance.total : 0);
  document.getElementById('balance').textContent = Math.round(secs / 60) + ' minutes of AI time';
}
document.getElementById('build').onsubmit = async e => {
  e.preventDefault();
  const r = await fetch('/app/projects', {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({prompt: e.target.prompt.value})});
  const p = await r.json();
  if (!r.ok) { log('build refused: ' + r.status + ' ' + p.code); return; }
  log('build ' + p.buildId + ' started for project ' + p.projectId);
  for (;;) {
    const {body: s} = await api('/v1/builds/' + p.buildId + '/status');
    log(s.status + ' ' + s.progress + '%');
    if (s.finished || s.status === 'failed') break;
    await new Promise(ok => setTimeout(ok, 1000));
  }
  const {status, body: x} = await api('/v1/projects/' + p.projectId + '/export');
  log(status === 200 ? 'download link ready: ' + x.filename : 'export: ' + status + ' ' + (x.code || x.error));
  balance();
};
document.getElementById('peek').onclick = async () => {
  const {status, body} = await api('/v1/billing/balance/someone-else');
  log('other balance: ' + status + ' ' + body.code);
};
balance();
</script>
{{else}}
<form method="post" action="/login">
  <button name="user" value="alice">Sign in as alice</button>
  <button name="user" value="bob">Sign in as bob</button>
</form>
{{end}}
</html>
`))
