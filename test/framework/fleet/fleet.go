// Package fleet runs simulated Bottlerocket nodes against a real API server: for each node a
// Node object, a host simulator serving the host's update API, and a real agent. The
// simulation plays the kubelet's part for what the operator reads: a rebooting host's Node
// goes NotReady, and comes back Ready with the osImage and boot ID of what it really booted.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/bottlerocket-ops/update-operator/agent"
	"github.com/bottlerocket-ops/update-operator/agent/hostapi"
	"github.com/bottlerocket-ops/update-operator/test/framework/hostsim"
	"github.com/bottlerocket-ops/update-operator/test/framework/localcluster"
)

// Options describe a simulated fleet.
type Options struct {
	// Nodes is how many nodes to simulate.
	Nodes int
	// Prefix names the nodes Prefix-00, Prefix-01, …
	Prefix string
	// Host is the simulated host of every node (version, releases, durations); BootIDFile,
	// OnReboot and Clock are set by the fleet.
	Host hostsim.Config
	// Clock is the clock of the hosts, the agents and the agents' host API clients, one for
	// all so that a client and its host agree on command timestamps (default: the real
	// clock). The fleet's own pacing, the kubelet's part (mirroring reboots on Nodes,
	// restarting a failed agent), runs on real time.
	Clock clock.Clock
	// Zones spread the nodes round-robin over topology.kubernetes.io/zone values.
	Zones []string
	// RefreshInterval is each agent's refresh interval.
	RefreshInterval time.Duration
	// Dir holds the hosts' sockets and boot-ID files (short: sockets are limited to 108 bytes).
	Dir string
	// Cluster, when set, is a local cluster whose kwok keeps the Nodes Ready and runs their
	// pods: the fleet adds its nodes there (Prefix and Zones are the cluster's) and mirrors
	// reboots through it. Unset: the fleet creates the Nodes and plays their kubelet itself.
	Cluster *localcluster.Cluster
	// AgentConfig, when set, gives the agent of a node its credentials (it may wait, e.g. for
	// the agent DaemonSet's pod on the node); unset: the fleet's own config.
	AgentConfig func(ctx context.Context, node string) (*rest.Config, error)
}

// agentConfigTimeout bounds the wait for an agent's credentials.
const agentConfigTimeout = 2 * time.Minute

// Node is one simulated node.
type Node struct {
	Name string
	Host *hostsim.Host

	fleet   *Fleet
	socket  string
	bootID  string
	reboots chan hostsim.RebootEvent // from the host, to mirrorReboots
	mu      sync.Mutex
	config  *rest.Config // the agent's credentials, once obtained
	stop    context.CancelFunc
	done    chan struct{}
}

