package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/kubectl/pkg/util/podutils"
	"k8s.io/utils/ptr"

	"github.com/bottlerocket-ops/update-operator/internal/kubeutil"
)

const testNamespace = "default"

// startCluster starts a cluster with nodes kwok nodes, or skips the test with -short or if the
// binaries are not cached (hack/controlplane.sh --all builds them; the test does not).
func startCluster(t *testing.T, nodes int) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a whole cluster")
	}
	if missing := MissingBinaries(""); len(missing) > 0 {
		t.Skipf("%v not cached in %s: run hack/controlplane.sh --all", missing, DefaultBinDir())
	}
	if _, err := KwokStagesDir(); err != nil {
		t.Skip(err)
	}
	ctx := t.Context()
	began := time.Now()
	c, err := Start(ctx, Options{Logger: testr.New(t), AuditLog: true})
	if err != nil {
		t.Fatalf("starting the cluster: %v", err)
	}
	t.Cleanup(func() { stopAndCheck(t, c) })
	t.Logf("control plane up in %v", time.Since(began).Round(time.Millisecond))
	if _, err := c.AddNodes(ctx, nodes, "1.25.0"); err != nil {
		t.Fatalf("adding nodes: %v", err)
	}
	t.Logf("%d nodes Ready in %v", nodes, time.Since(began).Round(time.Millisecond))
	return c
}

// stopAndCheck stops the cluster and fails if any of its processes is left.
func stopAndCheck(t *testing.T, c *Cluster) {
	t.Helper()
	pids := c.PIDs()
	c.Stop()
	for name, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still runs after Stop", name, pid)
		}
	}
	if _, err := os.Stat(c.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory %s left behind", c.Dir)
	}
}

func TestEvictionRespectsPDB(t *testing.T) {
	c := startCluster(t, 20)
	ctx := t.Context()
	labels := map[string]string{"app": "web"}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: testNamespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{Name: "web", Image: "example.com/web:1"}},
				},
			},
		},
	}
	if _, err := c.Clientset.AppsV1().Deployments(testNamespace).Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the Deployment: %v", err)
	}
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: testNamespace},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: ptr.To(intstr.FromInt32(2)),
			Selector:     &metav1.LabelSelector{MatchLabels: labels},
		},
	}
	if _, err := c.Clientset.PolicyV1().PodDisruptionBudgets(testNamespace).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the PDB: %v", err)
	}

	began := time.Now()
	pods := waitReadyPods(ctx, t, c, "app=web", 3)
	t.Logf("3 pods Ready in %v", time.Since(began).Round(time.Millisecond))
	waitPDB(ctx, t, c, "web", 1)
	t.Logf("PDB allows 1 disruption after %v", time.Since(began).Round(time.Millisecond))

	// Cordon every node first, as a drain does: the evicted pod's replacement then stays Pending
	// and the budget stays spent (else kwok makes it Ready within milliseconds).
	nodes, err := c.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing nodes: %v", err)
	}
	for _, n := range nodes.Items {
		if _, err := c.Clientset.CoreV1().Nodes().Patch(ctx, n.Name, types.StrategicMergePatchType,
			[]byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{}); err != nil {
			t.Fatalf("cordoning %s: %v", n.Name, err)
		}
	}

	if err := evict(ctx, c, pods[0]); err != nil {
		t.Fatalf("evicting %s, which the PDB allows: %v", pods[0].Name, err)
	}
	err = evict(ctx, c, pods[1])
	if !apierrors.IsTooManyRequests(err) {
		t.Fatalf("evicting %s after %s: want 429 from the PDB, got %v", pods[1].Name, pods[0].Name, err)
	}
	t.Logf("second eviction refused: %v", err)

	// The audit log records both evictions with their answers.
	codes := evictionCodes(t, c.AuditLogPath)
	if len(codes) != 2 || codes[0] != 201 || codes[1] != 429 {
		t.Errorf("audit log: eviction answers %v, want [201 429]", codes)
	}
}

// evictionCodes reads the response codes of the evictions in an audit log.
func evictionCodes(t *testing.T, path string) []int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the audit log: %v", err)
	}
	var codes []int
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var ev struct {
			Stage     string `json:"stage"`
			ObjectRef struct {
				Subresource string `json:"subresource"`
			} `json:"objectRef"`
			ResponseStatus struct {
				Code int `json:"code"`
			} `json:"responseStatus"`
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("decoding the audit log: %v", err)
		}
		if ev.Stage == "ResponseComplete" && ev.ObjectRef.Subresource == "eviction" {
			codes = append(codes, ev.ResponseStatus.Code)
		}
	}
	return codes
}

