package sheen

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
)

// A refused connection is a *DownloadError that errors.Is matches with
// syscall.ECONNREFUSED, without the link's query in its text.
func TestDownloadErrorUnwrapsConnectionRefused(t *testing.T) {
	store := newDownloadStore(t, downloadContent(1000))
	c, _ := downloadWorker(t, store)
	link := downloadLinkFor(t, c)
	store.srv.Close()
	_, err := c.Exports.Download(context.Background(), link, io.Discard, &DownloadOptions{Retries: -1})
	var de *DownloadError
	if !errors.As(err, &de) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("got %v; want a *DownloadError matching ECONNREFUSED", err)
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) || opErr.Op != "dial" {
		t.Errorf("errors.As *net.OpError: %v", opErr)
	}
	checkNoQuery(t, err)
}

// A host that does not resolve is a *DownloadError that errors.As reaches
// the *net.DNSError through.
func TestDownloadErrorUnwrapsDNSError(t *testing.T) {
	noDNS := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no name server in this test")
	}}
	tr := &http.Transport{DialContext: (&net.Dialer{Resolver: noDNS}).DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	c, _ := newMockClient(t, WithDownloadHTTPClient(&http.Client{Transport: tr}))
	link := linkTo("https://store.invalid/exports/p1.zip?" + exportsSecretQuery)
	_, err := c.Exports.Download(context.Background(), link, io.Discard, &DownloadOptions{Retries: -1})
	var de *DownloadError
	var dnsErr *net.DNSError
	if !errors.As(err, &de) || !errors.As(err, &dnsErr) {
		t.Fatalf("got %T %v; want a *DownloadError holding a *net.DNSError", err, err)
	}
	if dnsErr.Name != "store.invalid" {
		t.Errorf("DNSError for %q", dnsErr.Name)
	}
	checkNoQuery(t, err)
}

// resetBody gives n bytes, then fails as a connection reset by the peer.
type resetBody struct {
	r io.Reader
}

func (b *resetBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		return n, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	}
	return n, err
}

func (b *resetBody) Close() error { return nil }

// A body cut short by a reset is a truncated download: the error matches
// ErrTruncated and still unwraps to the network's error.
func TestDownloadTruncatedByResetMatchesErrTruncated(t *testing.T) {
	content := downloadContent(100_000)
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{
			StatusCode: 200, Header: http.Header{}, ContentLength: int64(len(content)), Request: r,
			Body: &resetBody{r: strings.NewReader(string(content[:40_000]))},
		}, nil
	})
	c, _ := newMockClient(t, WithDownloadHTTPClient(&http.Client{Transport: rt}))
	link := linkTo("https://store.test/exports/p1.zip?" + exportsSecretQuery)
	n, err := written(c.Exports.Download(context.Background(), link, io.Discard, &DownloadOptions{Retries: -1}))
	var de *DownloadError
	if !errors.As(err, &de) || !errors.Is(err, ErrTruncated) || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("got %v; want a *DownloadError matching ErrTruncated and ECONNRESET", err)
	}
	if n != 40_000 || de.Written != 40_000 || de.Expected != 100_000 {
		t.Errorf("wrote %d, error %+v", n, de)
	}
	checkNoQuery(t, err)
}

func TestDownloadScrubURLQueries(t *testing.T) {
	for in, want := range map[string]string{
		`Get "https://s.test/a.zip?X-Amz-Signature=abc&b=c": EOF`:   `Get "https://s.test/a.zip?REDACTED": EOF`,
		"redirect to HTTP://cdn.test/x#frag?sig=1 refused":          "redirect to HTTP://cdn.test/x?REDACTED refused",
		"dial tcp 127.0.0.1:80: connect: connection refused":        "dial tcp 127.0.0.1:80: connect: connection refused",
		"two: https://a.test/?k=1 and http://b.test/p?k=2&s=3 done": "two: https://a.test/?REDACTED and http://b.test/p?REDACTED done",
	} {
		if got := scrubURLQueries(in); got != want {
			t.Errorf("scrubURLQueries(%q) = %q, want %q", in, got, want)
		}
	}
}
