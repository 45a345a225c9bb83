package sheentest

import (
	"context"
	"time"

	sheen "github.com/sheenapps/sheen-go"
)

// unpacedPerMinute is the client-side rate ClientOptions sets: about 100,000
// requests a second, far above anything a test sends, so the client's own
// pacing never makes a request wait.
const unpacedPerMinute = 6_000_000

// testBackoffBase is the first backoff step of the clients made here: a
// retried 5xx costs a millisecond instead of a second. Retry-After is still
// honoured as sent.
const testBackoffBase = time.Millisecond

// ClientOptions returns the options that make a sheen.WorkerClient quick in
// tests that do not go through Server.Client, such as tests with httpmock
// or a stub server of your own: no client-side pacing (the SDK's default is
// 60 requests a minute after a burst of 4) and a 1 ms first backoff step
// (default 1 s) before retrying a 5xx. Retries, Retry-After, signing and
// error decoding are unchanged. Put your own options after them.
func ClientOptions() []sheen.Option {
	return []sheen.Option{sheen.WithRateLimit(unpacedPerMinute), sheen.WithRetry(sheen.RetryConfig{BackoffBase: testBackoffBase})}
}

// Client returns a WorkerClient pointed at the server and ready for a test:
//
//   - It signs with the server's secret, second secret and scheme.
//   - It paces itself like the server: not at all when the server does not
//     rate limit (the default, and WithDeployedRateHeaders), else at the
//     server's WithRateLimit, as a production client configured for that
//     worker would.
//   - Its first backoff step is 1 ms, so a retried 5xx fault costs
//     milliseconds (Retry-After is honoured as sent).
//   - Builds.Follow and Builds.Wait read build events from the server's
//     HTTP endpoint as usual, but are woken as soon as the server writes an
//     event instead of polling every 1 to 3 s, so following a build that
//     moves with Step, Finish or PaceTimed costs no polling delay.
//
// With the default PaceInstant, a whole create, Wait, export and download
// flow takes milliseconds. A build stopped at its deploy (PaceManual without
// Finish) still makes Wait wait up to 5 s for the metadata phase that
// follows a deploy on the real worker: step it to the end, or pass
// &sheen.FollowOptions{MetadataWait: -1} to Wait.
//
// opts are applied after all this, so any of it can be overridden (for
// example sheen.WithRateLimit(60) to test your code against the SDK's
// default pacing, or sheen.WithBuildEventSource to read events elsewhere).
// The error is the SDK's refusal of an invalid option.
func (s *Server) Client(opts ...sheen.Option) (*sheen.WorkerClient, error) {
	base := []sheen.Option{sheen.WithBaseURL(s.URL), sheen.WithSecret(s.Secret), sheen.WithSigning(s.cfg.signing)}
	if s.cfg.secretV2 != "" {
		base = append(base, sheen.WithSecretV2(s.cfg.secretV2))
	}
	pace := unpacedPerMinute
	if s.cfg.ratePerMinute > 0 && !s.cfg.deployedHeaders {
		pace = s.cfg.ratePerMinute
	}
	src := &eventSource{srv: s}
	base = append(base, sheen.WithRateLimit(pace), sheen.WithRetry(sheen.RetryConfig{BackoffBase: testBackoffBase}), sheen.WithBuildEventSource(src))
	c, err := sheen.NewWorkerClient(append(base, opts...)...)
	if err != nil {
		return nil, err
	}
	// Set before the client is handed out, so no reader sees it unset.
	src.inner = c.Builds.WorkerEventSource()
	return c, nil
}

// eventSource reads build events through the client's own HTTP source
// (signed, rate limited, retried, decoded as in production) and tells the
// reader as soon as the server writes an event of its build.
type eventSource struct {
	srv   *Server
	inner sheen.EventSource
}

// FetchEvents implements sheen.EventSource with the worker's HTTP endpoint.
func (e *eventSource) FetchEvents(ctx context.Context, buildID, userID string, after int64) ([]sheen.BuildEvent, bool, error) {
	return e.inner.FetchEvents(ctx, buildID, userID, after)
}

// Subscribe implements sheen.EventNotifier: the channel receives whenever
// the server writes an event of buildID. For a build the server does not
// know, the channel is nil and the reader simply polls.
func (e *eventSource) Subscribe(_ context.Context, buildID string) (<-chan struct{}, func()) {
	s := e.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.builds[buildID]
	if b == nil {
		return nil, func() {}
	}
	ch := make(chan struct{}, 1)
	if b.watchers == nil {
		b.watchers = map[chan struct{}]struct{}{}
	}
	b.watchers[ch] = struct{}{}
	return ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(b.watchers, ch)
	}
}

// wakeLocked tells every reader of b that it has a new event; a reader
// that has not fetched since the last wake-up is already due to. Called
// with s.mu held.
func wakeLocked(b *build) {
	for ch := range b.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
