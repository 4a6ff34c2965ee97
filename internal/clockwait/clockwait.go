// Package clockwait waits on an injected clock, so that a fake clock decides when a wait ends.
package clockwait

import (
	"context"
	"time"

	"k8s.io/utils/clock"
)

// Sleep waits d on clk, or until ctx ends (then it returns ctx's error). A wait of zero or
// less returns at once: a fake clock would hold even a zero timer until it is stepped.
func Sleep(ctx context.Context, clk clock.Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}
