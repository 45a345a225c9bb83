// Package sheenhttp holds net/http handlers and middleware around the
// SheenApps worker: the signing Proxy for browser front ends, the live
// BuildStream (SSE), and the Verifier for requests signed with the worker's
// secret.
package sheenhttp
