package bench_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/audit"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// BenchmarkController5000 runs the real binary in -controller mode against a real API server
// holding 5,000 Bottlerocket Nodes and their BottlerocketNodes (size: BENCH_NODES). Each
// iteration creates a policy for a fresh batch of 50 nodes and measures the time until the
// first intent is written. It reports the controller's resident memory (target 150 MiB), the
// latency from policy to first intent (target 1 s), and the writes the controller makes over
// an idle period (target 0).
func BenchmarkController5000(b *testing.B) {
	ctrl.SetLogger(logr.Discard())
	nodes := 5000
	if v, err := strconv.Atoi(os.Getenv("BENCH_NODES")); err == nil {
		nodes = v
	}
	const batch = 50
	dir := shortTempDir(b, "ctl")
	env, err := testenv.Start(testenv.WithAuditLog(dir))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	ctx := context.Background()
	c := env.Client

	for i := range nodes {
		if err := createNode(ctx, c, fmt.Sprintf("n-%05d", i), strconv.Itoa(i/batch)); err != nil {
			b.Fatal(err)
		}
	}
	bin := buildOperator(b, dir)
	kc := kubeconfigFor(b, env, dir, "bench-controller")
	cmd := exec.Command(bin, "-controller", "-kubeconfig", kc, "-metrics-bind-address", "0", "-health-probe-bind-address", "127.0.0.1:0")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	// Discovery: every node labelled and given a BottlerocketNode, which the benchmark then
	// fills with an agent's report.
	poll(b, 5*time.Minute, func() bool {
		var list v1alpha1.BottlerocketNodeList
		return c.List(ctx, &list) == nil && len(list.Items) == nodes
	})
	for i := range nodes {
		if err := reportAgent(ctx, c, fmt.Sprintf("n-%05d", i)); err != nil {
			b.Fatal(err)
		}
	}

	var latency time.Duration
	b.ResetTimer()
	for i := 0; i < b.N && i < nodes/batch; i++ {
		start := time.Now()
		if err := c.Create(ctx, benchPolicy(i)); err != nil {
			b.Fatal(err)
		}
		first := fmt.Sprintf("n-%05d", i*batch)
		poll(b, time.Minute, func() bool {
			var brn v1alpha1.BottlerocketNode
			return c.Get(ctx, client.ObjectKey{Name: first}, &brn) == nil && brn.Spec.Action == v1alpha1.ActionStage
		})
		latency += time.Since(start)
	}
	b.StopTimer()

	// Idle: once the last iteration's writes have landed (the count holds for a second),
	// nothing changes in the world for an observation window of ten seconds.
	before := -1
	poll(b, time.Minute, func() bool {
		n := writesBy(b, env, "bench-controller")
		settled := n == before
		before = n
		return settled
	}, time.Second)
	<-time.After(10 * time.Second) // the observation window itself, not a synchronisation
	idle := writesBy(b, env, "bench-controller") - before

	b.ReportMetric(vmRSS(b, cmd.Process.Pid), "MiB-rss")
	b.ReportMetric(latency.Seconds()/float64(min(b.N, nodes/batch)), "s-to-first-intent")
	b.ReportMetric(float64(idle), "idle-writes")
}

func createNode(ctx context.Context, c client.Client, name, batch string) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		"bench/batch": batch, corev1.LabelTopologyZone: "zone-" + strconv.Itoa(len(name)%3),
	}}}
	if err := c.Create(ctx, node); err != nil {
		return fmt.Errorf("creating Node %s: %w", name, err)
	}
	node.Status = corev1.NodeStatus{
		NodeInfo:   corev1.NodeSystemInfo{OSImage: "Bottlerocket OS 1.25.0 (aws-k8s-1.31)", BootID: "boot-" + name},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"}},
	}
	if err := c.Status().Update(ctx, node); err != nil {
		return fmt.Errorf("writing the status of Node %s: %w", name, err)
	}
	return nil
}

func reportAgent(ctx context.Context, c client.Client, name string) error {
	var brn v1alpha1.BottlerocketNode
	if err := c.Get(ctx, client.ObjectKey{Name: name}, &brn); err != nil {
		return err
	}
	brn.Status.Agent = &v1alpha1.AgentStatus{
		CurrentVersion: "1.25.0", Variant: "aws-k8s-1.31", Arch: "x86_64", BootID: "boot-" + name,
		AvailableVersions: []string{"1.26.0", "1.25.0"}, UpdateState: v1alpha1.HostStateAvailable,
	}
	return c.Status().Update(ctx, &brn)
}

func benchPolicy(i int) *v1alpha1.UpdatePolicy {
	ten := intstr.FromInt32(10)
	return &v1alpha1.UpdatePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("batch-%d", i)},
		Spec: v1alpha1.UpdatePolicySpec{
			NodeSelector:   &metav1.LabelSelector{MatchLabels: map[string]string{"bench/batch": strconv.Itoa(i)}},
			Version:        "1.26.0",
			MaxUnavailable: &ten,
		},
	}
}

// shortTempDir makes a directory removed when the benchmark ends, with a short path: Unix
// socket paths are limited to 108 bytes, and b.TempDir's can be longer.
func shortTempDir(b *testing.B, pattern string) string {
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			b.Errorf("removing %s: %v", dir, err)
		}
	})
	return dir
}

func buildOperator(b *testing.B, dir string) string {
	bin := filepath.Join(dir, "operator")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	build.Dir, build.Env = testenv.RepoRoot(), append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building the operator: %v\n%s", err, out)
	}
	return bin
}

// kubeconfigFor writes a kubeconfig of an admin user with its own name, so that its requests
// can be told apart in the audit log.
func kubeconfigFor(b *testing.B, env *testenv.Env, dir, name string) string {
	path, err := env.AdminKubeconfig(dir, name)
	if err != nil {
		b.Fatal(err)
	}
	return path
}

func poll(b *testing.B, timeout time.Duration, cond func() bool, every ...time.Duration) {
	interval := 20 * time.Millisecond
	if len(every) > 0 {
		interval = every[0]
	}
	err := wait.PollUntilContextTimeout(context.Background(), interval, timeout, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		b.Fatalf("waiting: %v", err)
	}
}

// writesBy counts the audit log's completed writes by a user.
func writesBy(b *testing.B, env *testenv.Env, user string) int {
	n, err := env.CompletedWrites(func(ev audit.Event) bool { return ev.User.Username == user })
	if err != nil {
		b.Fatal(err)
	}
	return n
}
