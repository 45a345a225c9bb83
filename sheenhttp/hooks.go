package sheenhttp

import (
	"github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/bridge"
	"github.com/sheenapps/sheen-go/internal/wire"
)

// Why this exists: the Proxy and the BuildStream send requests through a
// WorkerClient's own signing, rate-limited transport, log with its logger,
// record on its telemetry and read build events as Builds.Follow does. The
// client does not export those parts; package sheen hands them over through
// internal/bridge from its init (see sheen's bridge.go), and this is the one
// place they are read. Everything the exported API offers (RateLimit,
// Billing.InvalidateBalance, Builds.Wait) is used through it instead.
var hooks = bridge.Get[*sheen.WorkerClient, sheen.CallOption, sheen.EventSource]()

// maxErrorBody caps how much of an error body the proxy reads to find the
// worker's code (as the client caps it).
const maxErrorBody = 8 << 10

// escapeID path-escapes one id after checking that it cannot be mistaken
// for a path of its own (the client's rule, internal/wire).
func escapeID(what, id string) (string, error) {
	esc, reason := wire.EscapeID(id, sheen.MaxIDLength)
	if reason != "" {
		return "", &sheen.ValidationError{Field: what, Reason: reason}
	}
	return esc, nil
}

// checkID refuses an id the worker could not use in a path.
func checkID(what, id string) error {
	_, err := escapeID(what, id)
	return err
}
