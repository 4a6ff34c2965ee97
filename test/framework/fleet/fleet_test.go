package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/agent/hostapi"
	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/internal/kubeutil"
	"github.com/bottlerocket-ops/update-operator/test/framework/hostsim"
	"github.com/bottlerocket-ops/update-operator/test/framework/localcluster"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// A host that comes back from a reboot while the API server is down: once the API server is
// back, its Node is Ready with the new boot ID and its agent reports again, as a kubelet and a
// restarted DaemonSet pod would make it.
func TestRebootEndsWhileAPIServerDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole cluster")
	}
	if missing := localcluster.MissingBinaries(""); len(missing) > 0 {
		t.Skipf("%v not cached in %s: run hack/controlplane.sh --all", missing, localcluster.DefaultBinDir())
	}
	if _, err := localcluster.KwokStagesDir(); err != nil {
		t.Skip(err)
	}
	ctx := t.Context()
	lc, err := localcluster.Start(ctx, localcluster.Options{Logger: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lc.Stop)
	c, err := testenv.Connect(lc.Config)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := TempDir()
	if err != nil {
		t.Fatal(err)
	}
	f, err := Start(ctx, lc.Config, c.Scheme(), Options{
		Nodes: 1, Dir: dir, Cluster: lc, RefreshInterval: time.Second,
		Host: hostsim.Config{Version: "1.25.0", Variant: localcluster.Variant, Arch: "x86_64",
			Releases: hostsim.Releases("1.25.0"), RebootDuration: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	n := f.Nodes[0]
	// The controller's part: the node's BottlerocketNode, which its agent reports in.
	if err := c.Create(ctx, &v1alpha1.BottlerocketNode{ObjectMeta: metav1.ObjectMeta{Name: n.Name}}); err != nil {
		t.Fatal(err)
	}
	reported := func(bootID string) func(context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			var brn v1alpha1.BottlerocketNode
			if err := c.Get(ctx, client.ObjectKey{Name: n.Name}, &brn); err != nil {
				return false, nil
			}
			return brn.Status.Agent != nil && brn.Status.Agent.BootID == bootID, nil
		}
	}
	oldBoot := n.Host.State().BootID
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, reported(oldBoot)); err != nil {
		t.Fatalf("the agent did not report: %v", err)
	}

	n.Host.HangReboot()
	if err := hostapi.New(n.socket, clock.RealClock{}).Reboot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var node corev1.Node
		return c.Get(ctx, client.ObjectKey{Name: n.Name}, &node) == nil && !kubeutil.NodeReady(&node), nil
	}); err != nil {
		t.Fatalf("the Node did not go NotReady: %v", err)
	}
	// The host is back while the API server is gone: the Node's status cannot be written then.
	if err := lc.RestartAPIServer(ctx, func() {
		n.Host.Revive()
		if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			return n.Host.State().Up, nil
		}); err != nil {
			t.Errorf("the host did not come back: %v", err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	newBoot := n.Host.State().BootID
	if newBoot == oldBoot {
		t.Fatal("the host did not reboot")
	}
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var node corev1.Node
		return c.Get(ctx, client.ObjectKey{Name: n.Name}, &node) == nil && kubeutil.NodeReady(&node) &&
			node.Status.NodeInfo.BootID == newBoot, nil
	}); err != nil {
		t.Errorf("the Node is not Ready with the new boot ID: %v", err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, reported(newBoot)); err != nil {
		t.Errorf("the agent did not report the new boot: %v", err)
	}
}
