package realnode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/apimachinery/pkg/util/wait"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/bottlerocket-ops/update-operator/test/framework/localcluster"
)

// criTimeout bounds containerd's start (until it answers the CRI), an image import, and the
// removal of every sandbox and container.
const criTimeout = time.Minute

// Paths of containerd's part of the node directory.
func (h hostState) containerdDir() string    { return filepath.Join(h.dir, "containerd") }
func (h hostState) containerdConfig() string { return filepath.Join(h.containerdDir(), "config.toml") }
func (h hostState) containerdSocket() string {
	return filepath.Join(h.containerdDir(), "containerd.sock")
}
func (h hostState) containerdRoot() string  { return filepath.Join(h.containerdDir(), "root") }
func (h hostState) containerdState() string { return filepath.Join(h.containerdDir(), "state") }
func (h hostState) cniConfDir() string      { return filepath.Join(h.dir, "cni", "net.d") }
func (h hostState) cniIPAMDir() string      { return filepath.Join(h.dir, "cni", "ipam") }

// containerdConfig is containerd 1.6's configuration (version 2): every directory it allows to
// move is under the node's directory. https://github.com/containerd/containerd/blob/release/1.6/docs/cri/config.md
// and `containerd config default` list the settings.
func containerdConfig(h hostState) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
# The plugins this node has no use for and that would make directories of their own
# (/opt/containerd) or look for kernel features (aufs, btrfs, devmapper, zfs). The legacy
# io.containerd.runtime.v1.linux stays: 1.6's tasks service, hence the CRI, requires it.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = %[3]q

[plugins."io.containerd.grpc.v1.cri"]
  # Built by this harness and imported at start: nothing is pulled.
  sandbox_image = %[4]q
  # Root on these machines cannot lower a process's oom_score_adj below its own; runc would try
  # (for a container the kubelet asks for a lower one) and every sandbox would fail with
  # "can't get final child's PID from pipe". This clamps the request to the runtime's own score.
  restrict_oom_score_adj = true
  # The pods' network namespaces under state/netns rather than /var/run/netns.
  netns_mounts_under_state_dir = true
  # The CRI streaming server (exec, attach, port-forward) stays on the loopback address (its default).
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[5]q
    conf_dir = %[6]q

  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # The kubelet's cgroupDriver is cgroupfs: the runtime's must agree.
        SystemdCgroup = false
        # runc's state (default /run/containerd/runc) under the node's directory.
        Root = %[7]q
`, h.containerdRoot(), h.containerdState(), h.containerdSocket(), PauseImage, cniBinDir, h.cniConfDir(),
		filepath.Join(h.containerdDir(), "runc"))
}

// cniConfig is the pods' network: a bridge of the node's own, addresses from host-local (its
// data under the node's directory, not /var/lib/cni/networks), the bridge holding the gateway
// address so that the kubelet can reach pods (probes), and no route but the subnet's nor
// masquerading: nothing leaves the machine. https://www.cni.dev/plugins/current/main/bridge/
// and https://www.cni.dev/plugins/current/ipam/host-local/ document the fields.
func cniConfig(h hostState, subnet string) string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": %q,
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": true,
    "ipMasq": false,
    "ipam": {
      "type": "host-local",
      "dataDir": %q,
      "ranges": [[{"subnet": %q}]]
    }
  }]
}
`, h.network, h.bridge, h.cniIPAMDir(), subnet)
}

