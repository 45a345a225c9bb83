package sheenhttp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheenhttp"
	"github.com/sheenapps/sheen-go/sheentest"
)

// A web backend streams a build's progress to the browser, which reads it
// with EventSource:
//
//	const es = new EventSource('/app/builds/' + buildId + '/events');
//	es.onmessage = m => showProgress(JSON.parse(m.data));
//	es.addEventListener('end', m => { es.close(); showOutcome(JSON.parse(m.data)); });
//
// Here a Go client plays the browser.
func ExampleNewBuildStream() {
	worker := sheentest.NewServer(sheentest.WithUser("user-123", time.Hour))
	defer worker.Close()
	client, err := worker.Client()
	if err != nil {
		log.Fatal(err)
	}
	build, err := client.Builds.CreatePreview(context.Background(), sheen.CreatePreviewRequest{UserID: "user-123", Prompt: "A bakery"})
	if err != nil {
		log.Fatal(err)
	}

	stream, err := sheenhttp.NewBuildStream(client, sheenhttp.BuildStreamConfig{
		// The same function as the proxy's: the user of the session.
		Authorize: func(r *http.Request) (string, error) {
			if c, err := r.Cookie("session"); err == nil && c.Value == "s3cr3t-session" {
				return "user-123", nil
			}
			return "", errors.New("not signed in")
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer stream.Close()
	mux := http.NewServeMux()
	mux.Handle("GET /app/builds/{buildId}/events", stream)
	app := httptest.NewServer(mux)
	defer app.Close()

	// What the browser's EventSource does.
	req, _ := http.NewRequest("GET", app.URL+"/app/builds/"+build.ID+"/events", nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: "s3cr3t-session"})
	resp, err := app.Client().Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	fmt.Println(resp.Header.Get("Content-Type"))
	var event string
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		line := lines.Text()
		if name, ok := strings.CutPrefix(line, "event: "); ok {
			event = name
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var v struct {
			Phase, Title, Status string
			Progress             float64
		}
		_ = json.Unmarshal([]byte(data), &v)
		if event == "end" {
			fmt.Println("end:", v.Status)
			continue
		}
		fmt.Printf("%3.0f%% %-12s %s\n", v.Progress*100, v.Phase, v.Title)
	}
	// Output:
	// text/event-stream
	//   5% development  Build started
	//  25% development  Writing the code
	//  45% dependencies Installing dependencies
	//  65% build        Building
	//  85% deploy       Deploying
	// 100% deploy       Deployed
	//  60% metadata     Writing the project's metadata
	// 100% metadata     Metadata ready
	// end: deployed
}
