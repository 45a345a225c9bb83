package sheen

import (
	"time"

	"github.com/sheenapps/sheen-go/internal/fakeclock"
)

// fakeClock is the module's manual clock (internal/fakeclock).
type fakeClock = fakeclock.Clock

func newFakeClock(start time.Time) *fakeClock { return fakeclock.New(start) }
