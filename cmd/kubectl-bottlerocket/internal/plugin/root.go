// Package plugin is kubectl-bottlerocket: the status of Bottlerocket rollouts, why a node
// waits, and one word for each control the operator documents. Every decision (what to print,
// what unblocks a node, which patch a control makes) is a pure function of the objects and the
// injected clock; the commands only read and patch.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/clock"

	"github.com/bottlerocket-ops/update-operator/internal/buildinfo"
)

// FieldManager names the plugin's writes in managedFields.
const FieldManager = "kubectl-bottlerocket"

// Options are what the commands take from their environment.
type Options struct {
	Streams genericiooptions.IOStreams
	// Clock is the only source of time (the annotations' values, every "in 3h" printed).
	Clock clock.PassiveClock
	// Location is the zone times are printed in (default: the machine's).
	Location *time.Location
}

// Run runs the plugin with args (without the program name) and returns the exit code; an
// error is printed on the error stream.
func Run(ctx context.Context, args []string, o Options) int {
	cmd := NewCommand(o)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		_, _ = fmt.Fprintf(o.Streams.ErrOut, "error: %v\n", err) // nowhere left to report a failure to
		return 1
	}
	return 0
}

// NewCommand builds the root command and its subcommands.
func NewCommand(o Options) *cobra.Command {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	flags := genericclioptions.NewConfigFlags(true)
	root := &cobra.Command{
		Use: "kubectl-bottlerocket",
		// kubectl runs the plugin as `kubectl bottlerocket`: usage and errors say so.
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl bottlerocket"},
		Short:       "See and steer Bottlerocket node updates (UpdatePolicies and BottlerocketNodes)",
		Long: `See and steer Bottlerocket node updates.

status, why and plan read UpdatePolicies and BottlerocketNodes (plan the Nodes too); pause, resume, retry, exclude and
include each make one patch, the one the operator's docs show, with your kubeconfig's identity.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       fmt.Sprintf("%s (commit %s)", buildinfo.Version, buildinfo.Commit),
	}
	root.SetVersionTemplate("kubectl bottlerocket {{.Version}}\n")
	root.SetOut(o.Streams.Out)
	root.SetErr(o.Streams.ErrOut)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w\nSee '%s --help' for usage", err, c.CommandPath())
	})
	flags.AddFlags(root.PersistentFlags())
	e := &env{Options: o, flags: flags}
	root.AddCommand(e.statusCommand(), e.whyCommand(), e.pauseCommand(), e.resumeCommand(),
		e.retryCommand(), e.excludeCommand(), e.includeCommand(), e.planCommand())
	return root
}

// usageArgs checks the number of arguments and names what is missing.
func usageArgs(what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != 1 {
			return fmt.Errorf("%s takes exactly one %s, got %d arguments\nSee '%s --help' for usage", c.Name(), what, len(args), c.CommandPath())
		}
		return nil
	}
}

var errNoOutput = errors.New("unknown output format")
