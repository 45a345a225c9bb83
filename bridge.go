package sheen

import (
	"cmp"
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/sheenapps/sheen-go/internal/bridge"
)

// Why this exists: package sheenhttp (the signing Proxy, the BuildStream)
// sends requests through a client's own signing, rate-limited transport,
// logs with its logger, records on its telemetry and reads build events as
// Builds.Follow does. None of that is API for the client's callers, so it is
// not exported; this init hands it to sheenhttp through internal/bridge
// instead (the pattern grpc uses for its internal hooks). Keep it small:
// whatever sheenhttp can do with the exported API, it does with it.
func init() {
	bridge.Set(&bridge.Hooks[*WorkerClient, CallOption, EventSource]{
		Core:         bridgeCore,
		StreamSource: streamSource,
		ErrorCode:    func(status int, body []byte) string { return string(newAPIError(status, nil, body, time.Time{}).Code) },
		RequestBody:  func(b []byte) io.ReadCloser { return newRequestBody(b) },
	})
}

// bridgeCore is what sheenhttp uses of c's core; nil for a client that
// NewWorkerClient did not make.
func bridgeCore(c *WorkerClient) *bridge.Core {
	if c == nil || c.core == nil {
		return nil
	}
	k := c.core
	return &bridge.Core{
		HTTP:      k.http,
		Logger:    k.logger,
		Base:      k.baseURL.Scheme + "://" + k.baseURL.Host + k.basePath,
		BasePath:  k.basePath,
		UserAgent: k.userAgent,
		Now:       k.clock.Now,
		StartProxy: func(w http.ResponseWriter, r *http.Request, route, userID string) (http.ResponseWriter, *http.Request, bridge.ProxyObs) {
			w, r, o := k.tel.startProxy(w, r, route, userID)
			return w, r, o // a nil *proxyObs does nothing
		},
	}
}

// Answered implements bridge.ProxyObs.
func (o *proxyObs) Answered(resp *http.Response, err error) { o.answered(resp, err) }

// End implements bridge.ProxyObs.
func (o *proxyObs) End(ctx context.Context) { o.end(ctx) }

// errStreamResponse refuses WithResponse on a build stream: its requests
// are many, made for many browsers.
var errStreamResponse = errors.New("WithResponse does not apply to a stream")

// streamSource checks a BuildStream's CallOptions and returns the source
// Builds.Follow reads with them: src (FollowOptions.Source) when not nil,
// else the client's WithBuildEventSource, else the worker's HTTP endpoint,
// read with opts.
func streamSource(c *WorkerClient, src EventSource, opts []CallOption) (EventSource, error) {
	if c == nil {
		return nil, ErrNotConfigured
	}
	cc, err := newCallConfig(opts)
	if err = cmp.Or(ready(&c.common), err); err != nil {
		return nil, err
	}
	if cc.response != nil {
		return nil, errStreamResponse
	}
	switch {
	case src != nil:
		return src, nil
	case c.builds.source != nil:
		return c.builds.source, nil
	}
	return &httpEventSource{svc: &c.common, opts: opts}, nil
}
