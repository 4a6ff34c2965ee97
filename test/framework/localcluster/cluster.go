// Package localcluster runs a whole Kubernetes cluster on this machine from the binaries that
// hack/controlplane.sh --all builds and caches: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and kwok, all on 127.0.0.1 with free ports, with certificates generated here and
// all state in one directory. kwok plays the kubelets of the nodes the harness creates (AddNodes):
// it keeps them Ready and runs the pods scheduled on them, so that the real scheduler, ReplicaSet,
// DaemonSet and disruption controllers, and the Eviction API behave as in a real cluster.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/bottlerocket-ops/update-operator/test/framework/audit"
)

// Versions of the binaries, as hack/controlplane.sh names their cache directory.
const (
	K8sVersion  = "1.37.2"
	EtcdVersion = "3.7.3"
	KwokVersion = "0.8.0"
)

// The API server's audit log in the state directory, and its rotated backups
// (audit-<time>.log).
const (
	auditLogPrefix = "audit"
	auditLogExt    = ".log"
)

// Binaries are the programs a cluster runs, all in one directory.
var Binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

const (
	serviceCIDR          = "10.96.0.0/16"
	serviceIP            = "10.96.0.1"
	podCIDR              = "10.128.0.0/12"
	frontProxyClientName = "front-proxy-client"
)

// Options configure a cluster.
type Options struct {
	// Dir holds all the cluster's state: certificates, kubeconfigs, etcd data, logs, pid file.
	// Empty: a temporary directory, removed by Stop. A directory of a previous cluster is reused
	// after its etcd data and audit log are wiped (every Start is a fresh cluster).
	Dir string
	// BinDir holds the binaries (see Binaries); empty: DefaultBinDir().
	BinDir string
	// AuditLog makes the API server write an audit log to Cluster.AuditLogPath with AuditPolicy.
	AuditLog bool
	// AuditPolicy is the audit policy (YAML); empty: audit.Policy.
	AuditPolicy string
	// KwokStagesDir is kwok's kustomize/stage directory; empty: found in the Go module cache.
	KwokStagesDir string
	// StartTimeout bounds the start of each component; zero: 60s.
	StartTimeout time.Duration
	// Logger receives progress; zero: discarded.
	Logger logr.Logger
}

// Cluster is a running local cluster.
type Cluster struct {
	// Dir holds the cluster's state.
	Dir string
	// Config is an admin (system:masters) rest config, with QPS raised for fleets of nodes.
	Config *rest.Config
	// Kubeconfig is the path of the admin kubeconfig.
	Kubeconfig string
	// Clientset is an admin client.
	Clientset kubernetes.Interface
	// AuditLogPath is the API server's audit log, when Options.AuditLog is set.
	AuditLogPath string

	log        logr.Logger
	pki        *pki
	server     string
	tempDir    bool
	procs      []*process
	stopping   chan struct{}
	failed     chan struct{}
	failedOnce sync.Once
	stopOnce   sync.Once
	nodesMu    sync.Mutex
	nodes      int
}

// DefaultBinDir is the directory where hack/controlplane.sh --all caches the binaries.
func DefaultBinDir() string {
	root := os.Getenv("BRUPOP_CACHE")
	if root == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache")
		}
		root = filepath.Join(cache, "bottlerocket-update-operator")
	}
	return filepath.Join(root, "controlplane",
		fmt.Sprintf("k8s-%s_etcd-%s_kwok-%s", K8sVersion, EtcdVersion, KwokVersion))
}

// MissingBinaries lists the binaries absent from dir (empty: DefaultBinDir()).
func MissingBinaries(dir string) []string {
	if dir == "" {
		dir = DefaultBinDir()
	}
	var missing []string
	for _, b := range Binaries {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	return missing
}

// Start starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, each
// waited for until healthy. On error, whatever was started is stopped and the state directory,
// with the components' logs, is kept.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.BinDir == "" {
		opts.BinDir = DefaultBinDir()
	}
	if missing := MissingBinaries(opts.BinDir); len(missing) > 0 {
		return nil, fmt.Errorf("missing %v in %s: run hack/controlplane.sh --all", missing, opts.BinDir)
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	if opts.AuditPolicy == "" {
		opts.AuditPolicy = audit.Policy
	}
	c := &Cluster{log: opts.Logger, stopping: make(chan struct{}), failed: make(chan struct{})}
	if c.log.GetSink() == nil {
		c.log = logr.Discard()
	}
	if err := c.prepareDir(opts.Dir); err != nil {
		return nil, err
	}
	if err := c.start(ctx, opts); err != nil {
		c.tempDir = false // keep the logs for whoever reads the error
		c.Stop()
		return nil, fmt.Errorf("starting a local cluster in %s: %w", c.Dir, err)
	}
	return c, nil
}

