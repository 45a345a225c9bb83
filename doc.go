// Package sheen is the Go SDK for the SheenApps Worker API: the service that
// builds web projects from prompts, bills them in AI-time seconds, streams
// build progress and hands out signed download links.
//
// # Quick start
//
//	client, err := sheen.NewWorkerClientFromEnv() // WORKER_BASE_URL, WORKER_SHARED_SECRET
//	if err != nil {
//		log.Fatal(err)
//	}
//	bal, err := client.Billing.Balance(ctx, userID)
//
// One WorkerClient serves a whole program: it is safe for concurrent use and
// its services (Billing, Builds, Exports) share one signer, one rate limiter
// and one retry policy. Endpoints the SDK does not wrap yet are one
// WorkerClient.Do call away, through the same path.
//
// # Where a request goes
//
// A service method builds a path (every ID checked and path-escaped) and a
// body, and calls the core (client.go). The core hands the request to
// go-retryablehttp, whose HTTP transport is the signing transport
// (transport.go): each attempt waits for the rate limiter (ratelimit.go), is
// signed afresh (auth.go) and reports its response headers back to the
// limiter. The retry policy (retry.go) decides after each attempt. Errors
// are decoded in errors.go.
//
// # Signing
//
// Three schemes exist, chosen with WithSigning:
//
//   - SigningBodyPath (default, v2.1): x-sheen-signature over body + path
//     with query.
//   - SigningTimestamp (v1): x-sheen-timestamp and x-sheen-signature over
//     timestamp + body (plus an advisory x-sheen-nonce).
//   - SigningDual: what the deployed worker wants, v1 plus x-sheen-nonce and
//     x-sheen-sig-v2 over method, canonical path, timestamp, nonce and body.
//
// Every attempt, retries included, gets a fresh timestamp and nonce: the
// deployed worker burns nonces, so a re-sent signature would be refused as a
// replay. When the worker answers 408 TIMESTAMP_OUT_OF_RANGE, or an inline
// check's 401 with serverTime, the client measures the offset of its clock
// from the worker's and retries once.
//
// The deployed worker refuses v2.1 body+path signatures on every route. A
// client left on the default scheme switches to SigningDual, once and for
// every later request, the first time the worker refuses a request in a way
// only the deployed worker does (408 although no timestamp was sent, or the
// 401 with serverTime), and retries: a refused signature has no side effect.
// A client that chose its scheme with WithSigning or WORKER_SIGNING keeps it,
// and gets an *AuthError that names the option and the variable to change.
// sheenhttp.Verifier checks signed requests the way the worker does, for
// servers that receive them and for the fake worker in sheentest.
//
// Request bodies are JSON that JavaScript's JSON.stringify(JSON.parse(body))
// writes back unchanged (compact, "<", ">" and "&" and U+2028 literal,
// integer-like keys first in ascending order, numbers as JavaScript writes
// doubles), because some deployed routes re-serialise the body and compare.
// The v2 canonical query is sorted with ICU collation, as the worker's
// localeCompare does. GET, HEAD and DELETE carry no body.
//
// # Errors
//
// Every failure from the worker is an *APIError with the status, the
// machine-readable Code (from whichever envelope the route uses), a message,
// the correlation id and the raw body (capped). Statuses with meaning get a
// typed error that wraps it: *InsufficientBalanceError (402, whatever body
// shape, even empty), *RateLimitError (429, or a rate-limit wait that cannot
// fit in the context deadline), *PayloadTooLargeError (413) and *AuthError
// (401, 403, 408 TIMESTAMP_OUT_OF_RANGE, 409 REPLAY_ATTACK_DETECTED). Use
// errors.As for the details and errors.Is with ErrInsufficientBalance,
// ErrRateLimited, ErrUnauthorized, ErrNotFound, ErrConflict and friends to
// branch. Bad input is refused before any request with a *ValidationError;
// a response the SDK cannot use (HTML where JSON was due) is a
// *ResponseError. No error or log line contains the secret, a signature or
// a signed download URL's query.
//
// # Retries and rate limits
//
// A call is tried up to 4 times (WithRetry), each attempt bounded by the
// attempt timeout (RetryConfig.AttemptTimeout, 30 s by default), so no call
// waits for ever on a silent worker (a negative AttemptTimeout turns the
// bound off, for callers whose every context has a deadline). A call that
// may start and bill a build is never sent twice unless the worker provably
// did not act on it. Safe calls are GET, HEAD, PUT, DELETE, the billing
// checks and calls with an Idempotency-Key (WithIdempotencyKey; Rollback
// always sends one, and the worker replays its answer by key). A key does
// not make CreatePreview, UpdateProject or Rebuild safe: the worker keeps
// no replay cache for them, so a second attempt would bill a second build.
//
//	attempt ended with                          safe call        other call
//	connection refused, DNS failure, dial error retried          retried
//	  or TLS handshake timeout
//	TLS certificate not trusted, or the other   final            final
//	  end does not speak TLS
//	a header value, method or out refused       final, unsent    final, unsent
//	the client's own limiter or signer refused  final            final
//	reset or attempt timeout after sending      retried          ErrOutcomeUnknown
//	2xx cut short                               retried          ErrOutcomeUnknown
//	2xx not usable (not JSON, not the shape     final            ErrOutcomeUnknown
//	  the call expects, over the size cap)
//	408 TIMESTAMP_OUT_OF_RANGE, 401 serverTime  retried once     retried once
//	  (when the signer corrected its clock or scheme from it)
//	429                                         retried          retried
//	502, 503, 504                               retried          ErrOutcomeUnknown
//	500 and other 5xx (not 501, 505)            retried          ErrOutcomeUnknown
//	any other status                            final            final
//
// A non-2xx answer is judged by its status even when its body is cut short:
// the status proves the worker answered. An answer read whole is the call's
// result even if the context ends just after it.
//
// ErrOutcomeUnknown is matched by an *OutcomeUnknownError that wraps the last
// failure (an *APIError for a 5xx) and carries the correlation id: the build
// may have started, so reconcile before trying again. Waits are capped (5
// minutes by default) and never outlast the context: when a 429 asks for
// longer, the call returns a *RateLimitError at once; when another
// failure's backoff cannot fit, the call returns that failure's error.
//
// The client paces itself at WithRateLimit requests per minute (60 by
// default, v2.1's limit, after a burst of 4) and mirrors the worker's window
// as its x-ratelimit-* headers describe it: until the window is known (the
// first answer, or after a reset) requests go one at a time; then never
// more requests are in flight than the window has remaining; an answer with
// a lower limit re-plans the window for every goroutine at once, and a 429
// pauses every goroutine for its Retry-After, except a 429 from a build
// limit (on CreatePreview, UpdateProject or Rebuild, whose headers do not
// say the window is spent), which holds back only the same user's builds,
// the same project's updates or the same version's rebuilds. The deployed
// worker's fixed
// headers on unlimited routes (remaining 45, reset in an hour, no limit
// header) do not slow it down. WorkerClient.RateLimit returns a snapshot.
//
// # Billing and caching
//
// Billing.Balance keeps each user's balance for 5 minutes
// (CacheConfig.BalanceTTL), shared by concurrent callers (one request for many
// misses), and drops it as soon as the client learns it changed: a 402 for
// that user from any call, a build started for them, or InvalidateBalance.
// RefreshBalance skips the cache. CheckSufficient treats "not enough" as an
// answer, not a failure: a 200 with sufficient:false and a 402 in any of
// the worker's shapes both give Sufficient == false and a nil error.
// WaitForBalance polls until a payment lands.
//
// # Builds and their events
//
// Builds.CreatePreview starts a build (WithPreBuildCheck runs v2.1's balance
// check first); Builds.Wait follows it to the end and returns a *BuildResult or a
// *BuildFailedError with the worker's code and user-facing message; a
// metadata failure after a successful deploy is reported in the result and
// does not turn the build into a failure. Builds.Follow yields every event
// once, in order, resuming from the largest id seen; its poll interval
// follows the phase as the worker's own UI does (1 s build and deploy, 3 s
// dependencies, 2 s otherwise). Events come from the worker's HTTP endpoint
// by default (which spends the client's rate limit), or straight from the
// Postgres table the worker writes, through package pgevents. Reading stops
// with a *BuildStalledError (ErrBuildStalled) when no new event comes
// within FollowOptions.StallTimeout (15 minutes by default): the outcome is
// then unknown, and Wait called again with AfterEventID goes on.
//
// # Exports
//
// Exports.ProjectLink and Exports.VersionLink hand out download links,
// cached until an hour before they expire. A DownloadLink is a value: each
// caller gets its own copy, and a cache hit allocates nothing. Its URL is a
// bearer credential: DownloadLink's String, GoString, LogValue and
// MarshalJSON redact its query; SignedURL returns it whole.
// Exports.Download streams an archive with flat memory through a plain HTTP
// client of its own (no signature headers reach the object store), resumes
// with Range after a break (and gives up after DownloadOptions.Retries
// attempts in a row that brought no byte past the furthest offset reached), fetches a fresh link once when the store answers
// 403, refuses a body cut short, and reports the archive's real format. An
// archive that is gone gives an *ArtifactMissingError; RebuildMissing gets it
// back.
//
// # Browser front ends and inbound requests
//
// Code that serves HTTP uses package sheenhttp: its NewProxy lets a browser
// reach the worker through a client without the secret, its BuildStream
// streams a build's events to browsers as Server-Sent Events, and its
// Verifier checks requests signed with the worker's secret.
//
// # AI generation
//
// AI.Generate runs a prompt on a project with the worker's model (POST
// /generate). It is never sent twice unless the worker provably did not
// start it, reads the streamed answer under a stall timeout rather than the
// attempt timeout, and can hand the prompt to GenerateConfig.Fallback when the
// worker's budget is spent or the worker is down.
//
// # Fleets and observability
//
// WithSharedLimiter and CacheConfig.Shared (package sheenredis implements them
// on Redis) let every replica of a service share the worker's quota, its
// balances and its download links; a sheenhttp.NonceChecker shares the
// Verifier's replay guard. The client records a span per call and per
// attempt and its metrics to the global OpenTelemetry providers, or to
// those given with WithTelemetry; no secret, signature, signed URL, body or
// (unless TelemetryConfig.UserIDs) user id is ever recorded.
//
// # Per-call options
//
// Every service method takes ...CallOption last: headers, a correlation id,
// an idempotency key, a timeout or attempt count for this call alone, and
// WithResponse to see the worker's answer (status, headers, correlation id,
// attempts, rate-limit state, whether it came from a cache) on success. The
// settings only following or downloading understands are a typed parameter
// before them instead: *FollowOptions for Builds.Follow, Builds.Wait and
// Exports.RebuildMissing, *DownloadOptions for Exports.Download and
// DownloadToFile; nil means every default, and so does each zero field.
//
// # Testing
//
// Package sheentest is an in-process fake worker as strict as the real one,
// with fault injection; its Server.Client returns a client pointed at it.
//
// # Logging
//
// WithLogger takes a *slog.Logger; the client writes one debug record per
// attempt (method, path without query, status, attempt, wait).
package sheen
