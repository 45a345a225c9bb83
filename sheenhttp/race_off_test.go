//go:build !race

package sheenhttp

// raceEnabled reports a test binary built with -race, whose instrumentation
// changes allocation counts.
const raceEnabled = false
