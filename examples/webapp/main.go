// Command webapp is a small web product on top of sheen-go: a user signs in,
// sees their AI-time balance, types a prompt, presses Build and watches the
// build live (a progress bar and the phases as they happen), opens the
// preview, and downloads the project. When their AI time runs out, the page
// says so plainly and lists what they can buy.
//
// The browser never holds the worker's secret. It talks to two handlers of
// this server:
//
//   - sheenhttp.NewProxy under /api/worker/ for the balance, the balance check
//     before a build, starting the build and the export link, each signed
//     by the server for the signed-in user only;
//   - sheenhttp.NewBuildStream at /app/builds/{buildId}/events, the build's
//     events as Server-Sent Events, which the page reads with EventSource
//     (and which resumes by itself after a dropped connection).
//
// With no environment it starts the in-process fake worker (sheentest),
// whose builds take a step every 700 ms, so
//
//	go run ./examples/webapp
//
// works on a fresh machine: open the URL it prints and sign in as alice (two
// hours of AI time) or bob (one minute: his first build asks him to add AI
// time). With WORKER_BASE_URL and WORKER_SHARED_SECRET set it talks to that
// worker, with users SHEEN_ALICE_ID and SHEEN_BOB_ID.
//
// The page is plain HTML and JavaScript (static/index.html, embedded), with
// no build step. The sign-in, the sessions and the users are toys kept in
// memory, as in examples/proxy; a real backend has its own.
package main

import (
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/examples/internal/demosession"
	"github.com/sheenapps/sheen-go/sheenhttp"
	"github.com/sheenapps/sheen-go/sheentest"
)

//go:embed static
var static embed.FS

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	flag.Parse()

	w, err := newWorker(os.Stdout, sheentest.PaceTimed, 700*time.Millisecond)
	if err != nil {
		return err
	}
	defer w.close()
	a, err := newApp(w)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	fmt.Printf("Open http://%s and sign in as alice or bob (Ctrl-C to stop)\n", ln.Addr())
	return serve(ctx, newServer(a), ln, a.stream, 5*time.Second)
}

// newServer is the app's HTTP server. Shutdown waits for connections to go
// idle, and a build stream is never idle: the streams are ended first
// (browsers reconnect, to another instance during a deploy).
func newServer(a *app) *http.Server {
	srv := &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(a.stream.Close)
	return srv
}

// serve serves on ln until ctx ends (Ctrl-C), then shuts down gracefully:
// it stops accepting, ends the build streams, lets the requests under way
// (a proxied POST that starts a build) finish for up to grace, closes what
// is left after that, and returns once the streams' upstream readers have
// stopped. The error is Serve's when it fails, or says that requests were
// cut when grace ran out.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, stream *sheenhttp.BuildStream, grace time.Duration) error {
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served: // Serve failed before any shutdown
		stream.Close()
		return err
	case <-ctx.Done():
	}
	shutdown, done := context.WithTimeout(context.Background(), grace)
	defer done()
	err := srv.Shutdown(shutdown) // also starts stream.Close (RegisterOnShutdown), without waiting for it
	if err != nil {
		err = fmt.Errorf("requests still under way after %s were cut: %w", grace, errors.Join(err, srv.Close()))
	}
	stream.Close() // waits for the upstream readers to stop
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// worker is the worker the app talks to, with two clients: the proxy's,
// which never retries (the browser decides) and waits at most 10 s for
// rate-limit quota, and the build stream's, with the SDK's retries, so a
// passing failure does not cut every browser's stream.
type worker struct {
	proxy, stream *sheen.WorkerClient
	users         map[string]string // login name -> worker user id
	fake          *sheentest.Server // nil for a real worker
	close         func()
}

