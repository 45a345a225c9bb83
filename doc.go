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
// replay. When the worker answers 408 TIMESTAMP_OUT_OF_RANGE the client
// measures the offset of its clock from the worker's and retries once.
// Verifier checks signed requests the way the worker does, for servers that
// receive them and for the fake worker in sheentest.
//
// Request bodies are JSON written the way JavaScript's JSON.stringify writes
// them (compact, "<", ">" and "&" literal, struct field order), because
// some deployed routes re-serialise the body and compare. One known
// difference: Go escapes U+2028 and U+2029 and JavaScript does not; avoid
// them in prompts signed with the timestamped schemes. GET, HEAD and DELETE
// carry no body.
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
// A call is tried up to 4 times (WithRetry). 429 is always retried after
// Retry-After (or the rate-limit reset); 502, 503, 504 and connection
// refusals are retried for every method; other 5xx and connections lost
// after the request was sent only for GET and HEAD or when the call carries
// an Idempotency-Key (WithIdempotencyKey). Waits are capped (5 minutes by
// default) and never outlast the context: when the worker asks for longer,
// the call returns a *RateLimitError at once.
//
// The client paces itself at WithRateLimit requests per minute (60 by
// default, v2.1's limit) and steers by the worker's x-ratelimit-* headers:
// when a window's remaining quota is spoken for by requests in flight, no
// further request leaves before the reset; a lower limit on a short window
// is adopted; a 429 pauses every goroutine of the client. The deployed
// worker's fixed headers on unlimited routes (remaining 45, reset in an
// hour, no limit header) do not slow it down. WorkerClient.RateLimit
// returns a snapshot.
//
// # Logging
//
// WithLogger takes a *slog.Logger; the client writes one debug record per
// attempt (method, path without query, status, attempt, wait).
package sheen
