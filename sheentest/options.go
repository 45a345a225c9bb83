package sheentest

import (
	"testing"
	"time"

	sheen "github.com/sheenapps/sheen-go"
)

// Option configures a Server.
type Option func(*settings)

// Shapes selects which response shapes the server answers with where the
// v2.1 design and the deployed worker differ.
type Shapes int

const (
	// ShapesDeployed answers like the deployed worker (the default): the
	// bucketed balance, 402 from check-sufficient, the builds 402 body.
	ShapesDeployed Shapes = iota
	// ShapesV21 answers like the v2.1 design: the v2.1 balance shape and
	// sufficient:false with 200 from check-sufficient.
	ShapesV21
)

// BuildPace says how builds move through their phases.
type BuildPace int

const (
	// PaceInstant runs a build to its end when it is created: every event
	// is written at once. The default.
	PaceInstant BuildPace = iota
	// PaceManual moves builds only when Server.Step or Server.Finish is
	// called: for tests that look at a build mid-way.
	PaceManual
	// PaceTimed moves every build one step each StepInterval: for demos.
	PaceTimed
)

type settings struct {
	tb              testing.TB
	secret          string
	secretV2        string
	signing         sheen.Signing
	shapes          Shapes
	pace            BuildPace
	stepInterval    time.Duration
	ratePerMinute   int
	deployedHeaders bool
	maxExportSize   int64
	skew            time.Duration
	users           map[string]time.Duration
	welcomeBonus    time.Duration
	dailyGift       time.Duration
	linkTTL         time.Duration
	artifactPadding int64
	generate        generateSettings
}

func defaultSettings() settings {
	return settings{
		signing:       sheen.SigningBodyPath,
		shapes:        ShapesDeployed,
		pace:          PaceInstant,
		stepInterval:  300 * time.Millisecond,
		maxExportSize: 2 << 30,
		welcomeBonus:  50 * time.Minute,
		dailyGift:     15 * time.Minute,
		users:         map[string]time.Duration{},
		linkTTL:       24 * time.Hour,
	}
}

// WithTest ties the server to a test: it is closed by tb.Cleanup.
func WithTest(tb testing.TB) Option { return func(s *settings) { s.tb = tb } }

// WithSecret sets the shared secret; by default a random one is made.
func WithSecret(secret string) Option { return func(s *settings) { s.secret = secret } }

// WithSecretV2 sets a separate secret for x-sheen-sig-v2 signatures.
func WithSecretV2(secret string) Option { return func(s *settings) { s.secretV2 = secret } }

// WithSigning sets the scheme requests must be signed with (default
// sheen.SigningBodyPath). Requests are verified with sheenhttp.Verifier exactly
// as the deployed worker does.
func WithSigning(scheme sheen.Signing) Option { return func(s *settings) { s.signing = scheme } }

// WithShapes selects v2.1 or deployed-worker response shapes.
func WithShapes(shapes Shapes) Option { return func(s *settings) { s.shapes = shapes } }

// WithBuildPace sets how builds progress; for PaceTimed, interval is the
// time between two steps.
func WithBuildPace(pace BuildPace, interval time.Duration) Option {
	return func(s *settings) {
		s.pace = pace
		if interval > 0 {
			s.stepInterval = interval
		}
	}
}

// WithRateLimit makes the server limit each client to a fixed window of
// perMinute requests per minute, with accurate x-ratelimit-* headers and 429
// with retry-after when the window is used up: WithRateLimit(60) is v2.1's
// limit. By default the server limits nothing and sends no rate-limit
// headers, so tests of your own code are not slowed by pacing; zero or less
// turns limiting off again.
func WithRateLimit(perMinute int) Option { return func(s *settings) { s.ratePerMinute = perMinute } }

// WithDeployedRateHeaders makes the server send the deployed worker's fixed
// rate-limit headers (remaining 45, reset in an hour, no limit) instead of
// accurate ones, and limit nothing.
func WithDeployedRateHeaders() Option { return func(s *settings) { s.deployedHeaders = true } }

// WithMaxExportSize sets the size over which exports answer 413 (default
// 2 GiB).
func WithMaxExportSize(bytes int64) Option { return func(s *settings) { s.maxExportSize = bytes } }

// WithClockSkew makes the server's clock run d ahead of the local one (d
// may be negative): timestamped signatures are checked against it, and the
// Date header and serverTime report it.
func WithClockSkew(d time.Duration) Option { return func(s *settings) { s.skew = d } }

// WithUser seeds a user whose balance is paid AI time only (no bonus).
// Users that are not seeded start with the welcome bonus and daily gift.
func WithUser(userID string, paid time.Duration) Option {
	return func(s *settings) { s.users[userID] = paid }
}

// WithWelcomeBonus sets the AI time new users start with (default 50
// minutes of welcome bonus and a 15-minute daily gift).
func WithWelcomeBonus(welcome, daily time.Duration) Option {
	return func(s *settings) { s.welcomeBonus, s.dailyGift = welcome, daily }
}

// WithLinkTTL sets how long download links stay valid (default 24 h).
func WithLinkTTL(d time.Duration) Option { return func(s *settings) { s.linkTTL = d } }

// WithArtifactPadding adds that many pseudo-random bytes to every generated
// archive, for tests and benchmarks of large downloads.
func WithArtifactPadding(bytes int64) Option { return func(s *settings) { s.artifactPadding = bytes } }