// newWorker connects to the worker in WORKER_BASE_URL, or starts a fake one
// whose builds move at pace (a step every step for sheentest.PaceTimed).
func newWorker(out io.Writer, pace sheentest.BuildPace, step time.Duration) (*worker, error) {
	proxyOpts := []sheen.Option{sheen.WithRetry(sheen.RetryConfig{MaxAttempts: 1, MaxWait: 10 * time.Second})}
	if os.Getenv(sheen.EnvBaseURL) != "" {
		w := &worker{users: map[string]string{"alice": os.Getenv("SHEEN_ALICE_ID"), "bob": os.Getenv("SHEEN_BOB_ID")}, close: func() {}}
		if w.users["alice"] == "" || w.users["bob"] == "" {
			return nil, errors.New("set SHEEN_ALICE_ID and SHEEN_BOB_ID to two user ids of that worker")
		}
		var err error
		if w.proxy, err = sheen.NewWorkerClientFromEnv(proxyOpts...); err != nil {
			return nil, err
		}
		w.stream, err = sheen.NewWorkerClientFromEnv()
		return w, err
	}
	users := map[string]string{
		"alice": "7d1f7e52-5b0e-4c7a-9a59-2f2d0f0a6b11",
		"bob":   "0c9a3f1e-2d4b-4e6f-8a1c-3b5d7f9e1a20",
	}
	fake := sheentest.NewServer(sheentest.WithSigning(sheen.SigningDual),
		sheentest.WithBuildPace(pace, step), sheentest.WithRateLimit(6000),
		sheentest.WithUser(users["alice"], 2*time.Hour), sheentest.WithUser(users["bob"], time.Minute))
	fmt.Fprintf(out, "No WORKER_BASE_URL: started the fake worker at %s\n", fake.URL)
	w := &worker{users: users, fake: fake, close: fake.Close}
	var err error
	if w.proxy, err = fake.Client(append(proxyOpts, sheen.WithRateLimit(6000))...); err == nil {
		w.stream, err = fake.Client()
	}
	if err != nil {
		fake.Close()
		return nil, err
	}
	return w, nil
}

// app is the web backend: sign-in, the page, the proxy, the build stream.
type app struct {
	http.Handler
	*demosession.Store // the toy sign-in: UserID is the proxy's and the stream's Authorize
	stream             *sheenhttp.BuildStream
}

// proxyRoutes are the worker routes the page uses, and no others.
var proxyRoutes = map[string]bool{
	sheen.RouteBalance:         true,
	sheen.RouteCheckSufficient: true,
	sheen.RouteCreatePreview:   true,
	sheen.RouteExportProject:   true,
}

func newApp(w *worker) (*app, error) {
	a := &app{Store: demosession.New(w.users)}
	var routes []sheenhttp.ProxyRoute
	for _, rt := range sheenhttp.DefaultProxyRoutes() {
		if proxyRoutes[rt.Pattern] {
			routes = append(routes, rt)
		}
	}
	// Every route the page uses carries the user id, which the proxy sets
	// to the signed-in user and the worker checks against the project or
	// build: no AuthorizeResource is needed.
	proxy, err := sheenhttp.NewProxy(w.proxy, sheenhttp.ProxyConfig{Prefix: "/api/worker", Routes: routes, Authorize: a.UserID})
	if err != nil {
		return nil, err
	}
	// The stream reads a build's events for the signed-in user only: the
	// worker answers 404 for another user's build.
	if a.stream, err = sheenhttp.NewBuildStream(w.stream, sheenhttp.BuildStreamConfig{Authorize: a.UserID}); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/api/worker/", proxy)
	mux.Handle("GET /app/builds/{buildId}/events", a.stream)
	mux.HandleFunc("GET /app/me", a.Me)
	mux.HandleFunc("POST /login", a.Login)
	mux.HandleFunc("POST /logout", a.Logout)
	mux.HandleFunc("GET /{$}", servePage)
	// The app's own forms get the cross-origin protection the proxy gives
	// its POST routes.
	a.Handler = http.NewCrossOriginProtection().Handler(mux)
	return a, nil
}

// servePage serves the page: plain HTML and JavaScript, embedded.
func servePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	http.ServeFileFS(w, r, static, "static/index.html")
}
