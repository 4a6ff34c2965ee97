// Package stack starts the whole simulated world in one call, in order: a local cluster
// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok), the operator installed
// from dist/install.yaml, the controller under its service account with leader election, a
// fleet of simulated Bottlerocket hosts each with a real agent on a token bound to the agent
// DaemonSet's pod on its node, and workloads guarded by PodDisruptionBudgets. Stop tears it all
// down and leaves no process behind.
//
// With Options.Light the stack runs on etcd + kube-apiserver only (envtest): no install (the
// controller and the agents are the admin), no scheduler nor kubelets (the fleet plays the
// kubelets of its Nodes), hence no workloads.
package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/controllers"
	"github.com/bottlerocket-ops/update-operator/test/framework/deploy"
	"github.com/bottlerocket-ops/update-operator/test/framework/fleet"
	"github.com/bottlerocket-ops/update-operator/test/framework/hostsim"
	"github.com/bottlerocket-ops/update-operator/test/framework/localcluster"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// Step is a stage of Start, in the order they run.
type Step string

// Start's steps.
const (
	StepCluster    Step = "cluster"
	StepInstall    Step = "install"   // not with Light
	StepWorkloads  Step = "workloads" // only with Workloads: here with WorkloadsFirst, else last
	StepController Step = "controller"
	StepFleet      Step = "fleet"
)

// Options describe a stack.
type Options struct {
	// Nodes is how many simulated Bottlerocket nodes the fleet runs.
	Nodes int
	// Host is every node's simulated host (version, releases, durations).
	Host hostsim.Config
	// RefreshInterval is each agent's refresh interval.
	RefreshInterval time.Duration
	// Controller configures the controller (e.g. its poll interval; the real clock unless
	// set); on a local cluster its OperatorNamespace is the install's.
	Controller controllers.Options
	// Workloads, when set, are created once the fleet runs, their pods spread over its nodes,
	// and waited for until healthy.
	Workloads Workloads
	// WorkloadsFirst creates the workloads right after the install, before the fleet's nodes
	// exist: the scheduler places their pods as the nodes come, unevenly, as on a cluster that
	// grew, so that drains meet the PodDisruptionBudgets' refusals. Start still waits until
	// they are healthy once the fleet runs.
	WorkloadsFirst bool
	// Dir holds the cluster's state (certificates, admin kubeconfig, etcd data, logs, audit
	// log); with Light only the admin kubeconfig. Empty: a temporary directory Stop removes.
	Dir string
	// BinDir holds the local cluster's binaries; empty: localcluster.DefaultBinDir().
	BinDir string
	// Light runs etcd + kube-apiserver only, with admin credentials and no workloads.
	Light bool
	// Helm, when set, is a helm binary that installs the operator from its chart with `helm
	// install`, instead of applying dist/install.yaml (not with Light).
	Helm string
	// Before, when set, is called before each step starts, with a context that ends when
	// the stack stops: to report progress, or to start a watcher that sees the controller,
	// the fleet and the workloads arrive (StepController). An error ends Start.
	Before func(ctx context.Context, step Step, s *Stack) error
	// Logger receives the stack's and the local cluster's progress; zero: discarded.
	Logger logr.Logger
}

// Stack is a running stack. Its fields are set by Start and not to be changed.
type Stack struct {
	// Config is an admin rest config.
	Config *rest.Config
	// Scheme knows the built-in and the project's types.
	Scheme *runtime.Scheme
	// Client is an uncached admin client.
	Client client.Client
	// Kubeconfig is the path of the admin kubeconfig.
	Kubeconfig string
	// Cluster is the local cluster (nil with Light): e.g. to restart its API server.
	Cluster *localcluster.Cluster
	// Install holds the installed operator's identities (nil with Light).
	Install *deploy.Install
	// Fleet is the simulated fleet.
	Fleet *fleet.Fleet
	// AuditLogPath is the API server's audit log ("" with Light).
	AuditLogPath string

	opts      Options
	log       logr.Logger
	ctx       context.Context // ends when Stop begins
	cancel    context.CancelFunc
	workloads []client.Object
	fleetDir  string
	tempDir   string // removed by Stop
	env       *testenv.Env
	stopOnce  sync.Once

	ctrlMu     sync.Mutex
	ctrlCancel context.CancelFunc
	ctrlDone   <-chan struct{}
}