// prepareDir makes the state directory, refusing one whose cluster still runs.
func (c *Cluster) prepareDir(dir string) error {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "localcluster")
		if err != nil {
			return fmt.Errorf("creating a state directory: %w", err)
		}
		dir, c.tempDir = tmp, true
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("resolving %s: %w", dir, err)
	}
	c.Dir = abs
	if alive := running(abs); len(alive) > 0 {
		return fmt.Errorf("a cluster still runs in %s (%v): stop it first", abs, alive)
	}
	// etcd's data is the cluster, the audit log its history: both start afresh; the rest is
	// regenerated.
	rotated, _ := filepath.Glob(filepath.Join(abs, auditLogPrefix+"-*"+auditLogExt))
	for _, old := range append(rotated, filepath.Join(abs, "etcd"), filepath.Join(abs, auditLogPrefix+auditLogExt)) {
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("wiping %s: %w", old, err)
		}
	}
	for _, sub := range []string{"pki", "logs", "etcd"} {
		if err := os.MkdirAll(filepath.Join(abs, sub), 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", sub, err)
		}
	}
	return nil
}

// run starts a component and records it in the pid file.
func (c *Cluster) run(name, bin string, env []string, args ...string) (*process, error) {
	p, err := startProcess(name, bin, filepath.Join(c.Dir, "logs"), env, args...)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	if err := writePIDFile(c.Dir, c.procs); err != nil {
		return nil, err
	}
	c.log.V(1).Info("Started", "component", name, "pid", p.cmd.Process.Pid, "log", p.log)
	go c.watch(p)
	return p, nil
}

// watch reports a component that exits before Stop.
func (c *Cluster) watch(p *process) {
	select {
	case <-c.stopping:
	case <-p.done:
		select {
		case <-c.stopping:
		default:
			if p.retired.Load() {
				return
			}
			c.log.Error(p.exited(), "Component exited", "component", p.name)
			c.failedOnce.Do(func() { close(c.failed) })
		}
	}
}

// Failed is closed when a component exits on its own (crash, or killed from outside).
func (c *Cluster) Failed() <-chan struct{} { return c.failed }

// Stop stops every component, last started first, and waits for each process group to be gone;
// it removes the state directory if Start made it.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		close(c.stopping)
		for i := len(c.procs) - 1; i >= 0; i-- {
			c.procs[i].stop()
		}
		if err := os.Remove(filepath.Join(c.Dir, pidFileName)); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.log.Error(err, "Removing the pid file")
		}
		if c.tempDir {
			if err := os.RemoveAll(c.Dir); err != nil {
				c.log.Error(err, "Removing the state directory")
			}
		}
	})
}

// RestartAPIServer kills the API server (SIGKILL: a crash, no graceful goodbye to its clients),
// calls whileDown if set, starts the API server again with the same flags, port and
// certificates, and waits until it is ready. The cluster's state is etcd's and survives. Not to
// be called concurrently with Stop.
func (c *Cluster) RestartAPIServer(ctx context.Context, whileDown func()) error {
	for i, p := range c.procs {
		if p.name != "kube-apiserver" {
			continue
		}
		began := time.Now()
		p.retired.Store(true)
		p.kill()
		if whileDown != nil {
			whileDown()
		}
		np, err := p.again()
		if err != nil {
			return fmt.Errorf("restarting the API server: %w", err)
		}
		c.procs[i] = np
		if err := writePIDFile(c.Dir, c.procs); err != nil {
			return err
		}
		go c.watch(np)
		if err := waitHealthy(ctx, time.Minute, np, np.healthy); err != nil {
			return fmt.Errorf("restarting the API server: %w", err)
		}
		c.log.Info("API server restarted", "after", time.Since(began).Round(time.Millisecond))
		return nil
	}
	return errors.New("restarting the API server: it is not running")
}

// PIDs returns the process id of each running component.
func (c *Cluster) PIDs() map[string]int {
	pids := make(map[string]int, len(c.procs))
	for _, p := range c.procs {
		pids[p.name] = p.cmd.Process.Pid
	}
	return pids
}

// FreePorts reserves n distinct free TCP ports on 127.0.0.1.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	// Every listener stays open until all n ports are found, so that they differ; each only
	// reserved its port, so an error closing it changes nothing.
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
