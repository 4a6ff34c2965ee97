package realnode

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/bottlerocket-ops/update-operator/test/framework/localcluster"
)

// podTimeout bounds a pod's start and its termination by the kubelet.
const podTimeout = 2 * time.Minute

// requirePreconditions skips the test where a real node cannot run, or fails it in CI (CI set),
// where hack/realnode-deps.sh must have installed everything.
func requirePreconditions(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a cluster and a real node")
	}
	missing := localcluster.MissingBinaries("")
	err := Preconditions("")
	if len(missing) == 0 && err == nil {
		return
	}
	msg := "a real node cannot run here"
	if len(missing) > 0 {
		msg += fmt.Sprintf("\n%v not in %s: run hack/controlplane.sh --all", missing, localcluster.DefaultBinDir())
	}
	if err != nil {
		msg += "\n" + err.Error()
	}
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "\n(run hack/realnode-deps.sh first, as root: .ci/run does)")
	}
	t.Skip(msg)
}

func TestRealNodeRunsAPodAndLeavesNothing(t *testing.T) {
	requirePreconditions(t)
	ctx := t.Context()
	opts := Options{Logger: testr.New(t)}
	before, err := Leftovers(opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) > 0 {
		t.Logf("before Start, left by a killed run (Start removes it) or something else: %v", before)
	}

	began := time.Now()
	c, err := localcluster.Start(ctx, localcluster.Options{Logger: testr.New(t)})
	if err != nil {
		t.Fatalf("starting the cluster: %v", err)
	}
	t.Cleanup(c.Stop)
	t.Logf("control plane up in %v", time.Since(began).Round(time.Millisecond))

	began = time.Now()
	node, err := Start(ctx, c, opts)
	if err != nil {
		t.Fatalf("starting the real node: %v", err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			if err := node.Stop(context.Background()); err != nil {
				t.Errorf("stopping the node: %v", err)
			}
		}
	})
	t.Logf("real node %s Ready in %v", node.Name, time.Since(began).Round(time.Millisecond))

	runAndDeletePod(ctx, t, c, node)

	began = time.Now()
	stopped = true
	if err := node.Stop(ctx); err != nil {
		t.Errorf("stopping the node: %v", err)
	}
	t.Logf("node torn down in %v", time.Since(began).Round(time.Millisecond))
	after, err := Leftovers(opts)
	if err != nil {
		t.Fatal(err)
	}
	// Everything must be gone, a killed run's leftovers included; only an empty host directory
	// that was there before may be someone else's.
	var left []string
	for _, l := range after {
		if !strings.HasPrefix(l, "empty directory ") || !slices.Contains(before, l) {
			left = append(left, l)
		}
	}
	if len(left) > 0 {
		t.Errorf("left behind after Stop:\n%v", left)
	}
	if _, err := c.Clientset.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Node %s after Stop: want NotFound, got %v", node.Name, err)
	}
}

// runAndDeletePod runs the pause image in a pod on the node until Running, deletes the pod
// gracefully and waits until the kubelet has terminated it and the pod is gone.
func runAndDeletePod(ctx context.Context, t *testing.T, c *localcluster.Cluster, node *Node) {
	t.Helper()
	pods := c.Clientset.CoreV1().Pods("default")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pause"},
		Spec: corev1.PodSpec{
			NodeName: node.Name,
			Containers: []corev1.Container{{
				Name: "pause", Image: PauseImage, ImagePullPolicy: corev1.PullNever,
			}},
			TerminationGracePeriodSeconds: ptr.To[int64](10),
		},
	}
	began := time.Now()
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the pod: %v", err)
	}
	var phase corev1.PodPhase
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, podTimeout, true, func(ctx context.Context) (bool, error) {
		p, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		phase = p.Status.Phase
		return phase == corev1.PodRunning, nil
	})
	if err != nil {
		t.Fatalf("pod not Running after %v (phase %q): %v\n%s", podTimeout, phase, err, node.logTails())
	}
	t.Logf("pod Running in %v", time.Since(began).Round(time.Millisecond))

	// The API server reaches the kubelet (by the Node's Hostname, on 127.0.0.1) for the logs
	// of the pod's container, which pause/main.go writes once it holds the pod.
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, podTimeout, true, func(ctx context.Context) (bool, error) {
		raw, err := pods.GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			return false, fmt.Errorf("reading the pod's logs through the API server: %w", err)
		}
		return strings.Contains(string(raw), "pause: holding the pod"), nil
	})
	if err != nil {
		t.Fatalf("the pod's log: %v\n%s", err, node.logTails())
	}

	// A graceful delete: the Pod object goes only once the kubelet has killed its containers
	// and reported them terminated.
	began = time.Now()
	if err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting the pod: %v", err)
	}
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, podTimeout, true, func(ctx context.Context) (bool, error) {
		_, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("the kubelet did not terminate the pod in %v: %v\n%s", podTimeout, err, node.logTails())
	}
	t.Logf("pod terminated by the kubelet and gone in %v", time.Since(began).Round(time.Millisecond))
}
