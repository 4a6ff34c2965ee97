package realnode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/bottlerocket-ops/update-operator/test/framework/localcluster"
)

// Host paths outside the node's directory that containerd and the kubelet write to whatever
// their configuration says: runc shims' sockets (containerd 1.6 puts them in
// /run/containerd/s, runtime/v2/shim/util_unix.go), libcni's cache of results
// (/var/lib/cni/results, which the CRI plugin does not move), the kubelet's links to the
// containers' logs (/var/log/containers, pkg/kubelet/kubelet.go), its device-plugin socket
// (devicePluginSocket) and the directory of libmount's table, which the mount commands the
// kubelet runs create (/run/mount). Listed parents first.
var hostDirs = []string{
	"/run/containerd", "/run/containerd/s", "/run/mount", "/var/lib/cni", "/var/lib/cni/results",
	"/var/lib/kubelet", "/var/lib/kubelet/device-plugins", "/var/log/containers",
}

// devicePluginSocket is the kubelet's device-plugin registration socket, at a path fixed whatever
// --root-dir says (DevicePluginPath in k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1): removed if
// the node created its directory.
const devicePluginSocket = "/var/lib/kubelet/device-plugins/kubelet.sock"

const (
	cgroupFS      = "/sys/fs/cgroup"
	cniResultsDir = "/var/lib/cni/results"
	containerLogs = "/var/log/containers"
	// createdDirsFile, in the node's directory, lists the hostDirs that did not exist before
	// the node started: teardown removes those (when empty), and no other.
	createdDirsFile = "created-host-dirs"
	// cleanupTimeout bounds the wait for the node's processes to die and its cgroups to empty.
	cleanupTimeout = 30 * time.Second
)

// recordCreatedDirs records which hostDirs do not exist yet.
func (h hostState) recordCreatedDirs() error {
	var absent []string
	for _, d := range hostDirs {
		if _, err := os.Stat(d); errors.Is(err, fs.ErrNotExist) {
			absent = append(absent, d)
		}
	}
	path := filepath.Join(h.dir, createdDirsFile)
	if err := os.WriteFile(path, []byte(strings.Join(absent, "\n")), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// makeCgroupRoot creates the node's cgroup in every v1 hierarchy: the kubelet refuses a
// cgroupRoot that does not exist, and creates kubepods under it.
func (h hostState) makeCgroupRoot() error {
	for _, hier := range cgroupHierarchies() {
		if err := os.MkdirAll(filepath.Join(hier, h.cgroupRoot), 0o755); err != nil {
			return fmt.Errorf("creating the node's cgroup: %w", err)
		}
	}
	return nil
}

// cgroupHierarchies are the mounted cgroup hierarchies (/sys/fs/cgroup/cpu, .../memory, ...).
func cgroupHierarchies() []string {
	entries, err := os.ReadDir(cgroupFS)
	if err != nil {
		return nil
	}
	var hiers []string
	for _, e := range entries {
		// Skip the links of co-mounted controllers (cpu,cpuacct -> cpu,cpuacct).
		if e.IsDir() && e.Type()&fs.ModeSymlink == 0 {
			hiers = append(hiers, filepath.Join(cgroupFS, e.Name()))
		}
	}
	return hiers
}

// teardown removes everything a run of the node h created. ctrd is the node's containerd when
// this process runs it; nil: a previous run's processes, if any, are stopped, and its containerd
// is started again on its state to remove its sandboxes through the CRI. keepLogs keeps Dir/logs.
func teardown(ctx context.Context, log logr.Logger, h hostState, ctrd *localcluster.Process, keepLogs bool) error {
	var errs []error
	if ctrd == nil {
		if err := localcluster.StopDir(ctx, h.dir); err != nil {
			errs = append(errs, fmt.Errorf("stopping a previous run's processes: %w", err))
		}
		if _, err := os.Stat(h.containerdConfig()); err == nil {
			log.Info("Removing a previous run's pods", "dir", h.dir)
			p, err := runContainerd(ctx, h, "containerd-cleanup")
			if err != nil {
				errs = append(errs, err)
			}
			ctrd = p
		}
	}
	if ctrd != nil {
		if err := removeSandboxes(ctx, log, h.containerdSocket()); err != nil {
			errs = append(errs, fmt.Errorf("removing pods through the CRI: %w", err))
		}
		ctrd.Stop()
	}
	// What the CRI could not remove (or a run killed mid-way left): removed directly.
	errs = append(errs, h.killProcesses(ctx)...)
	errs = append(errs, h.unmountAll()...)
	errs = append(errs, h.removeCgroups(ctx)...)
	errs = append(errs, h.removeHostEntries()...)
	if err := h.removeHostsEntry(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, h.removeDir(keepLogs))
	return errors.Join(errs...)
}

// killProcesses kills what still runs in the node's cgroups or names its directory (shims,
// a containerd or kubelet the pid file missed) and waits, bounded, until they are gone.
func (h hostState) killProcesses(ctx context.Context) []error {
	var last []int
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, cleanupTimeout, true, func(context.Context) (bool, error) {
		last = h.processes()
		for _, pid := range last {
			_ = syscall.Kill(pid, syscall.SIGKILL) // gone already is fine; still there is polled
		}
		return len(last) == 0, nil
	})
	if err != nil {
		return []error{fmt.Errorf("processes %v of the node survive SIGKILL for %v: %w", last, cleanupTimeout, err)}
	}
	return nil
}

// processes are the live processes in the node's cgroups or whose command line names its
// directory, but this one.
func (h hostState) processes() []int {
	pids := map[int]bool{}
	for _, hier := range cgroupHierarchies() {
		_ = filepath.WalkDir(filepath.Join(hier, h.cgroupRoot), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil //nolint:nilerr // an absent or vanishing cgroup holds no process
			}
			raw, _ := os.ReadFile(path)
			for _, f := range strings.Fields(string(raw)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids[pid] = true
				}
			}
			return nil
		})
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), h.dir+"/") {
			pids[pid] = true
		}
	}
	delete(pids, os.Getpid())
	out := make([]int, 0, len(pids))
	for pid := range pids {
		if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !zombie(stat) {
			out = append(out, pid)
		}
	}
	sort.Ints(out)
	return out
}

