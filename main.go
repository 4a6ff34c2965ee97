// Command bottlerocket-update-operator keeps fleets of Bottlerocket nodes up to date. It runs
// as the cluster-wide controller (-controller) or as the per-node agent (-agent).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"time"
	_ "time/tzdata" // maintenance windows name IANA time zones; the image has no zoneinfo

	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/bottlerocket-ops/update-operator/agent"
	"github.com/bottlerocket-ops/update-operator/agent/hostapi"
	updatesv1alpha1 "github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers"
	"github.com/bottlerocket-ops/update-operator/internal/buildinfo"
	"github.com/bottlerocket-ops/update-operator/internal/metricsauth"
	"github.com/bottlerocket-ops/update-operator/internal/residency"
)

// controllerScheme holds every type the controller reads or writes: the built-in ones and
// its own.
func controllerScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(updatesv1alpha1.AddToScheme(s))
	return s
}

// agentScheme holds the one type the agent reads and writes, its BottlerocketNode: a copy of
// the built-in ones (about 0.5 MB of heap) would be kept for nothing on every node.
func agentScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(updatesv1alpha1.AddToScheme(s))
	return s
}

// options are the command-line flags shared by both modes.
type options struct {
	controller bool
	agent      bool
	version    bool

	metricsAddr          string
	metricsRuntime       bool
	metricsSecure        bool
	probeAddr            string
	pprofAddr            string
	leaderElect          bool
	leaderElectionNS     string
	nodeName             string
	apiSocket            string
	bootIDFile           string
	operatorNamespace    string
	agentRefreshInterval string
}

func main() {
	var o options
	flag.BoolVar(&o.controller, "controller", false, "Run the cluster-wide controller.")
	flag.BoolVar(&o.agent, "agent", false, "Run the per-node agent (DaemonSet).")
	flag.BoolVar(&o.version, "version", false, "Print the version and commit this binary was built from, and exit.")
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8443", "Address the metrics endpoint binds to; 0 disables it.")
	flag.BoolVar(&o.metricsSecure, "metrics-secure", true, "Serve metrics over HTTPS to clients the API server authenticates and authorises (get on the non-resource URL /metrics); false serves plain HTTP to anyone who reaches the port.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to.")
	flag.StringVar(&o.pprofAddr, "pprof-bind-address", "", "Controller: address to serve Go's profiles on (/debug/pprof/); empty disables them.")
	flag.BoolVar(&o.leaderElect, "leader-elect", false, "Controller: elect a leader so that only one replica acts.")
	flag.StringVar(&o.leaderElectionNS, "leader-election-namespace", "", "Controller: namespace of the leader election lease (default: the pod's namespace).")
	flag.StringVar(&o.operatorNamespace, "operator-namespace", os.Getenv("POD_NAMESPACE"), "Controller: namespace of the operator's own pods, which are never evicted.")
	flag.StringVar(&o.nodeName, "node-name", os.Getenv("NODE_NAME"), "Agent: the node this agent runs on (downward API NODE_NAME).")
	flag.StringVar(&o.apiSocket, "api-socket", "/run/api.sock", "Agent: the host's update API socket.")
	flag.StringVar(&o.bootIDFile, "boot-id-file", "/proc/sys/kernel/random/boot_id", "Agent: file holding the host's boot ID.")
	flag.BoolVar(&o.metricsRuntime, "metrics-runtime", false, "Agent: also export the Go runtime's, the process's, the work queue's and controller-runtime's metrics (the controller always does).")
	flag.StringVar(&o.agentRefreshInterval, "refresh-interval", "30m", "Agent: how often the host's list of updates is refreshed (jittered).")
	zapOpts := zap.Options{Development: false, TimeEncoder: zapcore.ISO8601TimeEncoder}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	if o.version {
		fmt.Println(buildinfo.String())
		return
	}

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	log.Info("Starting", "version", buildinfo.Version, "commit", buildinfo.Commit)

	var err error
	switch {
	case o.controller == o.agent:
		err = fmt.Errorf("exactly one of -controller or -agent is required")
	case o.controller:
		err = runController(o)
	default:
		err = runAgent(o)
	}
	if err != nil {
		log.Error(err, "Exiting")
		os.Exit(1)
	}
}

// metrics configures the metrics endpoint: by default HTTPS (a self-signed certificate made
// at start) whose clients the API server authenticates (TokenReview) and authorises
// (SubjectAccessReview), as the API server's own metrics are.
func (o options) metrics() metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.metricsAddr, SecureServing: o.metricsSecure}
	if o.metricsSecure {
		m.FilterProvider = metricsauth.Provider(clock.RealClock{})
	}
	return m
}

// serve adds the health and readiness probes and runs the manager until signalled.
func serve(mgr ctrl.Manager) error {
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding the readiness check: %w", err)
	}
	return mgr.Start(ctrl.SetupSignalHandler())
}

// runController runs the cluster-wide controller until the process is signalled.
func runController(o options) error {
	ctrlmetrics.Registry.MustRegister(buildinfo.Collector())
	mgr, err := controllers.NewManager(ctrl.GetConfigOrDie(), controllers.Options{
		Clock:             clock.RealClock{},
		ControllerNode:    os.Getenv("NODE_NAME"),
		OperatorNamespace: o.operatorNamespace,
	}, ctrl.Options{
		Scheme:                  controllerScheme(),
		Metrics:                 o.metrics(),
		HealthProbeBindAddress:  o.probeAddr,
		PprofBindAddress:        o.pprofAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        controllers.LeaderElectionID,
		LeaderElectionNamespace: o.leaderElectionNS,
	})
	if err != nil {
		return err
	}
	return serve(mgr)
}

// runAgent runs the per-node agent until the process is signalled.
func runAgent(o options) error {
	if o.nodeName == "" {
		return fmt.Errorf("the agent needs its node's name: set NODE_NAME or -node-name")
	}
	refresh, err := time.ParseDuration(o.agentRefreshInterval)
	if err != nil || refresh <= 0 {
		return fmt.Errorf("invalid -refresh-interval %q: want a positive duration such as 30m", o.agentRefreshInterval)
	}
	// The agent runs on every node and mostly waits: a smaller heap is worth a few more
	// collections (GOGC, when set, still decides).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	// The endpoint serves the agent's own metrics, and the runtime's only when asked.
	agent.Registry.MustRegister(buildinfo.Collector())
	ctrlmetrics.Registry = agent.MetricsRegistry(o.metricsRuntime)
	clk := clock.RealClock{} // the agent and its host API client read the same clock
	mgr, err := agent.NewManager(ctrl.GetConfigOrDie(), &agent.Agent{
		Host:            hostapi.New(o.apiSocket, clk),
		NodeName:        o.nodeName,
		BootIDFile:      o.bootIDFile,
		Clock:           clk,
		RefreshInterval: refresh,
	}, ctrl.Options{
		Scheme:                 agentScheme(),
		Metrics:                o.metrics(),
		HealthProbeBindAddress: o.probeAddr,
	})
	if err != nil {
		return err
	}
	// Once its cache is synced the agent has run all it needs to start; the pages of the
	// executable that only starting touched are given back (about 12 MiB; see
	// internal/residency).
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return nil
		}
		released, err := residency.ReleaseExecutable()
		if err != nil {
			ctrl.Log.WithName("setup").Error(err, "Releasing the executable's start-up pages")
			return nil
		}
		ctrl.Log.WithName("setup").V(1).Info("Released the executable's start-up pages", "addressSpace", released)
		return nil
	})); err != nil {
		return fmt.Errorf("adding the release of start-up pages: %w", err)
	}
	return serve(mgr)
}