// Start starts the cluster, installs the operator, starts the controller, the fleet and the
// workloads (see WorkloadsFirst), and waits until the workloads are healthy. On error, whatever was started is
// stopped. ctx bounds the start only: the stack runs until Stop.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	if opts.Light && opts.Workloads != nil {
		return nil, errors.New("starting a stack: Light runs no workloads (no scheduler, no kubelets)")
	}
	if opts.Light && opts.Helm != "" {
		return nil, errors.New("starting a stack: Light installs nothing (no kube-controller-manager runs the agents' DaemonSet)")
	}
	if opts.Controller.Clock == nil {
		opts.Controller.Clock = clock.RealClock{}
	}
	s := &Stack{opts: opts, log: opts.Logger}
	if s.log.GetSink() == nil {
		s.log = logr.Discard()
	}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := s.start(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// step is one stage of Start.
type step struct {
	name Step
	run  func(context.Context) error
}

// start runs the steps in order, then waits until the workloads are healthy.
func (s *Stack) start(ctx context.Context) error {
	for _, st := range s.steps() {
		if s.opts.Before != nil {
			if err := s.opts.Before(s.ctx, st.name, s); err != nil {
				return fmt.Errorf("before the stack's %s: %w", st.name, err)
			}
		}
		began := time.Now()
		if err := st.run(ctx); err != nil {
			return fmt.Errorf("starting the stack's %s: %w", st.name, err)
		}
		s.log.Info("Started", "step", st.name, "after", time.Since(began).Round(time.Millisecond))
	}
	if s.opts.Workloads == nil {
		return nil
	}
	return s.WaitWorkloadsHealthy(ctx)
}

// steps are the stages Start runs, in order.
func (s *Stack) steps() []step {
	steps := []step{{StepCluster, s.startCluster}}
	if !s.opts.Light {
		steps = append(steps, step{StepInstall, s.install})
	}
	workloads := s.opts.Workloads != nil
	if workloads && s.opts.WorkloadsFirst {
		steps = append(steps, step{StepWorkloads, s.createWorkloads})
	}
	steps = append(steps,
		step{StepController, func(context.Context) error { return s.StartController() }},
		step{StepFleet, s.startFleet})
	if workloads && !s.opts.WorkloadsFirst {
		steps = append(steps, step{StepWorkloads, s.createWorkloads})
	}
	return steps
}

// startCluster starts the local cluster, or with Light etcd + kube-apiserver.
func (s *Stack) startCluster(ctx context.Context) error {
	if s.opts.Light {
		return s.startLight()
	}
	lc, err := localcluster.Start(ctx, localcluster.Options{
		Dir: s.opts.Dir, BinDir: s.opts.BinDir, AuditLog: true, Logger: s.log.WithName("localcluster"),
	})
	if err != nil {
		return fmt.Errorf("starting the local cluster: %w", err)
	}
	s.Cluster, s.Config, s.Kubeconfig, s.AuditLogPath = lc, lc.Config, lc.Kubeconfig, lc.AuditLogPath
	c, err := testenv.Connect(lc.Config)
	if err != nil {
		return fmt.Errorf("connecting to the local cluster: %w", err)
	}
	s.Client, s.Scheme = c, c.Scheme()
	return nil
}

// install installs the operator from dist/install.yaml or, with Helm, its chart; it follows the agent DaemonSet's pods
// until the stack stops.
func (s *Stack) install(context.Context) error {
	var in *deploy.Install
	var err error
	if s.opts.Helm != "" {
		in, err = deploy.HelmInstall(s.ctx, s.Config, s.opts.Helm, s.Kubeconfig, filepath.Dir(s.Kubeconfig))
	} else {
		in, err = deploy.Apply(s.ctx, s.Config, s.Client)
	}
	if err != nil {
		return fmt.Errorf("installing the operator: %w", err)
	}
	s.Install = in
	return nil
}

// startFleet starts the simulated hosts and their agents. On a local cluster its kwok keeps
// the Nodes (named and zoned by the cluster) and each agent waits for its DaemonSet pod's
// token; with Light the fleet plays the kubelets, names the nodes as the cluster would and
// spreads them over the same zones, and the agents are the admin.
func (s *Stack) startFleet(ctx context.Context) error {
	dir, err := fleet.TempDir()
	if err != nil {
		return fmt.Errorf("creating the fleet's directory: %w", err)
	}
	s.fleetDir = dir
	opts := fleet.Options{
		Nodes: s.opts.Nodes, Prefix: "ip-10-0", Zones: localcluster.Zones, Dir: dir,
		Host: s.opts.Host, RefreshInterval: s.opts.RefreshInterval, Cluster: s.Cluster,
	}
	if s.Install != nil {
		opts.AgentConfig = s.Install.Agent
	}
	if s.Fleet, err = fleet.Start(ctx, s.Config, s.Scheme, opts); err != nil {
		return fmt.Errorf("starting the fleet: %w", err)
	}
	return nil
}

// Stop stops the controller, the fleet and the cluster, in that order, and removes what the
// stack wrote in temporary directories; it returns once every process and goroutine it
// started is gone. It may be called more than once.
func (s *Stack) Stop() {
	s.stopOnce.Do(func() {
		s.cancel()
		s.StopController()
		if s.Fleet != nil {
			s.Fleet.Stop()
		}
		s.removeAll(s.fleetDir)
		if s.Cluster != nil {
			s.Cluster.Stop()
		}
		if s.env != nil {
			if err := s.env.Stop(); err != nil {
				s.log.Error(err, "Stopping the control plane")
			}
		}
		s.removeAll(s.tempDir)
	})
}

func (s *Stack) removeAll(dir string) {
	if dir == "" {
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		s.log.Error(err, "Removing a directory", "dir", dir)
	}
}
