package realnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"

	"github.com/bottlerocket-ops/update-operator/test/framework/localcluster"
)

// Paths of the kubelet's part of the node directory.
func (h hostState) kubeletDir() string  { return filepath.Join(h.dir, "kubelet") }
func (h hostState) kubeletRoot() string { return filepath.Join(h.kubeletDir(), "root") }
func (h hostState) podLogsDir() string  { return filepath.Join(h.kubeletDir(), "pod-logs") }

// kubeletPath is the kubelet's PATH: the tools it runs (mount, umount, nsenter, du, ...) are
// in /usr/bin, iptables and ip6tables in /usr/sbin. Without them the kubelet makes no
// iptables chains (KUBE-IPTABLES-HINT, KUBE-FIREWALL, KUBE-KUBELET-CANARY: for other components,
// says pkg/kubelet/kubelet_network_linux.go), so the node leaves the host's firewall alone.
const kubeletPath = "/usr/local/bin:/usr/bin:/bin"

// kubeletConfig is the kubelet's configuration file
// (https://kubernetes.io/docs/reference/config-api/kubelet-config.v1beta1/).
func kubeletConfig(h hostState, creds *localcluster.KubeletCredentials, port, healthzPort int) map[string]any {
	return map[string]any{
		"apiVersion": "kubelet.config.k8s.io/v1beta1",
		"kind":       "KubeletConfiguration",
		// Serves on the loopback address only, where the API server reaches it by the Node's
		// Hostname address (see etcHosts).
		"address":            "127.0.0.1",
		"port":               port,
		"readOnlyPort":       0,
		"healthzBindAddress": "127.0.0.1",
		"healthzPort":        healthzPort,
		"tlsCertFile":        creds.ServingCert,
		"tlsPrivateKeyFile":  creds.ServingKey,
		// The API server authenticates with a client certificate of the cluster's CA; anything
		// else is checked with the API server (TokenReview, SubjectAccessReview), as kubeadm
		// sets it up.
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": true},
			"x509":      map[string]any{"clientCAFile": creds.CAFile},
		},
		"authorization":            map[string]any{"mode": "Webhook"},
		"containerRuntimeEndpoint": "unix://" + h.containerdSocket(),
		// cgroup v1, no systemd here: the cgroupfs driver, as containerd's runc (SystemdCgroup
		// false). failCgroupV1 (default true since 1.35) refuses cgroup v1 otherwise.
		"cgroupDriver": "cgroupfs",
		"failCgroupV1": false,
		// kubepods under a cgroup of this node's own, in every hierarchy: Stop removes that one
		// tree, and leaves any other kubelet's /kubepods alone.
		"cgroupRoot": "/" + h.cgroupRoot,
		// The kubelet would lower its own oom_score_adj to -999, which root cannot do here
		// (see restrict_oom_score_adj in containerd's configuration).
		"oomScoreAdj": 0,
		// A developer's machine may have swap on.
		"failSwapOn": false,
		// Pod logs and flex-volume plugins (defaults /var/log/pods and
		// /usr/libexec/kubernetes/kubelet-plugins/volume/exec) under the node's directory.
		"podLogsDir":      h.podLogsDir(),
		"volumePluginDir": filepath.Join(h.kubeletDir(), "volume-plugins"),
		// A test machine's disk may be fuller than the defaults allow (nodefs.available 10%,
		// image GC from 85%): no eviction, and no image GC to remove the imported images, which
		// nothing could pull back.
		"evictionHard": map[string]string{
			"memory.available": "100Mi", "nodefs.available": "1%", "nodefs.inodesFree": "1%",
			"imagefs.available": "1%", "imagefs.inodesFree": "1%",
		},
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		"clusterDomain":               "cluster.local",
	}
}

// startKubelet writes the kubelet's credentials and configuration and starts it.
func (n *Node) startKubelet(ctx context.Context, opts Options) error {
	dir := n.host.kubeletDir()
	creds, err := n.cluster.KubeletCredentials(filepath.Join(dir, "pki"), n.Name)
	if err != nil {
		return err
	}
	ports, err := localcluster.FreePorts(2)
	if err != nil {
		return err
	}
	raw, err := yaml.Marshal(kubeletConfig(n.host, creds, ports[0], ports[1]))
	if err != nil {
		return fmt.Errorf("encoding the kubelet's configuration: %w", err)
	}
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, raw, 0o600); err != nil {
		return fmt.Errorf("writing the kubelet's configuration: %w", err)
	}
	if err := n.host.makeCgroupRoot(); err != nil {
		return err
	}
	n.kubelet, err = localcluster.StartProcess("kubelet", filepath.Join(opts.BinDir, "kubelet"),
		filepath.Join(n.Dir, "logs"), []string{"PATH=" + kubeletPath},
		"--config="+config,
		"--kubeconfig="+creds.Kubeconfig,
		// Its state, volumes and certificates under the node's directory, not /var/lib/kubelet.
		"--root-dir="+n.host.kubeletRoot(),
		"--cert-dir="+filepath.Join(dir, "pki"),
		// The Node's name and Hostname address, which /etc/hosts resolves to 127.0.0.1.
		"--hostname-override="+n.Name,
		"--v=2",
	)
	if err != nil {
		return err
	}
	n.log.V(1).Info("Started", "component", "kubelet", "pid", n.kubelet.Pid(), "port", ports[0])
	return n.writePIDFile()
}
