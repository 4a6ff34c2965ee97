// Package realnode adds a real node to a local cluster (test/framework/localcluster): containerd
// and runc (Debian's packages) run its pods, the kubelet (built by hack/controlplane.sh --kubelet)
// registers it, all as root on this machine. Everything stays on this machine: the API server
// reaches the kubelet on 127.0.0.1, and the pods live in network namespaces under the node's
// directory, attached to a bridge of the node's own with no route off it.
//
// Stop tears down everything the node created, including what lives outside its directory (its
// cgroups, the bridge, host paths the kubelet and containerd insist on); Start first tears down
// what a killed previous run of the same node left; Leftovers lists what is still there.
// hack/realnode-deps.sh installs what it needs.
package realnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/bottlerocket-ops/update-operator/test/framework/localcluster"
)

// DefaultDirRoot holds each node's directory, <root>/<name>: a fixed place, so that a run finds
// what a killed run of the same node left behind.
const DefaultDirRoot = "/var/lib/brupop-realnode"

// Options configure a node; the zero value is a valid node named "realnode-0".
type Options struct {
	// Name is the Node's name (a DNS label); empty: realnode-0.
	Name string
	// Dir holds the node's state, configuration and logs; empty: DefaultDirRoot/Name. It is
	// wiped at Start and removed by Stop.
	Dir string
	// BinDir holds the kubelet; empty: localcluster.DefaultBinDir().
	BinDir string
	// Bridge is the name of the pods' bridge interface (at most 15 characters); empty: brupop-rn0.
	Bridge string
	// Subnet is the pods' addresses, the bridge holding the first; empty: 10.250.0.0/24. Nodes
	// on one machine need distinct bridges and subnets.
	Subnet string
	// ReadyTimeout bounds the wait for the Node to be Ready; zero: 2 minutes.
	ReadyTimeout time.Duration
	// Logger receives progress; zero: discarded.
	Logger logr.Logger
}

// Node is a running real node.
type Node struct {
	// Name is the Node's name.
	Name string
	// Dir holds the node's state; Dir/logs the logs of containerd and the kubelet.
	Dir string

	cluster    *localcluster.Cluster
	log        logr.Logger
	host       hostState
	containerd *localcluster.Process
	kubelet    *localcluster.Process
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// defaults fills in and checks the options.
func (o *Options) defaults() error {
	if o.Name == "" {
		o.Name = "realnode-0"
	}
	if !dnsLabel.MatchString(o.Name) {
		return fmt.Errorf("node name %q: want a DNS label (lower-case letters, digits, '-')", o.Name)
	}
	if o.Dir == "" {
		o.Dir = filepath.Join(DefaultDirRoot, o.Name)
	}
	abs, err := filepath.Abs(o.Dir)
	if err != nil {
		return fmt.Errorf("resolving %s: %w", o.Dir, err)
	}
	if abs == "/" {
		return errors.New("the node's directory cannot be /: Stop removes it")
	}
	o.Dir = abs
	if o.BinDir == "" {
		o.BinDir = localcluster.DefaultBinDir()
	}
	if o.Bridge == "" {
		o.Bridge = "brupop-rn0"
	}
	if len(o.Bridge) > 15 || strings.ContainsAny(o.Bridge, "/ ") {
		return fmt.Errorf("bridge name %q: want at most 15 characters, no '/' or space (IFNAMSIZ)", o.Bridge)
	}
	if o.Subnet == "" {
		o.Subnet = "10.250.0.0/24"
	}
	if _, ipnet, err := net.ParseCIDR(o.Subnet); err != nil || ipnet.IP.To4() == nil {
		return fmt.Errorf("subnet %q: want an IPv4 CIDR", o.Subnet)
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 2 * time.Minute
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	return nil
}

// hostState is what a node creates outside its directory, named from its options: enough for a
// later run to find and remove it even if the process that made it was killed.
type hostState struct {
	name string
	dir  string
	// cgroupRoot is the cgroup (in every v1 hierarchy) under which the kubelet puts kubepods.
	cgroupRoot string
	bridge     string
	network    string
}

func newHostState(o Options) hostState {
	return hostState{name: o.Name, dir: o.Dir, cgroupRoot: "brupop-" + o.Name, bridge: o.Bridge, network: "brupop-" + o.Name}
}

// Binaries the node runs from PATH (Debian's packages; hack/realnode-deps.sh installs them),
// and the CNI plugins it uses from cniBinDir.
var (
	pathBinaries = []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "ip"}
	cniPlugins   = []string{"bridge", "host-local", "loopback"}
)

// cniBinDir is where Debian's containernetworking-plugins installs the plugins.
const cniBinDir = "/usr/lib/cni"

// Preconditions reports what this machine lacks to run a real node, each with the command that
// installs it: root, cgroup v1, containerd, runc, the CNI plugins, the kubelet in binDir (empty:
// localcluster.DefaultBinDir()).
func Preconditions(binDir string) error {
	if binDir == "" {
		binDir = localcluster.DefaultBinDir()
	}
	var errs []error
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("not root: a real node mounts, makes cgroups and network interfaces"))
	}
	for _, b := range pathBinaries {
		if _, err := exec.LookPath(b); err != nil {
			errs = append(errs, fmt.Errorf("%s not found: run hack/realnode-deps.sh", b))
		}
	}
	for _, p := range cniPlugins {
		if _, err := os.Stat(filepath.Join(cniBinDir, p)); err != nil {
			errs = append(errs, fmt.Errorf("CNI plugin %s not in %s: run hack/realnode-deps.sh", p, cniBinDir))
		}
	}
	if fi, err := os.Stat(filepath.Join(binDir, "kubelet")); err != nil || fi.Mode()&0o111 == 0 {
		errs = append(errs, fmt.Errorf("kubelet not in %s: run hack/realnode-deps.sh", binDir))
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err != nil {
		errs = append(errs, errors.New("no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory: the node is set up for cgroup v1 only"))
	}
	return errors.Join(errs...)
}

