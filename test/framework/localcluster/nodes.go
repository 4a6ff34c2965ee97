package localcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/bottlerocket-ops/update-operator/internal/kubeutil"
)

// Variant is the Bottlerocket variant the simulated nodes run.
const Variant = "aws-k8s-1.31"

// Zones are the topology.kubernetes.io/zone values nodes are spread over, round-robin.
var Zones = []string{"us-west-2a", "us-west-2b", "us-west-2c"}

// OSImage is what a Bottlerocket node running version reports as its OS image.
func OSImage(version string) string {
	return fmt.Sprintf("Bottlerocket OS %s (%s)", version, Variant)
}

// NewBootID returns a fresh boot ID, as a host gets at each boot.
func NewBootID() string { return string(uuid.NewUUID()) }

// createWorkers is how many Nodes AddNodes creates at once.
const createWorkers = 8

// nodeIP is the InternalIP of the i-th node (0-based): 10.0.0.1, 10.0.0.2, …
func nodeIP(i int) string { return fmt.Sprintf("10.0.%d.%d", (i+1)/256, (i+1)%256) }

// AddNodes creates n Nodes posing as Bottlerocket hosts running version, managed by kwok, and
// waits until kwok has made them all Ready. Names follow the EC2 style ip-10-0-X-Y; each node
// has a hostname label, a zone label (Zones, round-robin), an InternalIP, the osImage of version
// and a fresh boot ID. It returns the names.
func (c *Cluster) AddNodes(ctx context.Context, n int, version string) ([]string, error) {
	c.nodesMu.Lock()
	first := c.nodes
	c.nodes += n
	c.nodesMu.Unlock()
	names := make([]string, n)
	errs := make([]error, n)
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(n, createWorkers) {
		wg.Go(func() {
			for i := range work {
				node := newNode(first+i, version)
				names[i] = node.Name
				// The status is kept on create: kwok's node-initialize stage only fills in what
				// is missing (conditions, capacity, allocatable) and keeps osImage and bootID.
				if _, err := c.Clientset.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
					errs[i] = fmt.Errorf("creating Node %s: %w", node.Name, err)
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return names, err
	}
	if err := c.WaitNodesReady(ctx, names...); err != nil {
		return names, err
	}
	c.log.Info("Nodes ready", "count", n, "version", version)
	return names, nil
}

func newNode(i int, version string) *corev1.Node {
	ip := nodeIP(i)
	name := "ip-" + strings.ReplaceAll(ip, ".", "-")
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{KwokNodeAnnotation: "fake"},
			Labels: map[string]string{
				corev1.LabelHostname:     name,
				corev1.LabelTopologyZone: Zones[i%len(Zones)],
				corev1.LabelOSStable:     "linux",
				corev1.LabelArchStable:   "amd64",
				"type":                   "kwok",
			},
		},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: ip},
				{Type: corev1.NodeHostName, Address: name},
			},
			NodeInfo: corev1.NodeSystemInfo{
				OSImage: OSImage(version), BootID: NewBootID(),
				OperatingSystem: "linux", Architecture: "amd64",
			},
		},
	}
}

// WaitNodesReady waits until every named Node is Ready.
func (c *Cluster) WaitNodesReady(ctx context.Context, names ...string) error {
	want := sets.New(names...)
	var ready int
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := c.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return false, nil
		}
		ready = 0
		for i := range list.Items {
			if want.Has(list.Items[i].Name) && kubeutil.NodeReady(&list.Items[i]) {
				ready++
			}
		}
		return ready == want.Len(), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %d nodes to be Ready (%d are): %w", want.Len(), ready, err)
	}
	return nil
}

// BeginReboot simulates a host going down for a reboot: in one write, the Node gets
// RebootAnnotation (kwok then leaves its status alone) and turns NotReady, as its kubelet would
// report; the pods on it turn not Ready.
func (c *Cluster) BeginReboot(ctx context.Context, node string) error {
	return c.reboot(ctx, node, corev1.ConditionFalse, rebootReason, rebootMessage, nil)
}

// EndReboot simulates the host back up running version with bootID: in one write, the Node loses
// RebootAnnotation and turns Ready with the new osImage and boot ID (kwok manages it again and
// keeps them); the pods on it turn Ready again.
func (c *Cluster) EndReboot(ctx context.Context, node, version, bootID string) error {
	return c.reboot(ctx, node, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status",
		map[string]any{"osImage": OSImage(version), "bootID": bootID})
}

// reboot sets the node's Ready condition (and nodeInfo fields) with RebootAnnotation while it is
// not Ready, then the Ready conditions of the Running pods on it.
func (c *Cluster) reboot(ctx context.Context, node string, readiness corev1.ConditionStatus, reason, message string,
	nodeInfo map[string]any) error {
	var mark any // null removes the annotation
	if readiness != corev1.ConditionTrue {
		mark = "true"
	}
	ready := condition(corev1.NodeReady, readiness)
	ready["reason"], ready["message"], ready["lastHeartbeatTime"] = reason, message, ready["lastTransitionTime"]
	status := map[string]any{"conditions": []map[string]any{ready}}
	if nodeInfo != nil {
		status["nodeInfo"] = nodeInfo
	}
	// The status subresource of a Node takes metadata too: one write, so that kwok never sees
	// the node Ready and marked, or NotReady and unmarked.
	nodePatch := mustJSON(map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{RebootAnnotation: mark}},
		"status":   status,
	})
	if _, err := c.Clientset.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, nodePatch,
		metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("setting Node %s %s for a simulated reboot: %w", node, reason, err)
	}
	pods, err := c.Clientset.CoreV1().Pods("").List(ctx, metav1.ListOptions{
		FieldSelector: fields.AndSelectors(
			fields.OneTermEqualSelector("spec.nodeName", node),
			fields.OneTermEqualSelector("status.phase", string(corev1.PodRunning)),
		).String(),
	})
	if err != nil {
		return fmt.Errorf("listing the pods of Node %s: %w", node, err)
	}
	// kwok's pod stages only act on Pending, Job-owned or deleted pods: they leave these alone.
	podPatch := mustJSON(map[string]any{"status": map[string]any{"conditions": []map[string]any{
		condition(corev1.PodReady, readiness), condition(corev1.ContainersReady, readiness),
	}}})
	for _, pod := range pods.Items {
		// A pod deleted meanwhile (an eviction ending) has no readiness left to set.
		if _, err := c.Clientset.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType,
			podPatch, metav1.PatchOptions{}, "status"); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("setting Pod %s/%s Ready=%s for a simulated reboot: %w", pod.Namespace, pod.Name, readiness, err)
		}
	}
	c.log.V(1).Info("Simulated reboot", "node", node, "ready", readiness, "pods", len(pods.Items))
	return nil
}

// condition is a Node or Pod condition, for a strategic merge patch (conditions merge by type).
func condition[T ~string](typ T, status corev1.ConditionStatus) map[string]any {
	return map[string]any{"type": typ, "status": status, "lastTransitionTime": metav1.Now().UTC().Format(time.RFC3339)}
}

func mustJSON(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encoding a patch: %v", err)) // maps of strings: cannot fail
	}
	return data
}
