package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/sheenapps/sheen-go/sheentest"
)

// browserPath finds Chromium (or Chrome). Without one the browser test
// skips loudly, or fails under CI=true: a CI run that silently skips its
// browser test proves nothing. .ci/run installs the Debian package.
func browserPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM_PATH"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium found (install the Debian package chromium, or set CHROMIUM_PATH)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	fmt.Fprintf(os.Stderr, "\n############################################################\n"+
		"## SKIPPING THE BROWSER TEST: %s\n"+
		"############################################################\n\n", msg)
	t.Skip(msg)
	return ""
}

type connKey struct{}

// streamTap watches the app's build-stream requests: the Last-Event-ID
// each one sent, and its connection, so the test can cut it as a network
// would.
type streamTap struct {
	mu     sync.Mutex
	lastID []string
	conns  []net.Conn
}

func (s *streamTap) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/app/builds/") {
			s.mu.Lock()
			s.lastID = append(s.lastID, r.Header.Get("Last-Event-ID"))
			if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
				s.conns = append(s.conns, c)
			}
			s.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

// drop closes the connections of every stream so far.
func (s *streamTap) drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

func (s *streamTap) lastEventIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lastID)
}

// tab drives one headless Chromium tab through the app, saving a
// screenshot of every step.
type tab struct {
	t     *testing.T
	ctx   context.Context
	shots string
	n     int
}

// do runs actions, with a safety net of a minute (not a timing
// assertion: every wait below waits for something the page shows).
func (p *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.shot("failure")
		p.t.Fatalf("browser: %v", err)
	}
}

// until waits until the JavaScript expression is truthy.
func (p *tab) until(expr string) {
	p.t.Helper()
	p.do(chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(time.Minute)))
}

func eval[T any](p *tab, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func (p *tab) text(id string) string {
	p.t.Helper()
	return eval[string](p, "document.getElementById("+strconv.Quote(id)+").textContent")
}

// shot saves a screenshot of the whole page as NN-name.png.
func (p *tab) shot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, time.Minute)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Logf("screenshot %s: %v", name, err)
		return
	}
	p.n++
	path := filepath.Join(p.shots, fmt.Sprintf("%02d-%s.png", p.n, name))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Errorf("screenshot %s: %v", name, err)
	}
}

// phases returns the phase log as "id|title" lines.
func (p *tab) phases() []string {
	return eval[[]string](p, `[...document.querySelectorAll('#phases li')].map(li => li.dataset.id + '|' + li.lastChild.textContent)`)
}