// Fleet is a running simulated fleet.
type Fleet struct {
	Nodes []*Node

	opts   Options
	config *rest.Config
	scheme *runtime.Scheme
	client client.Client
	// ctx ends when the fleet stops: the Nodes' reboot mirrors give up.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start creates the Nodes, starts their hosts and agents.
func Start(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, opts Options) (*Fleet, error) {
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating the fleet's client: %w", err)
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	f := &Fleet{opts: opts, config: cfg, scheme: scheme, client: c}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	names := make([]string, opts.Nodes)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%02d", opts.Prefix, i)
	}
	if opts.Cluster != nil {
		if names, err = opts.Cluster.AddNodes(ctx, opts.Nodes, opts.Host.Version); err != nil {
			return nil, err
		}
	}
	for i, name := range names {
		n := &Node{
			Name:    name,
			fleet:   f,
			socket:  filepath.Join(opts.Dir, fmt.Sprintf("%d.sock", i)),
			bootID:  filepath.Join(opts.Dir, fmt.Sprintf("%d.boot", i)),
			reboots: make(chan hostsim.RebootEvent, 4),
		}
		f.wg.Go(n.mirrorReboots)
		hc := opts.Host
		hc.BootIDFile, hc.Clock = n.bootID, opts.Clock
		hc.OnReboot = func(ev hostsim.RebootEvent) {
			select {
			case n.reboots <- ev:
			case <-f.ctx.Done():
			}
		}
		n.Host = hostsim.New(hc)
		if err := n.Host.Start(n.socket); err != nil {
			f.Stop()
			return nil, fmt.Errorf("starting the host of %s: %w", n.Name, err)
		}
		f.Nodes = append(f.Nodes, n)
		zone := ""
		if len(opts.Zones) > 0 {
			zone = opts.Zones[i%len(opts.Zones)]
		}
		if err := n.register(ctx, zone); err != nil {
			f.Stop()
			return nil, err
		}
	}
	// The agents start together: each may wait for its credentials.
	errs := make([]error, len(f.Nodes))
	var wg sync.WaitGroup
	for i, n := range f.Nodes {
		wg.Go(func() { errs[i] = n.StartAgent() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		f.Stop()
		return nil, err
	}
	return f, nil
}

// Stop stops every agent and host.
func (f *Fleet) Stop() {
	f.cancel()
	f.wg.Wait()
	for _, n := range f.Nodes {
		n.StopAgent()
		n.Host.Close()
	}
}

// SetAvailable makes the hosts' update repository offer these versions (a new release
// appears); the agents see it at their next refresh.
func (f *Fleet) SetAvailable(versions ...string) {
	for _, n := range f.Nodes {
		n.Host.SetAvailable(hostsim.Releases(versions...)...)
	}
}

// osImage is what a Bottlerocket Node reports as its OS image.
func (n *Node) osImage(version string) string {
	return fmt.Sprintf("Bottlerocket OS %s (%s)", version, n.fleet.opts.Host.Variant)
}

// register creates the Node and reports it Ready, as a kubelet would; on a local cluster the
// Node exists and is given the host's boot ID.
func (n *Node) register(ctx context.Context, zone string) error {
	st := n.Host.State()
	if c := n.fleet.opts.Cluster; c != nil {
		return c.EndReboot(ctx, n.Name, st.Version, st.BootID)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{
		corev1.LabelHostname: n.Name, corev1.LabelOSStable: "linux",
	}}}
	if zone != "" {
		node.Labels[corev1.LabelTopologyZone] = zone
	}
	if err := n.fleet.client.Create(ctx, node); err != nil {
		return fmt.Errorf("creating Node %s: %w", n.Name, err)
	}
	return n.setStatus(ctx, true, st.Version, st.BootID)
}

// setStatus writes the Node's Ready condition, osImage and boot ID.
func (n *Node) setStatus(ctx context.Context, ready bool, version, bootID string) error {
	if c := n.fleet.opts.Cluster; c != nil {
		if ready {
			return c.EndReboot(ctx, n.Name, version, bootID)
		}
		return c.BeginReboot(ctx, n.Name)
	}
	var node corev1.Node
	if err := n.fleet.client.Get(ctx, client.ObjectKey{Name: n.Name}, &node); err != nil {
		return fmt.Errorf("reading Node %s: %w", n.Name, err)
	}
	orig := node.DeepCopy()
	status, reason := corev1.ConditionTrue, "KubeletReady"
	if !ready {
		status, reason = corev1.ConditionFalse, "KubeletNotReady"
	}
	now := metav1.Now()
	node.Status.Conditions = []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: status, Reason: reason, LastHeartbeatTime: now, LastTransitionTime: now,
	}}
	node.Status.NodeInfo.OSImage = n.osImage(version)
	node.Status.NodeInfo.BootID = bootID
	node.Status.NodeInfo.OperatingSystem, node.Status.NodeInfo.Architecture = "linux", "amd64"
	if err := n.fleet.client.Status().Patch(ctx, &node, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("writing the status of Node %s: %w", n.Name, err)
	}
	return nil
}

// mirrorBackoff paces the retries of a reboot's mirror on the Node (11 tries over about 20 s),
// as a kubelet keeps posting its status while the API server is away or busy.
var mirrorBackoff = wait.Backoff{Duration: 200 * time.Millisecond, Factor: 1.5, Steps: 11}

// mirrorReboots mirrors the host's reboots on its Node, in order, until the fleet stops. It
// runs apart from the host, as a kubelet does: a host goes down and comes back whether or not
// its Node's status can be written.
func (n *Node) mirrorReboots() {
	for {
		select {
		case <-n.fleet.ctx.Done():
			return
		case ev := <-n.reboots:
			n.mirror(n.fleet.ctx, ev)
		}
	}
}

