package main

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	sheen "github.com/sheenapps/sheen-go"
)

// progressMode says how progress is shown.
type progressMode int

const (
	// progressNone shows nothing (--json: stdout is the answer).
	progressNone progressMode = iota
	// progressBar redraws a bar on stderr, a terminal.
	progressBar
	// progressLines writes plain lines, for logs and pipes.
	progressLines
)

func (a *app) progressMode() progressMode {
	switch {
	case a.json:
		return progressNone
	case a.tty:
		return progressBar
	}
	return progressLines
}

// barOptions are the options every bar shares: drawn on stderr, a fixed
// width (a terminal narrower than the line wraps it, which is ugly but
// readable), the time left predicted from the rate so far.
func barOptions(w io.Writer, description string, throttle time.Duration) []progressbar.Option {
	return []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(description),
		progressbar.OptionSetWidth(24),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionThrottle(throttle),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	}
}

// buildProgress shows a build's events as they are read: a bar on a
// terminal (phase and title, percent, elapsed and time left), a line per
// event in a log, a JSON line per event with --json.
type buildProgress struct {
	a    *app
	mode progressMode
	bar  *progressbar.ProgressBar
	last int // percent last shown
}

func (a *app) newBuildProgress() *buildProgress {
	p := &buildProgress{a: a, mode: a.progressMode(), last: -1}
	if a.json {
		p.mode = progressNone
	}
	if p.mode == progressBar {
		// No throttle: events come a few a second at most, and each one
		// should show with its own title and percent.
		p.bar = progressbar.NewOptions(100, barOptions(a.stderr, "[queued]", 0)...)
		a.barLive = true
	}
	return p
}

// event shows one event; it runs on the goroutine that reads them.
func (p *buildProgress) event(e sheen.BuildEvent) {
	if p.a.json {
		p.a.writeJSONLine(eventJSON(e))
		return
	}
	pct := p.last
	if e.HasProgress && e.Phase != sheen.PhaseMetadata {
		pct = percent(e.Progress)
	}
	switch p.mode {
	case progressBar:
		// Describe draws the new title (with the old percent), Set the
		// new percent: progressbar has no call that changes both at once.
		p.bar.Describe(fmt.Sprintf("[%s] %s", orDash(string(e.Phase)), oneLine(e.Title)))
		if pct >= 0 && pct < 100 {
			_ = p.bar.Set(pct)
		} else if pct >= 0 {
			// Set(100) would finish the bar, yet the metadata phase may
			// follow: hold it at the end of the line until done.
			_ = p.bar.Set(99)
		}
	case progressLines:
		mark := "    "
		if pct >= 0 {
			mark = fmt.Sprintf("%3d%%", pct)
		}
		line := fmt.Sprintf("[%s] %-12s %s", mark, orDash(string(e.Phase)), oneLine(e.Title))
		if e.Error != nil {
			line += ": " + oneLine(e.Error.Message)
		}
		p.a.printf("%s\n", line)
	}
	p.last = pct
}

// done ends the display: the bar completes when the build succeeded and
// stops where it was when it did not.
func (p *buildProgress) done(ok bool) {
	if p.bar == nil {
		return
	}
	p.a.barLive = false
	if ok {
		_ = p.bar.Finish()
		return
	}
	_ = p.bar.Exit()
	fmt.Fprintln(p.a.stderr)
}

type jsonEvent struct {
	Type        string          `json:"type"`
	ID          int64           `json:"id"`
	BuildID     string          `json:"buildId"`
	Kind        string          `json:"kind"`
	EventType   string          `json:"eventType"`
	Phase       string          `json:"phase,omitempty"`
	Title       string          `json:"title,omitempty"`
	Description string          `json:"description,omitempty"`
	Progress    *float64        `json:"progress,omitempty"`
	Finished    bool            `json:"finished"`
	PreviewURL  string          `json:"previewUrl,omitempty"`
	VersionID   string          `json:"versionId,omitempty"`
	Error       *jsonBuildError `json:"error,omitempty"`
	At          string          `json:"at,omitempty"`
}

type jsonBuildError struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
}

func eventJSON(e sheen.BuildEvent) jsonEvent {
	out := jsonEvent{
		Type: "event", ID: e.ID, BuildID: e.BuildID, Kind: string(e.Kind), EventType: e.Type, Phase: string(e.Phase),
		Title: e.Title, Description: e.Description, Finished: e.Finished, PreviewURL: e.PreviewURL,
		VersionID: e.VersionID, At: stamp(e.CreatedAt),
	}
	if e.HasProgress {
		v := e.Progress
		out.Progress = &v
	}
	if e.Error != nil {
		out.Error = &jsonBuildError{Code: e.Error.Code, Message: e.Error.Message}
	}
	return out
}

// downloadProgress shows a download: a bar on a terminal (bytes, percent,
// rate, time left), a line at each quarter in a log, nothing with --json.
type downloadProgress struct {
	a       *app
	mode    progressMode
	name    string
	bar     *progressbar.ProgressBar
	quarter int
	started bool // the first line was written
	total   int64
}

func (a *app) newDownloadProgress(name string) *downloadProgress {
	return &downloadProgress{a: a, mode: a.progressMode(), name: name, quarter: -1}
}

// update is the SDK's DownloadOptions.Progress callback: bytes written so far and the
// archive's length (-1 when unknown); written goes back to 0 when the
// download starts over.
func (p *downloadProgress) update(written, total int64) {
	switch p.mode {
	case progressBar:
		if p.bar == nil && total < 0 && written == 0 {
			return // the first call, before the answer: its length may follow
		}
		if p.bar == nil {
			opts := append(barOptions(p.a.stderr, p.name, 65*time.Millisecond),
				progressbar.OptionShowBytes(true), progressbar.OptionShowTotalBytes(true), progressbar.OptionShowCount())
			p.bar = progressbar.NewOptions64(total, opts...)
			p.a.barLive = true
		}
		if total > 0 && p.bar.GetMax64() != total {
			p.bar.ChangeMax64(total)
		}
		if total > 0 && written >= total {
			return // done finishes it: Set64(total) would print the end line twice
		}
		_ = p.bar.Set64(written)
	case progressLines:
		if !p.started && (total >= 0 || written > 0) {
			p.started, p.total = true, total
			size := "unknown size"
			if total >= 0 {
				size = bytesHuman(total)
			}
			fmt.Fprintf(p.a.stderr, "downloading %s (%s)\n", p.name, size)
		}
		if total <= 0 {
			return
		}
		if q := int(4 * written / total); q > p.quarter && q > 0 {
			p.quarter = q
			fmt.Fprintf(p.a.stderr, "  %3d%%  %s of %s\n", q*25, bytesHuman(written), bytesHuman(total))
		}
	}
}

// done ends the display.
func (p *downloadProgress) done(ok bool) {
	if p.bar == nil {
		return
	}
	p.a.barLive = false
	if ok {
		_ = p.bar.Finish()
		return
	}
	_ = p.bar.Exit()
	fmt.Fprintln(p.a.stderr)
}
