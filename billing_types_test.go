package sheen

import (
	"testing"
	"time"
)

func TestBillingShortfall(t *testing.T) {
	for _, tc := range []struct {
		c    SufficientCheck
		want time.Duration
	}{
		{SufficientCheck{Required: 3 * time.Minute, Available: time.Minute, HasAvailable: true}, 2 * time.Minute},
		{SufficientCheck{Required: 3 * time.Minute}, 0},
		{SufficientCheck{Sufficient: true, Required: 3 * time.Minute, HasAvailable: true}, 0},
		{SufficientCheck{Required: time.Minute, Available: 2 * time.Minute, HasAvailable: true}, 0},
	} {
		if got := tc.c.Shortfall(); got != tc.want {
			t.Errorf("%+v.Shortfall() = %s, want %s", tc.c, got, tc.want)
		}
	}
}

func TestBillingEstimateProjectSize(t *testing.T) {
	for n, want := range map[int]ProjectSize{-1: ProjectSizeSmall, 0: ProjectSizeSmall, 9: ProjectSizeSmall, 10: ProjectSizeMedium, 49: ProjectSizeMedium, 50: ProjectSizeLarge, 5000: ProjectSizeLarge} {
		if got := EstimateProjectSize(n); got != want {
			t.Errorf("EstimateProjectSize(%d) = %s, want %s", n, got, want)
		}
	}
}
