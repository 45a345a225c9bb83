// Package bridge hands package sheenhttp the few parts of a
// sheen.WorkerClient that it needs and that the client does not export.
//
// Why this exists: the handlers of sheenhttp (the Proxy, the BuildStream)
// send requests through a WorkerClient's own signing, rate-limited
// transport, log with its logger, record on its telemetry and read build
// events the way Builds.Follow does. None of that is API a caller of the
// client should see, so package sheen does not export it; it fills in the
// Hooks below from an init function instead (the pattern grpc uses for its
// internal hooks), and only sheenhttp reads them. Package sheen must not
// import sheenhttp, and this package imports neither.
//
// The hooks are typed with sheen's types through type parameters, which
// this package cannot name: Set and Get must be instantiated with the same
// types, and sheenhttp's package initialisation fails at once if they are
// not.
package bridge

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// Hooks are the functions of package sheen that sheenhttp calls. Client is
// *sheen.WorkerClient, CallOption sheen.CallOption and EventSource
// sheen.EventSource.
type Hooks[Client, CallOption, EventSource any] struct {
	// Core returns what sheenhttp uses of c's core, or nil for a client
	// that NewWorkerClient did not make.
	Core func(c Client) *Core

	// StreamSource checks the CallOptions of a BuildStream and returns the
	// source Builds.Follow would read with them: src when not nil
	// (FollowOptions.Source), else the client's WithBuildEventSource, else
	// the worker's HTTP endpoint read with opts.
	StreamSource func(c Client, src EventSource, opts []CallOption) (EventSource, error)

	// ErrorCode reads the worker's error code out of an error body, by the
	// client's rules (every envelope of worker-api.md section 3).
	ErrorCode func(status int, body []byte) string

	// RequestBody wraps a request body so that the client's transport signs
	// it without reading it again.
	RequestBody func(b []byte) io.ReadCloser
}

// Core is what sheenhttp uses of one client's core.
type Core struct {
	// HTTP sends one request to the worker through the client's transport:
	// signed, paced by its rate limiter (a wait past the client's maximum
	// fails with a *sheen.RateLimitError), never retried, redirects not
	// followed.
	HTTP *http.Client
	// Logger is the client's logger.
	Logger *slog.Logger
	// Base is the worker's scheme, host and base path (no trailing slash);
	// BasePath the base path alone.
	Base, BasePath string
	// UserAgent is the client's User-Agent.
	UserAgent string
	// Now tells the time on the client's clock (WithClock), which its rate
	// limiter's snapshot is on.
	Now func() time.Time
	// StartProxy starts the telemetry (span and metrics) of a request the
	// proxy forwards on route (its pattern) for userID. It returns w and r
	// to use from then on, and the request's observer.
	StartProxy func(w http.ResponseWriter, r *http.Request, route, userID string) (http.ResponseWriter, *http.Request, ProxyObs)
}

// ProxyObs follows one forwarded request's telemetry. A nil *T behind it
// (no provider records) does nothing.
type ProxyObs interface {
	// Answered closes the attempt to the worker with its answer or failure.
	Answered(resp *http.Response, err error)
	// End closes the forwarded request with the status the browser got.
	End(ctx context.Context)
}

var hooks any // a *Hooks[...], set once by package sheen's init

// Set installs package sheen's hooks; sheen calls it from an init function.
func Set[Client, CallOption, EventSource any](h *Hooks[Client, CallOption, EventSource]) { hooks = h }

// Get returns the hooks Set installed. It panics when they are missing or
// were set with other types: a build of sheen and sheenhttp out of step,
// caught when sheenhttp initialises.
func Get[Client, CallOption, EventSource any]() *Hooks[Client, CallOption, EventSource] {
	h, ok := hooks.(*Hooks[Client, CallOption, EventSource])
	if !ok || h == nil {
		panic("sheen-go/internal/bridge: package sheen installed no hooks of these types")
	}
	return h
}