// zombie reports a /proc/<pid>/stat of a dead process not yet reaped (state Z, after "(comm)").
func zombie(stat []byte) bool {
	i := strings.LastIndexByte(string(stat), ')')
	return i > 0 && strings.HasPrefix(string(stat[i+1:]), " Z")
}

// mounts are the mount points under the node's directory, deepest first.
func (h hostState) mounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }() // read only
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Field 5 is the mount point, octal-escaped (man 5 proc).
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if strings.HasPrefix(mp, h.dir+"/") || mp == h.dir {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return strings.Count(out[i], "/") > strings.Count(out[j], "/") })
	return out
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountAll unmounts everything under the node's directory (the kubelet's volumes, the
// containers' root file systems, the sandboxes' /dev/shm and network namespaces), deepest first;
// stacked mounts take several rounds.
func (h hostState) unmountAll() []error {
	for range 10 {
		mps := h.mounts()
		if len(mps) == 0 {
			return nil
		}
		for _, mp := range mps {
			// Detached rather than refused if busy: nothing of the node runs any more.
			_ = unix.Unmount(mp, unix.MNT_DETACH)
		}
	}
	if mps := h.mounts(); len(mps) > 0 {
		return []error{fmt.Errorf("mounts under %s survive unmounting: %v", h.dir, mps)}
	}
	return nil
}

// cgroups are the node's cgroups, in every hierarchy, deepest first.
func (h hostState) cgroups() []string {
	var out []string
	for _, hier := range cgroupHierarchies() {
		_ = filepath.WalkDir(filepath.Join(hier, h.cgroupRoot), func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				out = append(out, path)
			}
			return nil //nolint:nilerr // an absent or vanishing cgroup is no cgroup of the node
		})
	}
	sort.Slice(out, func(i, j int) bool { return strings.Count(out[i], "/") > strings.Count(out[j], "/") })
	return out
}

// removeCgroups removes the node's cgroups (kubepods and the pods' under it), polling, bounded,
// while the kernel still counts exiting processes in them (EBUSY).
func (h hostState) removeCgroups(ctx context.Context) []error {
	var last []string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, cleanupTimeout, true, func(context.Context) (bool, error) {
		for _, cg := range h.cgroups() {
			_ = unix.Rmdir(cg) // still busy is polled again
		}
		last = h.cgroups()
		return len(last) == 0, nil
	})
	if err != nil {
		return []error{fmt.Errorf("cgroups %v of the node stay for %v: %w", last, cleanupTimeout, err)}
	}
	return nil
}

