package openapi

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	sheen "github.com/sheenapps/sheen-go"
)

// maxRecorded is the largest answer body Transport validates; a longer
// one (an archive) has its status and headers validated only.
const maxRecorded = 8 << 20

// Transport is an http.RoundTripper for sheen.WithHTTPClient that checks
// every request the SDK sends, after signing, and every answer it gets
// against the contract, and reports each violation. Requests to other hosts
// than BaseURL's, and to Exempt routes (an object store), are not Worker API
// calls: they are checked only for carrying no x-sheen-* header, as the
// contract requires of download links.
//
// The answer's body is validated as the SDK reads it, when it reaches its
// end, so streamed answers keep streaming; an answer closed before its end
// has its status and headers validated only.
type Transport struct {
	// Contract is the contract to check against (Load's).
	Contract *Contract
	// Base carries the requests; nil means http.DefaultTransport.
	Base http.RoundTripper
	// BaseURL is the worker's base URL, as given to sheen.WithBaseURL.
	BaseURL string
	// Signing is the scheme the client signs with.
	Signing sheen.Signing
	// Exempt lists routes under BaseURL, in ServeMux pattern syntax, that
	// are not Worker API routes, such as sheentest.RouteStore.
	Exempt []string
	// Report receives every violation (a *Violation); it may be called
	// from several goroutines at once. It is required.
	Report func(error)

	once   sync.Once
	base   *url.URL
	exempt *http.ServeMux
	err    error
}

func (t *Transport) init() {
	t.base, t.err = url.Parse(t.BaseURL)
	switch {
	case t.err != nil:
		t.err = fmt.Errorf("openapi: Transport.BaseURL: %w", t.err)
	case t.base.Host == "":
		t.err = fmt.Errorf("openapi: Transport.BaseURL %q has no host", t.BaseURL)
	case t.Contract == nil || t.Report == nil:
		t.err = fmt.Errorf("openapi: Transport needs a Contract and a Report func")
	}
	t.exempt = http.NewServeMux()
	for _, p := range t.Exempt {
		t.exempt.Handle(p, http.NotFoundHandler())
	}
}

func (t *Transport) transport() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.once.Do(t.init)
	if t.err != nil {
		return nil, t.err
	}
	rel, ok := t.relative(req.URL)
	if !ok || t.isExempt(req.Method, rel) {
		t.checkForeign(req)
		return t.transport().RoundTrip(req)
	}
	body, req, err := readBody(req)
	if err != nil {
		return nil, err
	}
	onWire := req.Clone(req.Context())
	onWire.URL = &url.URL{Path: rel.Path, RawPath: rel.RawPath, RawQuery: req.URL.RawQuery}
	if err := t.Contract.ValidateRequest(onWire, body, t.Signing); err != nil {
		t.report(err)
	}
	resp, err := t.transport().RoundTrip(req)
	if err != nil {
		return resp, err
	}
	resp.Body = &recordingBody{rc: resp.Body, done: func(b []byte, complete bool) {
		if err := t.Contract.validateAnswerFor(onWire, resp.StatusCode, resp.Header, b, complete); err != nil {
			t.report(err)
		}
	}}
	return resp, nil
}

func (t *Transport) report(err error) {
	for _, v := range Violations(err) {
		t.Report(v)
	}
}

// relative returns u's path below the base URL's, or false when u is not
// under it.
func (t *Transport) relative(u *url.URL) (*url.URL, bool) {
	if !strings.EqualFold(u.Scheme, t.base.Scheme) || !strings.EqualFold(u.Host, t.base.Host) {
		return nil, false
	}
	prefix := strings.TrimSuffix(t.base.EscapedPath(), "/")
	p, ok := strings.CutPrefix(u.EscapedPath(), prefix)
	if !ok || !strings.HasPrefix(p, "/") {
		return nil, false
	}
	out := &url.URL{Path: p}
	if dec, err := url.PathUnescape(p); err == nil {
		out = &url.URL{Path: dec, RawPath: p}
	}
	return out, true
}

func (t *Transport) isExempt(method string, rel *url.URL) bool {
	_, pattern := t.exempt.Handler(&http.Request{Method: method, URL: rel, Host: "worker"})
	return pattern != ""
}

// checkForeign reports a request outside the Worker API that carries the
// worker's signature headers.
func (t *Transport) checkForeign(req *http.Request) {
	for k := range req.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-sheen-") {
			t.Report(&Violation{Route: req.Method + " " + req.URL.Host + req.URL.Path, In: "header", Field: strings.ToLower(k),
				Reason: "sent to a host or route outside the Worker API (never send x-sheen-* headers to a download link's host)"})
		}
	}
}

// readBody returns the request's body bytes and a request whose body reads
// them again.
func readBody(req *http.Request) ([]byte, *http.Request, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, req, nil
	}
	b, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, nil, err
	}
	r := *req
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	return b, &r, nil
}

// validateAnswerFor is ValidateResponse; with complete false the body is
// not judged (the reader stopped before its end).
func (c *Contract) validateAnswerFor(req *http.Request, status int, h http.Header, body []byte, complete bool) error {
	op, _, ok := c.Match(req.Method, req.URL.EscapedPath())
	if !ok {
		return &Violation{Route: req.Method + " " + req.URL.EscapedPath(), Status: status, In: "route", Reason: "the contract has no such route"}
	}
	return c.validateAnswer(op, status, h, body, !complete)
}

// recordingBody keeps what the SDK reads of an answer and calls done once:
// at the end of the body (complete) or when it is closed before.
type recordingBody struct {
	rc       io.ReadCloser
	buf      bytes.Buffer
	overflow bool
	once     sync.Once
	done     func(body []byte, complete bool)
}

func (r *recordingBody) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if n > 0 && !r.overflow {
		if r.buf.Len()+n > maxRecorded {
			r.overflow = true
			r.buf = bytes.Buffer{}
		} else {
			r.buf.Write(p[:n])
		}
	}
	if err == io.EOF {
		r.once.Do(func() { r.done(r.buf.Bytes(), !r.overflow) })
	}
	return n, err
}

func (r *recordingBody) Close() error {
	r.once.Do(func() { r.done(nil, false) })
	return r.rc.Close()
}
