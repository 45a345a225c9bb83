//go:build !unix

package sheenhttp

import "time"

// processCPU is unknown here: the CPU ratio reads 0.
func processCPU() time.Duration { return 0 }