// cniResults are libcni's cached results of the node's network, and those of the loopback
// network for the node's sandboxes (named <network>-<container id>-<interface>).
func (h hostState) cniResults() []string {
	entries, err := os.ReadDir(cniResultsDir)
	if err != nil {
		return nil
	}
	sandboxes := filepath.Join(h.containerdRoot(), "io.containerd.grpc.v1.cri", "sandboxes")
	var out []string
	for _, e := range entries {
		name := e.Name()
		ours := strings.HasPrefix(name, h.network+"-")
		if rest, ok := strings.CutPrefix(name, "cni-loopback-"); ok {
			id, _, _ := strings.Cut(rest, "-")
			_, err := os.Stat(filepath.Join(sandboxes, id))
			ours = id != "" && err == nil
		}
		if ours {
			out = append(out, filepath.Join(cniResultsDir, name))
		}
	}
	return out
}

// logLinks are the kubelet's links in /var/log/containers to the node's pod logs.
func (h hostState) logLinks() []string {
	entries, err := os.ReadDir(containerLogs)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		path := filepath.Join(containerLogs, e.Name())
		if target, err := os.Readlink(path); err == nil && strings.HasPrefix(target, h.dir+"/") {
			out = append(out, path)
		}
	}
	return out
}

// bridgeExists reports whether the node's bridge interface is there.
func (h hostState) bridgeExists() bool {
	_, err := net.InterfaceByName(h.bridge)
	return err == nil
}

// removeHostEntries removes the bridge, the CNI cache entries, the log links and the host
// directories the node created.
func (h hostState) removeHostEntries() []error {
	var errs []error
	if h.bridgeExists() {
		// Deleting the bridge deletes its veth ends too (the pods' are gone with their namespaces).
		if out, err := exec.Command("ip", "link", "delete", h.bridge).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("deleting the bridge %s: %w: %s", h.bridge, err, out))
		}
	}
	for _, path := range append(h.cniResults(), h.logLinks()...) {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing %s: %w", path, err))
		}
	}
	raw, err := os.ReadFile(filepath.Join(h.dir, createdDirsFile))
	if err != nil {
		return errs // no run of this node got as far as creating them
	}
	created := strings.Fields(string(raw))
	if slices.Contains(created, filepath.Dir(devicePluginSocket)) {
		if err := os.Remove(devicePluginSocket); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing %s: %w", devicePluginSocket, err))
		}
	}
	for i := len(created) - 1; i >= 0; i-- {
		// Left if not empty: then something else uses it too.
		if err := os.Remove(created[i]); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("removing %s: %w", created[i], err))
		}
	}
	return errs
}

// removeDir removes the node's directory (but its logs if keepLogs), once nothing is mounted
// under it, and the directory holding nodes' directories if it is now empty.
func (h hostState) removeDir(keepLogs bool) error {
	if mps := h.mounts(); len(mps) > 0 {
		return fmt.Errorf("not removing %s: still mounted under it: %v", h.dir, mps)
	}
	if !keepLogs {
		if err := os.RemoveAll(h.dir); err != nil {
			return fmt.Errorf("removing %s: %w", h.dir, err)
		}
		_ = os.Remove(filepath.Dir(h.dir)) // only if empty: other nodes' directories stay
		return nil
	}
	entries, err := os.ReadDir(h.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", h.dir, err)
	}
	for _, e := range entries {
		if e.Name() != "logs" {
			if err := os.RemoveAll(filepath.Join(h.dir, e.Name())); err != nil {
				return fmt.Errorf("removing %s: %w", e.Name(), err)
			}
		}
	}
	return nil
}

// Leftovers lists what the node of opts (its options as given to Start) left on this machine:
// its directory, processes, mounts under its directory, cgroups, bridge, CNI cache entries and
// log links, the kubelet's device-plugin socket, and the host directories the node creates (hostDirs) that exist but are empty.
// Empty after Stop.
func Leftovers(opts Options) ([]string, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	h := newHostState(opts)
	var out []string
	if _, err := os.Stat(h.dir); err == nil {
		out = append(out, "directory "+h.dir)
	}
	for _, pid := range h.processes() {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, fmt.Sprintf("process %d: %s", pid, strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))))
	}
	for _, mp := range h.mounts() {
		out = append(out, "mount "+mp)
	}
	for _, cg := range h.cgroups() {
		out = append(out, "cgroup "+cg)
	}
	if h.bridgeExists() {
		out = append(out, "bridge "+h.bridge)
	}
	if h.hasHostsEntry() {
		out = append(out, etcHosts+" line "+h.hostsLine())
	}
	for _, path := range append(h.cniResults(), h.logLinks()...) {
		out = append(out, "file "+path)
	}
	if _, err := os.Lstat(devicePluginSocket); err == nil {
		out = append(out, "file "+devicePluginSocket)
	}
	for _, d := range hostDirs {
		if entries, err := os.ReadDir(d); err == nil && len(entries) == 0 {
			out = append(out, "empty directory "+d)
		}
	}
	return out, nil
}
