package pgevents

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheenhttp"
)

// sseBlock is one block of an event stream.
type sseBlock struct{ id, event, data, comment string }

// openStream starts reading a build's stream as user, after lastID ("" for
// none), and sends its blocks on the channel, closed at the stream's end.
func openStream(ctx context.Context, t *testing.T, base, build, user, lastID string) (<-chan sseBlock, int) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/?buildId="+build, nil)
	req.Header.Set("X-User", user)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan sseBlock, 64)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var b sseBlock
		for sc.Scan() {
			line := sc.Text()
			field, value, _ := strings.Cut(line, ": ")
			switch {
			case line == "":
				select {
				case out <- b:
				case <-ctx.Done():
					return
				}
				b = sseBlock{}
			case strings.HasPrefix(line, ":"):
				b.comment = strings.TrimPrefix(line, ": ")
			case field == "id":
				b.id = value
			case field == "event":
				b.event = value
			case field == "data":
				b.data = value
			}
		}
	}()
	return out, resp.StatusCode
}

// next returns the next message or end event of a stream.
func next(t *testing.T, blocks <-chan sseBlock) sseBlock {
	t.Helper()
	for b := range blocks {
		if b.id != "" || b.event != "" {
			return b
		}
	}
	t.Fatal("the stream ended early")
	return sseBlock{}
}

// sheenhttp.NewBuildStream over a pgevents Source: browsers get the rows their
// user may see as they are written, resume after a dropped connection from
// Last-Event-ID with nothing repeated or missed, and get the end; another
// user's stream of the same build shows none of its rows.
func TestBuildStreamOverPostgres(t *testing.T) {
	db := newTestDB(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a safety net, not a timing assertion
	defer cancel()
	src := New(db.reader)
	stream, err := sheenhttp.NewBuildStream(newClient(t), sheenhttp.BuildStreamConfig{
		Authorize: func(r *http.Request) (string, error) { return r.Header.Get("X-User"), nil },
		Follow:    &sheen.FollowOptions{Source: src},
		Heartbeat: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(stream)
	defer front.Close()
	defer stream.Close()

	alice, bob, build := uuid.NewString(), uuid.NewString(), "01JSTREAM0001"
	var want []string
	add := func(typ, phase, title string, p float64, finished bool, preview string) {
		id := db.mustInsert(t, row{build: build, user: alice, typ: typ, phase: phase, title: title, progress: pct(p), finished: finished, preview: preview})
		want = append(want, strconv.FormatInt(id, 10))
	}
	add("started", "development", "Build started", 0.05, false, "")
	add("progress", "development", "Writing the code", 0.25, false, "")
	add("progress", "dependencies", "Installing dependencies", 0.45, false, "")

	firstCtx, drop := context.WithCancel(ctx)
	first, status := openStream(firstCtx, t, front.URL, build, alice, "")
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	var got []string
	for range 3 {
		got = append(got, next(t, first).id)
	}
	drop() // the connection goes away mid-build
	add("progress", "build", "Building", 0.65, false, "")
	add("completed", "deploy", "Deployed", 1, true, "https://preview.test/p/")

	second, _ := openStream(ctx, t, front.URL, build, alice, got[len(got)-1])
	for range 2 {
		got = append(got, next(t, second).id)
	}
	add("completed", "metadata", "Metadata ready", 1, true, "")
	got = append(got, next(t, second).id)
	end := next(t, second)
	if !slices.Equal(got, want) {
		t.Errorf("events across the reconnect: %v, want %v", got, want)
	}
	if end.event != "end" || !strings.Contains(end.data, `"status":"deployed"`) || !strings.Contains(end.data, `"previewUrl":"https://preview.test/p/"`) {
		t.Errorf("end: %+v", end)
	}

	// Bob's stream of alice's build: the first thing after the retry hint
	// is a heartbeat, not one of her events.
	bobs, status := openStream(ctx, t, front.URL, build, bob, "")
	if status != http.StatusOK {
		t.Fatalf("bob: status %d", status)
	}
	for b := range bobs {
		if b.id != "" || b.event != "" {
			t.Fatalf("bob received %+v from alice's build", b)
		}
		if b.comment == "heartbeat" {
			break
		}
	}
}
