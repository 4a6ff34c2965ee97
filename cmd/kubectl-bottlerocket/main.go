// Command kubectl-bottlerocket is a kubectl plugin for the Bottlerocket update operator:
// `kubectl bottlerocket status|why|pause|resume|retry|exclude|include`. Install it on PATH
// (go install ./cmd/kubectl-bottlerocket); kubectl finds it by its name.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/clock"

	"github.com/bottlerocket-ops/update-operator/cmd/kubectl-bottlerocket/internal/plugin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := plugin.Run(ctx, os.Args[1:], plugin.Options{
		Streams: genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr},
		Clock:   clock.RealClock{},
	})
	stop()
	os.Exit(code)
}
