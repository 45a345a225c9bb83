package sheen

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// storeTransport serves a fake object store by host: https://store.example
// redirects to redirectTo (when set), everything else answers the archive.
// It records every URL asked for.
type storeTransport struct {
	content    []byte
	redirectTo string

	mu   sync.Mutex
	seen []string
}

func (s *storeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	s.seen = append(s.seen, r.URL.Scheme+"://"+r.URL.Host+r.URL.Path)
	s.mu.Unlock()
	if r.URL.Host == "store.example" && s.redirectTo != "" {
		return &http.Response{StatusCode: http.StatusFound, Header: http.Header{"Location": {s.redirectTo}}, Body: http.NoBody, Request: r}, nil
	}
	return &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: int64(len(s.content)),
		Body: io.NopCloser(bytes.NewReader(s.content)), Request: r}, nil
}

func (s *storeTransport) requested() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// Both ways the download client is made: from WithHTTPClient's transport,
// and WithDownloadHTTPClient.
func downloadClientOptions(rt http.RoundTripper) map[string][]Option {
	return map[string][]Option{
		"default client":         {WithHTTPClient(&http.Client{Transport: rt})},
		"WithDownloadHTTPClient": {WithDownloadHTTPClient(&http.Client{Transport: rt})},
	}
}

func newSchemeClient(t *testing.T, opts ...Option) *WorkerClient {
	t.Helper()
	c, err := NewWorkerClient(append([]Option{WithBaseURL("https://worker.test"), WithSecret(testSecret)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A plain http:// link to a host that is not loopback is refused before
// anything is sent: the signed query would cross the network in clear.
func TestDownloadRefusesPlainHTTPLink(t *testing.T) {
	store := &storeTransport{content: []byte("PK\x03\x04zip")}
	for name, opts := range downloadClientOptions(store) {
		t.Run(name, func(t *testing.T) {
			c := newSchemeClient(t, opts...)
			link := linkTo("http://store.example/exports/p1.zip?" + exportsSecretQuery)
			_, err := c.Exports.Download(context.Background(), link, io.Discard, nil)
			var de *DownloadError
			if !errors.Is(err, ErrInsecureDownload) || !errors.As(err, &de) || de.Attempts != 0 {
				t.Fatalf("got %v", err)
			}
			if got := store.requested(); len(got) != 0 {
				t.Fatalf("the store was asked for %v", got)
			}
			checkNoQuery(t, err)
		})
	}
}

// An https link whose store redirects to plain http:// is not followed.
func TestDownloadRefusesRedirectToPlainHTTP(t *testing.T) {
	store := &storeTransport{content: []byte("PK\x03\x04zip"), redirectTo: "http://cdn.example/a.zip?X-Amz-Signature=cdnsecret"}
	for name, opts := range downloadClientOptions(store) {
		t.Run(name, func(t *testing.T) {
			store.seen = nil
			c := newSchemeClient(t, opts...)
			link := linkTo("https://store.example/exports/p1.zip?" + exportsSecretQuery)
			_, err := c.Exports.Download(context.Background(), link, io.Discard, nil)
			var de *DownloadError
			if !errors.Is(err, ErrInsecureDownload) || !errors.As(err, &de) {
				t.Fatalf("got %v", err)
			}
			if got := store.requested(); len(got) != 1 || got[0] != "https://store.example/exports/p1.zip" {
				t.Fatalf("requests %v", got)
			}
			if strings.Contains(err.Error(), "cdnsecret") {
				t.Errorf("the error shows the redirect's query: %v", err)
			}
			checkNoQuery(t, err)
		})
	}
}

// A real TLS store redirecting to a plain-HTTP server (on loopback, which a
// link may use in tests) is a downgrade all the same: refused.
func TestDownloadRefusesDowngradeFromTLSServer(t *testing.T) {
	var hits atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte("archive"))
	}))
	t.Cleanup(plain.Close)
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/a.zip?X-Amz-Signature=cdnsecret", http.StatusFound)
	}))
	t.Cleanup(secure.Close)
	for name, opts := range downloadClientOptions(secure.Client().Transport) {
		t.Run(name, func(t *testing.T) {
			c := newSchemeClient(t, opts...)
			link := linkTo(secure.URL + "/exports/p1.zip?" + exportsSecretQuery)
			_, err := c.Exports.Download(context.Background(), link, io.Discard, &DownloadOptions{Retries: -1})
			if !errors.Is(err, ErrInsecureDownload) || hits.Load() != 0 {
				t.Fatalf("got %v; the plain server was asked %d times", err, hits.Load())
			}
			checkNoQuery(t, err)
		})
	}
}

// With WithInsecureHTTP (inside a trusted network), plain http:// links and
// redirects are followed.
func TestDownloadInsecureHTTPOptIn(t *testing.T) {
	content := []byte("PK\x03\x04zip")
	for name, mk := range map[string]func(rt http.RoundTripper) (*WorkerClient, error){
		// An http:// worker that is not loopback needs WithInsecureHTTP,
		// so such a client has opted in.
		"http worker": func(rt http.RoundTripper) (*WorkerClient, error) {
			return NewWorkerClient(WithBaseURL("http://10.0.0.5"), WithInsecureHTTP(), WithSecret(testSecret), WithDownloadHTTPClient(&http.Client{Transport: rt}))
		},
		"exports setting": func(rt http.RoundTripper) (*WorkerClient, error) {
			return NewWorkerClient(WithBaseURL("https://worker.test"), WithSecret(testSecret), WithDownloadHTTPClient(&http.Client{Transport: rt}),
				func(c *config) error { c.exports.insecureHTTP = true; return nil })
		},
	} {
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct{ link, redirect string }{
				{"http://store.example/a.zip?sig=1", ""},
				{"https://store.example/a.zip?sig=1", "http://cdn.example/a.zip?sig=2"},
			} {
				store := &storeTransport{content: content, redirectTo: tc.redirect}
				c, err := mk(store)
				if err != nil {
					t.Fatal(err)
				}
				var buf bytes.Buffer
				if _, err := c.Exports.Download(context.Background(), linkTo(tc.link), &buf, nil); err != nil || !bytes.Equal(buf.Bytes(), content) {
					t.Errorf("%+v: %v", tc, err)
				}
			}
		})
	}
}

// Without the opt-in, http:// stays usable on loopback (tests, local
// stores), and a redirect from https to https is followed.
func TestDownloadSecureRedirectIsFollowed(t *testing.T) {
	store := &storeTransport{content: []byte("PK\x03\x04zip"), redirectTo: "https://cdn.example/a.zip?sig=2"}
	c := newSchemeClient(t, WithDownloadHTTPClient(&http.Client{Transport: store}))
	var buf bytes.Buffer
	if _, err := c.Exports.Download(context.Background(), linkTo("https://store.example/a.zip?sig=1"), &buf, nil); err != nil || buf.String() != "PK\x03\x04zip" {
		t.Fatalf("got %q, %v", buf.String(), err)
	}
	if got := store.requested(); len(got) != 2 || got[1] != "https://cdn.example/a.zip" {
		t.Errorf("requests %v", got)
	}
}