// mirror mirrors one step of a reboot on the Node; the agent's pod dies with the host and
// starts again when it is back, whether or not the Node's status could be written.
func (n *Node) mirror(ctx context.Context, ev hostsim.RebootEvent) {
	logger := log.Log.WithName("fleet").WithValues("node", n.Name)
	var err error
	switch ev.Phase {
	case hostsim.RebootDown:
		n.StopAgent()
		err = retryWrite(ctx, func() error { return n.setStatus(ctx, false, ev.FromVersion, ev.OldBootID) })
	case hostsim.RebootUp:
		err = retryWrite(ctx, func() error { return n.setStatus(ctx, true, ev.Version, ev.BootID) })
		if ctx.Err() == nil {
			err = errors.Join(err, n.StartAgent())
		}
		logger.V(1).Info("Host booted", "version", ev.Version, "fellBack", ev.FellBack)
	}
	if err != nil {
		logger.Error(err, "Mirroring a reboot on the Node")
	}
}

// retryWrite calls write until it succeeds, paced by mirrorBackoff, or until ctx ends.
func retryWrite(ctx context.Context, write func() error) error {
	var last error
	err := wait.ExponentialBackoffWithContext(ctx, mirrorBackoff, func(context.Context) (bool, error) {
		last = write()
		return last == nil, nil
	})
	if err != nil && last != nil {
		return last
	}
	return err
}

// StartAgent starts the node's agent (a new pod of the DaemonSet).
func (n *Node) StartAgent() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stop != nil {
		return nil
	}
	if n.config == nil {
		cfg := n.fleet.config
		if get := n.fleet.opts.AgentConfig; get != nil {
			ctx, cancel := context.WithTimeout(context.Background(), agentConfigTimeout)
			var err error
			cfg, err = get(ctx, n.Name)
			cancel()
			if err != nil {
				return fmt.Errorf("the credentials of the agent of %s: %w", n.Name, err)
			}
		}
		n.config = cfg
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.stop, n.done = cancel, make(chan struct{})
	go n.runAgent(ctx, n.config, n.done)
	return nil
}

// runAgent runs the node's agent until ctx ends; whenever the agent fails it is started again
// after a pause that grows to 10 s, as a kubelet restarts a failed container.
func (n *Node) runAgent(ctx context.Context, cfg *rest.Config, done chan struct{}) {
	defer close(done)
	backoff := wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Steps: 5, Cap: 10 * time.Second}
	for {
		err := n.agentOnce(ctx, cfg)
		if ctx.Err() != nil {
			return
		}
		log.Log.WithName("fleet").Error(err, "Agent stopped; starting it again", "node", n.Name)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff.Step()):
		}
	}
}

// agentOnce runs one instance of the node's agent until ctx ends or it fails.
func (n *Node) agentOnce(ctx context.Context, cfg *rest.Config) error {
	mgr, err := agent.NewManager(cfg, &agent.Agent{
		NodeName: n.Name, BootIDFile: n.bootID, Clock: n.fleet.opts.Clock,
		Host: hostapi.New(n.socket, n.fleet.opts.Clock, hostapi.WithPollInterval(50*time.Millisecond),
			hostapi.WithLockBackoff(50*time.Millisecond, time.Second, 30)),
		RefreshInterval: n.fleet.opts.RefreshInterval,
		RetryInterval:   500 * time.Millisecond,
		SettleDelay:     time.Second,
	}, ctrl.Options{
		Scheme:  n.fleet.scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Logger:  log.Log.WithName("agent").WithValues("node", n.Name),
	})
	if err != nil {
		return fmt.Errorf("creating the agent of %s: %w", n.Name, err)
	}
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running the agent of %s: %w", n.Name, err)
	}
	return errors.New("the agent returned")
}

// StopAgent stops the node's agent and waits for it to be gone.
func (n *Node) StopAgent() {
	n.mu.Lock()
	stop, done := n.stop, n.done
	n.stop = nil
	n.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// TempDir makes a short directory for the fleet's sockets.
func TempDir() (string, error) {
	return os.MkdirTemp("", "fleet")
}
