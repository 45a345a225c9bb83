// Package sheentest is an in-process fake of the SheenApps Worker API, in the
// spirit of net/http/httptest: a real HTTP server on a loopback port, as
// strict as the deployed worker, for testing code that uses the sheen SDK
// without a worker, and for demos.
//
//	srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithSigning(sheen.SigningDual))
//	client, err := srv.Client()
//
// Server.Client is ready for a test: it is not paced (the server limits
// nothing unless WithRateLimit says so), it retries 5xx faults after
// milliseconds, and it follows builds without polling delays (it is woken by
// each event the server writes), so a whole create, Wait, export and
// download flow takes milliseconds. ClientOptions give a client of your own
// (for httpmock, say) the same pace.
//
// What it serves, from memory:
//
//   - Billing: balances (the deployed bucketed shape by default, the v2.1
//     shape with WithShapes(ShapesV21)), check-sufficient (402 or
//     sufficient:false when short, by shape), the batch check, usage and
//     billing events. New users start with a welcome bonus and daily gift;
//     WithUser, SetBalance and Credit set balances. A build's AI time is
//     charged when it deploys.
//   - Builds: create, update, rollback (Idempotency-Key replayed for 24 h),
//     rebuild, status, versions, and build events with increasing ids. Builds
//     walk development, dependencies, build, deploy and metadata; WithBuildPace
//     chooses instant (the default), step by step (Step, Finish) or timed.
//     FailNextBuild and FailNextMetadata script failures.
//   - Exports: links to a fake object store on the same server that checks its
//     own signed query, answers 403 once a link expires (ExpireLinks), honours
//     Range and serves a real .tar.gz named .zip, as the worker does. A dropped
//     artifact (DropArtifact) answers 404 with canRebuild; archives over
//     WithMaxExportSize answer 413.
//
// Every /v1 request is verified with sheenhttp.Verifier exactly as the deployed
// worker does for the configured scheme: 401 MISSING_SIGNATURE, 403
// INVALID_SIGNATURE, 408 TIMESTAMP_OUT_OF_RANGE (120 s, against the server's
// clock, which WithClockSkew can move), 409 REPLAY_ATTACK_DETECTED (nonces
// kept 600 s). Bodies over 1 MiB answer 413. Request bodies are checked
// against the contract's schemas (openapi/worker-api.yaml) and refused the
// way the worker's web framework refuses them: 400 FST_ERR_VALIDATION with
// its message, such as "body must have required property 'isUpdate'"
// (templateFiles and metadata, which the deployed worker ignores, pass
// unchecked under a timestamped scheme). Rate limiting is off by
// default; WithRateLimit(60) gives each client v2.1's fixed window of 60
// requests per minute with accurate x-ratelimit-* headers and 429 with
// retry-after, and WithDeployedRateHeaders sends the deployed worker's fixed
// headers and limits nothing.
//
// AddFault plays misbehaviour on chosen calls of a route: any status with any
// body (HTML, an empty 402, each 402 shape), delays, connections dropped
// before the answer or after some bytes of it, bodies cut short. Routes are
// named by the sheen.Route* constants (and RouteStore for the object store),
// in Fault.Route, Calls and Request.Route. Requests lists what arrived, with
// signatures and signed queries redacted.
//
// # Golden answers for httpmock and stubs
//
// Fixtures and FixtureNamed return the server's answers, recorded and checked
// in under sheentest/fixtures (the package's tests fail when the server
// drifts from them): every route's answer, the 402 shapes, a failed build's
// events, a missing archive, the archive itself, and the refusals any route
// can give. Fixture.Respond is an httpmock Responder, and MatchRoute turns a
// route constant into the method and URL regexp httpmock matches on:
//
//	mock := httpmock.NewMockTransport()
//	method, url := sheentest.MatchRoute(sheen.RouteBalance)
//	mock.RegisterRegexpResponder(method, url, sheentest.FixtureNamed("balance").Respond)
//	client, err := sheen.NewWorkerClient(append(sheentest.ClientOptions(),
//		sheen.WithBaseURL("https://worker.test"), sheen.WithSecret(secret),
//		sheen.WithHTTPClient(&http.Client{Transport: mock}))...)
package sheentest
