package clockwait_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/bottlerocket-ops/update-operator/internal/clockwait"
)

func TestSleepEndsWhenTheClockSaysSo(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	done := make(chan error, 1)
	go func() { done <- clockwait.Sleep(context.Background(), clk, time.Minute) }()
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	clk.Step(time.Minute - time.Nanosecond)
	select {
	case err := <-done:
		t.Fatalf("Sleep returned %v a nanosecond early", err)
	default:
	}
	clk.Step(time.Nanosecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := clockwait.Sleep(ctx, clk, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep = %v, want context.Canceled", err)
	}
	if err := clockwait.Sleep(context.Background(), clk, 0); err != nil {
		t.Fatalf("a zero wait = %v, want at once nil", err)
	}
}
