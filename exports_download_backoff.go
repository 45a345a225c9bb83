package sheen

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Defaults of WithDownloadBackoff.

// WithDownloadBackoff sets the waits between the attempts of a download
// (defaults DefaultDownloadBackoffBase and DefaultDownloadBackoffMax). After
// an attempt that made progress (took the download 64 KiB or more past the
// furthest byte any earlier attempt reached) the wait is about base; after
// n attempts in a row without progress it is about base·2^(n-1), capped at
// max. Each
// wait is drawn at random from its upper half, so clients that lost the same
// store do not come back in step. The waits use WithClock's clock and end
// with the download's context.
//
// It is separate from RetryConfig.BackoffBase, which paces retries of calls to the
// worker.
func WithDownloadBackoff(base, max time.Duration) Option {
	return func(c *config) error {
		if base <= 0 || max < base {
			return fmt.Errorf("sheen: WithDownloadBackoff: base %s and max %s; want 0 < base <= max", base, max)
		}
		c.exports.backoff = downloadBackoff{base: base, max: max}
		return nil
	}
}

// downloadBackoff is the wait before the next attempt of a download.
type downloadBackoff struct {
	base, max time.Duration
}

func defaultDownloadBackoff() downloadBackoff {
	return downloadBackoff{base: DefaultDownloadBackoffBase, max: DefaultDownloadBackoffMax}
}

// delay is the wait after idle attempts in a row without progress (0 when
// the last attempt brought bytes): base for 0 and 1, doubling from there,
// capped at max; drawn from the upper half.
func (b downloadBackoff) delay(idle int) time.Duration {
	d := b.base << min(max(idle-1, 0), 30)
	if d <= 0 || d > b.max {
		d = b.max
	}
	half := d / 2
	return d - half + rand.N(half+1)
}

// minProgress is how many bytes past the furthest offset any earlier
// attempt reached an attempt must bring to count as progress: one read
// buffer. An attempt that brings less (a store or proxy that ends every
// response after a few bytes, or one that ignores Range and breaks the
// restarted body before the old mark) uses up the retry budget instead of
// going on for hours; a connection that breaks every few hundred KiB still
// counts as progressing.
const minProgress = downloadBufSize

// retryBudget decides whether a download goes on after a failed attempt.
// It counts attempts in a row without progress: an attempt that brought at
// least minProgress new bytes (past the high-water mark) starts the count
// again, so a store that keeps breaking the connection but honours Range
// still gets the whole archive across.
type retryBudget struct {
	max  int // failures without progress allowed in a row; 0: no retries
	idle int // failures without progress in a row so far
}

// spend records a failed attempt that brought n bytes past the high-water
// mark and reports whether another may follow.
func (b *retryBudget) spend(n int64) bool {
	if n >= minProgress {
		b.idle = 0
	} else {
		b.idle++
	}
	return b.max > 0 && b.idle <= b.max
}
