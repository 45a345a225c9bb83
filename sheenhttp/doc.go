// Package sheenhttp holds net/http handlers and middleware around the
// SheenApps worker: the signing Proxy for browser front ends, the live
// BuildStream (SSE), and the Verifier for requests signed with the worker's
// secret. Each is built on a sheen.WorkerClient (the Verifier on the
// secret alone); package sheen itself is the outbound client.
//
// # Browser front ends
//
// NewProxy is a handler a Go web backend mounts so a browser can reach the
// worker without the secret: it signs with the client's signer and passes
// through its rate limiter, but only for an allowlist of routes, only for the
// user ProxyConfig.Authorize names (a different user id in the path, query or
// JSON body is refused with 403 before anything reaches the worker), with
// browser headers dropped, bodies capped and responses streamed. Routes that
// name no user (rebuild, version lists) need ProxyConfig.AuthorizeResource.
//
// NewBuildStream streams one build's events to browsers as Server-Sent
// Events (one upstream reader per build and user, resumed from
// Last-Event-ID, ended by an "end" event by Builds.Wait's rules).
//
// # Inbound requests
//
// A Verifier checks signed requests a Go service receives (Verify,
// VerifyRequest, or its Middleware), with the deployed worker's status codes
// and JSON codes. SigningDual requires the v2 signature with a nonce;
// AcceptV1 also lets a request through on its v1 signature alone, as the
// deployed worker does during its rollout window. Its nonce store is a
// MemoryNonceStore unless Verifier.Nonces names another: a NonceChecker
// (sheenredis.NonceStore) shares the replay guard between replicas.
package sheenhttp