func TestSimulatedReboot(t *testing.T) {
	c := startCluster(t, 3)
	ctx := t.Context()
	nodes, err := c.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing nodes: %v", err)
	}
	node := nodes.Items[0]
	// kwok's node-initialize stage keeps the osImage and boot ID the harness set.
	if got, want := node.Status.NodeInfo.OSImage, OSImage("1.25.0"); got != want {
		t.Errorf("osImage after kwok initialized the node = %q, want %q", got, want)
	}
	if node.Status.NodeInfo.BootID == "" {
		t.Error("boot ID lost after kwok initialized the node")
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: testNamespace, Labels: map[string]string{"app": "agent"}},
		Spec: corev1.PodSpec{
			NodeName:   node.Name,
			Containers: []corev1.Container{{Name: "agent", Image: "example.com/agent:1"}},
		},
	}
	if _, err := c.Clientset.CoreV1().Pods(testNamespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating a pod on %s: %v", node.Name, err)
	}
	waitReadyPods(ctx, t, c, "app=agent", 1)

	if err := c.BeginReboot(ctx, node.Name); err != nil {
		t.Fatal(err)
	}
	// kwok must leave the node NotReady and its pod not Ready while it reboots.
	holds(ctx, t, c, node.Name, 3*time.Second, func(n *corev1.Node, p *corev1.Pod) bool {
		return !kubeutil.NodeReady(n) && !podutils.IsPodReady(p) && n.Annotations[RebootAnnotation] == "true"
	})

	bootID := NewBootID()
	if err := c.EndReboot(ctx, node.Name, "1.26.0", bootID); err != nil {
		t.Fatal(err)
	}
	// Once kwok manages the node again, it keeps it Ready with the new osImage and boot ID.
	holds(ctx, t, c, node.Name, 3*time.Second, func(n *corev1.Node, p *corev1.Pod) bool {
		return kubeutil.NodeReady(n) && podutils.IsPodReady(p) && n.Annotations[RebootAnnotation] == "" &&
			n.Status.NodeInfo.OSImage == OSImage("1.26.0") && n.Status.NodeInfo.BootID == bootID
	})
}

// holds checks that ok holds for the node and the agent pod throughout d.
func holds(ctx context.Context, t *testing.T, c *Cluster, node string, d time.Duration, ok func(*corev1.Node, *corev1.Pod) bool) {
	t.Helper()
	// The API calls use ctx, not the poll's context, whose deadline is the expected end.
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, d, true, func(context.Context) (bool, error) {
		n, err := c.Clientset.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		p, err := c.Clientset.CoreV1().Pods(testNamespace).Get(ctx, "agent", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if !ok(n, p) {
			return false, fmt.Errorf("node %s: ready=%v annotations=%v nodeInfo=%+v; pod ready=%v",
				node, kubeutil.NodeReady(n), n.Annotations, n.Status.NodeInfo, podutils.IsPodReady(p))
		}
		return false, nil
	})
	if !wait.Interrupted(err) {
		t.Fatal(err)
	}
}

// waitReadyPods waits until n pods matching selector are Ready and returns them.
func waitReadyPods(ctx context.Context, t *testing.T, c *Cluster, selector string, n int) []corev1.Pod {
	t.Helper()
	var ready []corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := c.Clientset.CoreV1().Pods(testNamespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, nil
		}
		ready = ready[:0]
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil && podutils.IsPodReady(&p) {
				ready = append(ready, p)
			}
		}
		return len(ready) == n, nil
	})
	if err != nil {
		t.Fatalf("waiting for %d Ready pods (%s), %d are: %v", n, selector, len(ready), err)
	}
	return ready
}

// waitPDB waits until the disruption controller has computed the PDB's status.
func waitPDB(ctx context.Context, t *testing.T, c *Cluster, name string, allowed int32) {
	t.Helper()
	var last policyv1.PodDisruptionBudgetStatus
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pdb, err := c.Clientset.PolicyV1().PodDisruptionBudgets(testNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = pdb.Status
		return pdb.Status.ObservedGeneration == pdb.Generation && pdb.Status.DisruptionsAllowed == allowed, nil
	})
	if err != nil {
		t.Fatalf("waiting for PDB %s to allow %d disruptions (status %+v): %v", name, allowed, last, err)
	}
}

func evict(ctx context.Context, c *Cluster, pod corev1.Pod) error {
	return c.Clientset.PolicyV1().Evictions(pod.Namespace).Evict(ctx, &policyv1.Eviction{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace},
	})
}

// The API server restarts on the same address with the cluster's state intact, clients carry
// on, and the restart is not mistaken for a crash.
func TestRestartAPIServer(t *testing.T) {
	c := startCluster(t, 1)
	ctx := t.Context()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before-restart", Namespace: testNamespace}}
	if _, err := c.Clientset.CoreV1().ConfigMaps(testNamespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := c.PIDs()["kube-apiserver"]
	if err := c.RestartAPIServer(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if after := c.PIDs()["kube-apiserver"]; after == before || syscall.Kill(before, 0) == nil {
		t.Errorf("API server pid %d before the restart, %d after; the old one must be gone", before, after)
	}
	if _, err := c.Clientset.CoreV1().ConfigMaps(testNamespace).Get(ctx, cm.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("the cluster's state did not survive the restart: %v", err)
	}
	nodes, err := c.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 1 {
		t.Fatalf("listing nodes after the restart: %v (%d nodes)", err, len(nodes.Items))
	}
	if err := c.WaitNodesReady(ctx, nodes.Items[0].Name); err != nil {
		t.Errorf("kwok does not keep the node Ready after the restart: %v", err)
	}
	select {
	case <-c.Failed():
		t.Error("the restart was reported as a component failure")
	default:
	}
}
