// Command sheen operates a SheenApps worker from a terminal, on the sheen-go
// SDK: it answers what a user's AI-time balance is and whether they can
// afford a build, starts builds and follows them, lists and rolls back
// versions, downloads archives and checks captured signed requests,
// signing, pacing and retrying as any Go service using the SDK does.
//
//	go install github.com/sheenapps/sheen-go/cmd/sheen@latest
//	sheen --fake build 7d1f7e52-5b0e-4c7a-9a59-2f2d0f0a6b11 --prompt 'A bakery landing page' --watch
//
// # Commands
//
//	balance USER                                  the user's AI-time balance
//	check USER [--op OP] [--size SIZE]            can the user afford it (exit 4 when not)
//	usage USER [--period day|month]               AI time spent
//	history USER [--limit N]                      billing events, newest first
//	build USER --prompt TEXT [--project ID] [--framework F] [--watch]
//	update USER PROJECT --prompt TEXT [--watch]
//	status BUILD --user USER                      where a build stands
//	watch BUILD --user USER                       follow a build to its end (exit 10 when it fails)
//	versions PROJECT [--state all|published|unpublished]
//	rollback USER PROJECT VERSION [--idempotency-key KEY]
//	generate USER PROJECT --prompt TEXT           run a prompt with the worker's model
//	export PROJECT --user USER [--out FILE]       a project's latest archive: the link, or the file
//	download VERSION --user USER [--out FILE]     a version's archive (never replaces a file: exit 11; --force)
//	verify [--file FILE] [--sample]               check a captured signed request (exit 3 when refused)
//
// # Configuration
//
// The client is configured as NewWorkerClientFromEnv configures it, from
// WORKER_BASE_URL, WORKER_SHARED_SECRET, WORKER_SHARED_SECRET_V2,
// WORKER_SIGNING, CLAUDE_WORKER_URL and CLAUDE_SHARED_SECRET; the flags
// --base-url and --signing win over them. The secret is read only from the
// environment or from --secret-file, never from a flag's value (which ps
// would show), and is never printed.
//
// --fake runs the command against an embedded fake worker (package
// sheentest), signing like the deployed worker, seeded with the users,
// project, builds and versions that --help lists; it lives for one command.
//
// # Output
//
// Text for people on stdout; --json writes one JSON document instead, or
// JSON lines for streams (build --watch and watch: the build, its events,
// then a "result" or an "error" line). Durations in JSON are seconds
// (fields named ...Seconds), times RFC 3339. Every failure with --json,
// an unknown command, flag or help topic included, is a document
// {"error": {"kind", "exitCode", "message", "status", "code", ...}} on
// stdout, with nothing on stderr. Messages name flags and environment
// variables, never the SDK's options. Progress bars (build phase and percent, download bytes, rate,
// time left) are drawn on stderr when it is a terminal; elsewhere builds
// are followed with a line per event and downloads with a line per
// quarter. Signed download URLs are shown with their query (the
// credential) redacted unless --show-url.
//
// # Exit codes
//
//	code  kind                  meaning
//	   0  ok                    success (check: affordable; verify: signature valid)
//	   1  failure               any other refusal (400, 409 conflict, 413) or a local error
//	   2  usage                 bad command line or configuration, or input refused before sending
//	   3  auth                  signature or access refused (401, 403, 408, 409 replay); verify: invalid
//	   4  insufficient_balance  not enough AI time (402; check: not affordable)
//	   5  not_found             no such user, build, project, version or archive (404)
//	   6  rate_limited          rate limited for longer than the client waits (429)
//	   7  server                the worker failed (5xx) or sent an unusable answer
//	   8  network               the worker or the object store could not be reached, or timed out
//	   9  outcome_unknown       a build, rollback or generation may have started: check first
//	  10  build_failed          the build (or generation) ran and failed
//	  11  file_exists           the output file exists and was left as it was (--force replaces it)
//	 130  interrupted           interrupted (Ctrl-C)
//
// The kind is the "kind" of a JSON error document. A 429 whose wait fits
// (Retry-After up to 5 minutes) is waited out, with a notice on stderr
// saying when the call is tried again; exit code 6 means the worker asked
// for longer, and the message says when to try again.
package main