// The whole app in headless Chromium: sign in, see the balance, build and
// watch the progress bar and the phases, lose the stream mid-build and
// resume without a repeated or missing phase, see the balance drop,
// download the archive, and run out of AI time.
func TestBrowser(t *testing.T) {
	exe := browserPath(t)
	w, a := newTestApp(t, sheentest.PaceManual)
	tap := &streamTap{}
	front := httptest.NewUnstartedServer(tap.wrap(a))
	front.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) }
	front.Start()
	defer front.Close()

	shots := t.ArtifactDir()
	t.Logf("screenshots: %s (kept with go test -artifacts -outputdir DIR)", shots)
	downloads := t.TempDir()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // root in a container
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(900, 1100),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil { // starts the browser, with no timeout
		t.Fatalf("starting %s: %v", exe, err)
	}
	p := &tab{t: t, ctx: ctx, shots: shots}

	// Sign in; the balance shows.
	p.do(chromedp.Navigate(front.URL), chromedp.WaitVisible(chromedp.CSS("#login-alice")))
	p.shot("sign-in")
	// The sign-in form posts and the page loads again.
	ctx1, cancel1 := context.WithTimeout(ctx, time.Minute)
	defer cancel1()
	if _, err := chromedp.Run(ctx1, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS("#login-alice")))); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	p.until(`document.getElementById('balance').dataset.seconds !== undefined`)
	if got := p.text("balance"); got != "2 h 0 min" {
		t.Errorf("balance shows %q, want 2 h 0 min", got)
	}
	startSeconds := eval[string](p, `document.getElementById('balance').dataset.seconds`)
	p.shot("balance")

	// Build; the page follows the build's stream.
	p.do(chromedp.Click(chromedp.CSS("#build-btn")))
	p.until(`document.getElementById('conn').textContent === 'live'`)
	ids := w.fake.BuildIDs()
	buildID := ids[len(ids)-1]
	for i := 1; i <= 3; i++ {
		w.fake.Step(buildID)
		p.until(fmt.Sprintf(`document.querySelectorAll('#phases li').length === %d`, i))
	}
	if got := p.text("percent"); got != "45 %" {
		t.Errorf("after three steps the bar shows %q, want 45 %%", got)
	}
	p.shot("building")

	// The connection drops; two events happen while the page is away.
	before := p.phases()
	tap.drop()
	w.fake.Step(buildID)
	w.fake.Step(buildID)
	p.until(`document.getElementById('conn').textContent !== 'live'`)
	p.shot("connection-lost")
	p.until(`document.querySelectorAll('#phases li').length >= 5 && document.getElementById('conn').textContent === 'live'`)
	p.shot("resumed")
	resumedFrom := strings.SplitN(before[len(before)-1], "|", 2)[0]
	if got := tap.lastEventIDs(); len(got) != 2 || got[0] != "" || got[1] != resumedFrom {
		t.Errorf("stream requests sent Last-Event-ID %q, want [\"\" %q]", got, resumedFrom)
	}

	// The build ends: 100 %, every phase once and in order, the preview,
	// and a balance that paid for it.
	w.fake.Finish(buildID)
	p.until(`document.getElementById('result').textContent.startsWith('Deployed')`)
	p.until(`Number(document.getElementById('balance').dataset.seconds) < ` + startSeconds)
	var titles []string
	var lastID int64
	log := p.phases()
	for _, line := range log {
		id, title, _ := strings.Cut(line, "|")
		n, _ := strconv.ParseInt(id, 10, 64)
		if n <= lastID {
			t.Errorf("phase log out of order or repeated at id %d: %q", n, log)
			break
		}
		lastID = n
		titles = append(titles, title)
	}
	want := []string{"Build started", "Writing the code", "Installing dependencies", "Building", "Deploying",
		"Deployed", "Writing the project's metadata", "Metadata ready"}
	if !slices.Equal(titles, want) {
		t.Errorf("phase log %q,\nwant %q", titles, want)
	}
	if got := p.text("percent"); got != "100 %" {
		t.Errorf("the bar ends at %q", got)
	}
	if got := p.text("result"); got != "Deployed v1.0.0" {
		t.Errorf("result %q", got)
	}
	p.until(`!document.getElementById('download-box').hidden && document.getElementById('download-info').textContent.includes('expires')`)
	if info := p.text("download-info"); !strings.Contains(info, "(in 24 h)") {
		t.Errorf("download info %q does not show the link's expiry", info)
	}
	p.shot("deployed")

	// Download: the browser receives the archive from the signed link.
	preview := eval[string](p, `document.getElementById('preview-link').href`)
	parts := strings.Split(strings.Trim(preview, "/"), "/")
	versionID := parts[len(parts)-1]
	dctx, dcancel := context.WithTimeout(ctx, time.Minute)
	defer dcancel()
	progress := chromedp.BrowserEvents(dctx, browser.DownloadProgress)
	yes := true
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: downloads, EventsEnabled: &yes,
	}); err != nil {
		t.Fatal(err)
	}
	p.do(chromedp.Click(chromedp.CSS("#download")))
	var guid string
	for ev, err := range progress {
		if err != nil {
			t.Fatalf("waiting for the download: %v", err)
		}
		if ev.State == browser.DownloadProgressStateCanceled {
			t.Fatal("the download was canceled")
		}
		if ev.State == browser.DownloadProgressStateCompleted {
			guid = ev.GUID
			break
		}
	}
	got, err := os.ReadFile(filepath.Join(downloads, guid))
	if err != nil {
		t.Fatal(err)
	}
	if wantArchive := w.fake.Artifact(versionID); len(wantArchive) == 0 || !bytes.Equal(got, wantArchive) || !bytes.HasPrefix(got, []byte{0x1f, 0x8b}) {
		t.Errorf("downloaded %d bytes, not the version's %d-byte archive", len(got), len(wantArchive))
	}
	p.shot("downloaded")

	// Out of AI time: the page says so, with the worker's suggestions, and
	// starts no build.
	w.fake.SetBalance(w.users["alice"], 0)
	builds := len(w.fake.BuildIDs())
	p.do(chromedp.Click(chromedp.CSS("#build-btn")))
	p.until(`!document.getElementById('paywall').hidden`)
	if got := p.text("paywall"); !strings.Contains(got, "Add AI time to keep building") ||
		!strings.Contains(got, "You have 0 min left") ||
		!strings.Contains(got, "Buy the mini package: 60 minutes of AI time") ||
		!strings.Contains(got, "Upgrade to the starter plan") {
		t.Errorf("the 402 message reads %q", got)
	}
	if n := len(w.fake.BuildIDs()); n != builds {
		t.Errorf("a build started without AI time")
	}
	// The balance above agrees with the message: it was refreshed.
	p.until(`document.getElementById('balance').dataset.seconds === '0'`)
	if got := p.text("balance"); got != "0 min" {
		t.Errorf("after the 402 the balance shows %q, want 0 min", got)
	}
	p.shot("add-ai-time")
}