// Start starts a real node of the cluster c and waits until its Node is Ready. It first tears
// down what a previous run of the same node left (a killed run leaves everything). On error,
// whatever was started is torn down and the logs, tailed in the error, stay in Dir/logs.
func Start(ctx context.Context, c *localcluster.Cluster, opts Options) (*Node, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	if err := Preconditions(opts.BinDir); err != nil {
		return nil, fmt.Errorf("a real node cannot run here:\n%w", err)
	}
	n := &Node{Name: opts.Name, Dir: opts.Dir, cluster: c, log: opts.Logger.WithValues("node", opts.Name), host: newHostState(opts)}
	began := time.Now()
	if err := teardown(ctx, n.log, n.host, nil, false); err != nil {
		return nil, fmt.Errorf("removing what a previous run of node %s left: %w", n.Name, err)
	}
	if err := n.start(ctx, opts); err != nil {
		err = fmt.Errorf("starting real node %s (logs in %s): %w", n.Name, filepath.Join(n.Dir, "logs"), err)
		if stopErr := n.stop(ctx, true); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("tearing down after the failure: %w", stopErr))
		}
		return nil, err
	}
	n.log.Info("Real node Ready", "after", time.Since(began).Round(time.Millisecond), "dir", n.Dir)
	return n, nil
}

func (n *Node) start(ctx context.Context, opts Options) error {
	for _, sub := range []string{"logs", "pki", "image"} {
		if err := os.MkdirAll(filepath.Join(n.Dir, sub), 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", sub, err)
		}
	}
	if err := n.host.recordCreatedDirs(); err != nil {
		return err
	}
	image, err := buildPauseImage(ctx, filepath.Join(n.Dir, "image"))
	if err != nil {
		return err
	}
	if err := n.startContainerd(ctx, opts); err != nil {
		return err
	}
	if err := n.importImage(ctx, image); err != nil {
		return err
	}
	if err := n.host.addHostsEntry(); err != nil {
		return err
	}
	if err := n.startKubelet(ctx, opts); err != nil {
		return err
	}
	return n.waitReady(ctx, opts.ReadyTimeout)
}

// waitReady waits until the Node is Ready, failing early if containerd or the kubelet exits.
func (n *Node) waitReady(ctx context.Context, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := n.exited(); err != nil {
			return false, err
		}
		node, err := n.cluster.Clientset.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				last = fmt.Sprintf("Ready=%s (%s: %s)", cond.Status, cond.Reason, cond.Message)
				return cond.Status == corev1.ConditionTrue, nil
			}
		}
		last = "registered, no Ready condition yet"
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("waiting %v for Node %s to be Ready (last seen: %s): %w\n%s", timeout, n.Name, last, err, n.logTails())
	}
	return nil
}

// exited reports containerd or the kubelet having stopped.
func (n *Node) exited() error {
	for _, p := range []*localcluster.Process{n.containerd, n.kubelet} {
		if p != nil {
			if err := p.Exited(); err != nil {
				return err
			}
		}
	}
	return nil
}

// logTails is the end of containerd's and the kubelet's logs, for an error.
func (n *Node) logTails() string {
	var b strings.Builder
	for _, name := range []string{"containerd", "kubelet"} {
		path := filepath.Join(n.Dir, "logs", name+".log")
		fmt.Fprintf(&b, "--- last lines of %s:\n%s\n", path, localcluster.Tail(path, 30))
	}
	return b.String()
}

// Stop stops the kubelet, deletes the Node, stops and removes every pod sandbox and container
// through the CRI, stops containerd, and removes everything else the node created, on this
// machine and in its directory. It returns what it could not remove.
func (n *Node) Stop(ctx context.Context) error {
	return n.stop(ctx, false)
}

// stop is Stop; keepLogs keeps the directory's logs (after a failed start).
func (n *Node) stop(ctx context.Context, keepLogs bool) error {
	// Tear down even when the caller's context is done (a failed or timed-out test): every
	// step has its own bound.
	ctx = context.WithoutCancel(ctx)
	var errs []error
	if n.kubelet != nil {
		n.kubelet.Stop()
		// The Node would stay NotReady in the cluster; with the kubelet gone nothing
		// registers it again.
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := n.cluster.Clientset.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{})
		cancel()
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting Node %s: %w", n.Name, err))
		}
	}
	if err := teardown(ctx, n.log, n.host, n.containerd, keepLogs); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