// startContainerd writes containerd's and the CNI's configuration and starts containerd.
func (n *Node) startContainerd(ctx context.Context, opts Options) error {
	for _, d := range []string{n.host.containerdDir(), n.host.cniConfDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	if err := os.WriteFile(n.host.containerdConfig(), []byte(containerdConfig(n.host)), 0o600); err != nil {
		return fmt.Errorf("writing containerd's configuration: %w", err)
	}
	cni := filepath.Join(n.host.cniConfDir(), "10-"+n.host.network+".conflist")
	if err := os.WriteFile(cni, []byte(cniConfig(n.host, opts.Subnet)), 0o600); err != nil {
		return fmt.Errorf("writing the CNI configuration: %w", err)
	}
	p, err := runContainerd(ctx, n.host, "containerd")
	if err != nil {
		return err
	}
	n.containerd = p
	return n.writePIDFile()
}

// writePIDFile records the running processes, for a later run to stop them if this one is killed.
func (n *Node) writePIDFile() error {
	var procs []*localcluster.Process
	for _, p := range []*localcluster.Process{n.containerd, n.kubelet} {
		if p != nil {
			procs = append(procs, p)
		}
	}
	return localcluster.WritePIDFile(n.Dir, procs...)
}

// runContainerd starts containerd with the configuration in h's directory, logging to
// logs/<logName>.log, and waits until it answers the CRI.
func runContainerd(ctx context.Context, h hostState, logName string) (*localcluster.Process, error) {
	logs := filepath.Join(h.dir, "logs")
	if err := os.MkdirAll(logs, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", logs, err)
	}
	p, err := localcluster.StartProcess(logName, "containerd", logs, nil, "--config", h.containerdConfig())
	if err != nil {
		return nil, err
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, criTimeout, true, func(ctx context.Context) (bool, error) {
		if err := p.Exited(); err != nil {
			return false, err
		}
		return criReady(ctx, h.containerdSocket()) == nil, nil
	})
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("waiting %v for containerd to answer the CRI on %s: %w\n%s", criTimeout,
			h.containerdSocket(), err, localcluster.Tail(p.Log(), 30))
	}
	return p, nil
}

// criClient connects to containerd's CRI; the caller closes the connection.
func criClient(socket string) (runtimeapi.RuntimeServiceClient, *grpc.ClientConn, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to %s: %w", socket, err)
	}
	return runtimeapi.NewRuntimeServiceClient(conn), conn, nil
}

// criReady reports an error until the CRI answers Version.
func criReady(ctx context.Context, socket string) error {
	rt, conn, err := criClient(socket)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }() // a probe's connection: nothing to flush
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = rt.Version(ctx, &runtimeapi.VersionRequest{})
	return err
}

// importImage imports the image tarball into the CRI's containerd namespace (k8s.io), unpacked
// for the default snapshotter, where the kubelet and the sandboxes find it.
func (n *Node) importImage(ctx context.Context, tarball string) error {
	ctx, cancel := context.WithTimeout(ctx, criTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ctr", "--address", n.host.containerdSocket(), "--namespace", "k8s.io",
		"images", "import", tarball).CombinedOutput()
	if err != nil {
		return fmt.Errorf("importing %s with ctr: %w\n%s", tarball, err, out)
	}
	n.log.V(1).Info("Image imported", "image", PauseImage, "ctr", strings.TrimSpace(string(out)))
	return nil
}

// removeSandboxes stops and removes, through the CRI, every container and pod sandbox of the
// containerd on socket: stopping a sandbox is what tears down its network (CNI DEL: the veth,
// the address, libcni's cache in /var/lib/cni) and unmounts its namespace and /dev/shm.
func removeSandboxes(ctx context.Context, log logr.Logger, socket string) error {
	ctx, cancel := context.WithTimeout(ctx, criTimeout)
	defer cancel()
	rt, conn, err := criClient(socket)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }() // every call below has returned
	containers, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return fmt.Errorf("listing containers: %w", err)
	}
	var errs []error
	for _, c := range containers.Containers {
		if _, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c.Id, Timeout: 10}); err != nil {
			errs = append(errs, fmt.Errorf("stopping container %s (%s): %w", c.Id, c.Metadata.GetName(), err))
		}
		if _, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.Id}); err != nil {
			errs = append(errs, fmt.Errorf("removing container %s (%s): %w", c.Id, c.Metadata.GetName(), err))
		}
	}
	sandboxes, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("listing pod sandboxes: %w", err))...)
	}
	for _, s := range sandboxes.Items {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			errs = append(errs, fmt.Errorf("stopping pod sandbox %s (%s/%s): %w", s.Id, s.Metadata.GetNamespace(), s.Metadata.GetName(), err))
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			errs = append(errs, fmt.Errorf("removing pod sandbox %s (%s/%s): %w", s.Id, s.Metadata.GetNamespace(), s.Metadata.GetName(), err))
		}
	}
	log.V(1).Info("Removed through the CRI", "containers", len(containers.Containers), "sandboxes", len(sandboxes.Items))
	return errors.Join(errs...)
}
