package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// The commands run against a real API server (envtest) with the real controller running on
// the real clock, as a person would run them against a cluster.

const (
	fromVersion = "1.25.0"
	toVersion   = "1.26.0"
	groupLabel  = "test.bottlerocket.aws/group"
)

var (
	cluster struct {
		once  sync.Once
		err   error
		env   *testenv.Env
		admin string // kubeconfig path of an admin
		dir   string
	}
)

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster.env != nil {
		_ = cluster.env.Stop()
		_ = os.RemoveAll(cluster.dir)
	}
	os.Exit(code)
}

// start starts the API server and the controller once, for every test that needs them.
func start(t *testing.T) (client.Client, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	cluster.once.Do(func() {
		ctrl.SetLogger(logr.Discard())
		if cluster.env, cluster.err = testenv.Start(); cluster.err != nil {
			return
		}
		if cluster.dir, cluster.err = os.MkdirTemp("", "kubectl-bottlerocket"); cluster.err != nil {
			return
		}
		if cluster.admin, cluster.err = cluster.env.AdminKubeconfig(cluster.dir, "admin"); cluster.err != nil {
			return
		}
		mgr, err := controllers.NewManager(cluster.env.Config, controllers.Options{Clock: clock.RealClock{}, PollInterval: 50 * time.Millisecond}, ctrl.Options{
			Scheme: cluster.env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
			Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		})
		if err != nil {
			cluster.err = err
			return
		}
		go func() { _ = mgr.Start(context.Background()) }() // stops with the process
	})
	if cluster.err != nil {
		t.Fatalf("starting the control plane and the controller: %v", cluster.err)
	}
	return cluster.env.Client, cluster.admin
}

// syncBuffer is a bytes.Buffer a watching command writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// run runs the plugin as a person would: with a kubeconfig, on the real clock.
func run(ctx context.Context, kubeconfig string, args ...string) (code int, stdout, stderr string) {
	var out, errOut syncBuffer
	code = Run(ctx, append(args, "--kubeconfig", kubeconfig), Options{
		Streams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut},
		Clock:   clock.RealClock{}, Location: time.UTC,
	})
	return code, out.String(), errOut.String()
}

// fleet creates Bottlerocket Nodes labelled with group, waits for their BottlerocketNodes
// and reports each host on fromVersion offered toVersion, as its agent would.
func fleet(t *testing.T, g Gomega, c client.Client, group string, names ...string) {
	t.Helper()
	ctx := context.Background()
	for _, n := range names {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{groupLabel: group}}}
		g.Expect(c.Create(ctx, node)).To(Succeed())
		t.Cleanup(func() { _ = c.Delete(context.Background(), node) })
		node.Status.NodeInfo = corev1.NodeSystemInfo{OSImage: "Bottlerocket OS " + fromVersion + " (aws-k8s-1.31)", BootID: "boot-" + n}
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "Test",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		g.Expect(c.Status().Update(ctx, node)).To(Succeed())
	}
	for _, n := range names {
		g.Eventually(func(g Gomega) {
			brn := getBRN(g, c, n)
			orig := brn.DeepCopy()
			brn.Status.Agent = &v1alpha1.AgentStatus{CurrentVersion: fromVersion, Variant: "aws-k8s-1.31", Arch: "x86_64",
				BootID: "boot-1", AvailableVersions: []string{toVersion, fromVersion}, UpdateState: v1alpha1.HostStateAvailable}
			g.Expect(c.Status().Patch(ctx, brn, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))).To(Succeed())
		}).Should(Succeed())
	}
}

// addPolicy creates a policy over the group's nodes, one at a time, to toVersion.
func addPolicy(t *testing.T, g Gomega, c client.Client, name string, mutate ...func(*v1alpha1.UpdatePolicySpec)) {
	t.Helper()
	spec := v1alpha1.UpdatePolicySpec{
		NodeSelector:   &metav1.LabelSelector{MatchLabels: map[string]string{groupLabel: name}},
		Version:        toVersion,
		MaxUnavailable: ptr.To(intstr.FromInt32(1)),
	}
	for _, m := range mutate {
		m(&spec)
	}
	p := &v1alpha1.UpdatePolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	g.Expect(c.Create(context.Background(), p)).To(Succeed())
	t.Cleanup(func() { _ = c.Delete(context.Background(), p) })
}

func getBRN(g Gomega, c client.Client, name string) *v1alpha1.BottlerocketNode {
	var brn v1alpha1.BottlerocketNode
	g.Expect(c.Get(context.Background(), client.ObjectKey{Name: name}, &brn)).To(Succeed())
	return &brn
}

func getPolicy(g Gomega, c client.Client, name string) *v1alpha1.UpdatePolicy {
	var p v1alpha1.UpdatePolicy
	g.Expect(c.Get(context.Background(), client.ObjectKey{Name: name}, &p)).To(Succeed())
	return &p
}

func getNode(g Gomega, c client.Client, name string) *corev1.Node {
	var n corev1.Node
	g.Expect(c.Get(context.Background(), client.ObjectKey{Name: name}, &n)).To(Succeed())
	return &n
}

func TestPauseResumeAndWatch(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	c, admin := start(t)
	fleet(t, g, c, "pr", "pr-a", "pr-b")
	addPolicy(t, g, c, "pr")
	ctx := context.Background()
	// One node stages (the budget is one), the other waits.
	g.Eventually(func(g Gomega) {
		g.Expect(getPolicy(g, c, "pr").Status.Phase).To(Equal(v1alpha1.RolloutProgressing))
	}).Should(Succeed())

	watchCtx, stopWatch := context.WithCancel(ctx)
	var out syncBuffer
	watched := make(chan int)
	go func() {
		watched <- Run(watchCtx, []string{"status", "pr", "--watch", "--kubeconfig", admin}, Options{
			Streams: genericiooptions.IOStreams{Out: &out, ErrOut: &out}, Clock: clock.RealClock{}, Location: time.UTC})
	}()
	g.Eventually(out.String).Should(ContainSubstring("Progressing"))

	code, stdout, stderr := run(ctx, admin, "pause", "pr")
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(stdout).To(ContainSubstring("updatepolicy/pr paused"))
	g.Eventually(func(g Gomega) {
		p := getPolicy(g, c, "pr")
		g.Expect(p.Spec.Paused).To(BeTrue())
		g.Expect(p.Status.Phase).To(Equal(v1alpha1.RolloutPaused))
	}).Should(Succeed())
	// The watch prints the change without being asked.
	g.Eventually(out.String).Should(MatchRegexp(`pr\s+1\.26\.0\s+0/2\s+Paused`))

	// The waiting node says what unblocks it, naming the command.
	g.Eventually(func(g Gomega) {
		code, stdout, stderr := run(ctx, admin, "why", waitingNode(g, c, "pr-a", "pr-b"))
		g.Expect(code).To(Equal(0), stderr)
		g.Expect(stdout).To(ContainSubstring("paused: run kubectl bottlerocket resume pr"))
		g.Expect(stdout).To(MatchRegexp(`Reason:\s+PolicyPaused`))
	}).Should(Succeed())

	// Pausing again writes nothing.
	rv := getPolicy(g, c, "pr").ResourceVersion
	code, stdout, _ = run(ctx, admin, "pause", "pr")
	g.Expect(code).To(Equal(0))
	g.Expect(stdout).To(ContainSubstring("already paused (no change)"))
	p := getPolicy(g, c, "pr")
	g.Expect(p.ManagedFields).To(ContainElement(HaveField("Manager", FieldManager)))
	g.Expect(p.ResourceVersion == rv || p.Spec.Paused).To(BeTrue())

	code, stdout, stderr = run(ctx, admin, "resume", "pr")
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(stdout).To(ContainSubstring("updatepolicy/pr unpaused"))
	g.Eventually(func(g Gomega) {
		p := getPolicy(g, c, "pr")
		g.Expect(p.Spec.Paused).To(BeFalse())
		g.Expect(p.Status.Phase).NotTo(Equal(v1alpha1.RolloutPaused))
		g.Expect(p.Annotations).NotTo(HaveKey(v1alpha1.AnnotationResume), "a resume of a rollout not halted forgives no failures")
	}).Should(Succeed())
	g.Eventually(out.String).Should(MatchRegexp(`(?s)Paused.*pr\s+1\.26\.0\s+0/2\s+Progressing`))

	stopWatch()
	g.Eventually(watched).Should(Receive(Equal(0)), func() string {
		return "a stopped watch ends without an error; it printed:\n" + out.String()
	})
}

// waitingNode returns whichever of the nodes is Pending.
func waitingNode(g Gomega, c client.Client, names ...string) string {
	for _, n := range names {
		if getBRN(g, c, n).Status.Phase == v1alpha1.PhasePending {
			return n
		}
	}
	g.Expect(names).To(BeEmpty(), "no node is Pending")
	return ""
}

func TestHaltedResumeAndRetry(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	c, admin := start(t)
	ctx := context.Background()
	fleet(t, g, c, "hr", "hr-a", "hr-b")
	addPolicy(t, g, c, "hr", func(s *v1alpha1.UpdatePolicySpec) { s.Paused = true })
	g.Eventually(func(g Gomega) {
		g.Expect(getBRN(g, c, "hr-a").Status.Reason).To(Equal(v1alpha1.ReasonPolicyPaused))
	}).Should(Succeed())
	// hr-a failed for the target an hour ago, as the controller records a failure.
	g.Eventually(func(g Gomega) {
		brn := getBRN(g, c, "hr-a")
		orig := brn.DeepCopy()
		brn.Status.Phase, brn.Status.Reason, brn.Status.Message = v1alpha1.PhaseFailed, v1alpha1.ReasonStageFailed, "disk full"
		brn.Status.FailedTarget, brn.Status.FailureCount = toVersion, 1
		brn.Status.FailedTime = ptr.To(metav1.NewTime(time.Now().Add(-time.Hour)))
		g.Expect(c.Status().Patch(ctx, brn, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))).To(Succeed())
	}).Should(Succeed())

	// One failure is the default failure budget: the rollout halts (a halt shows over a pause).
	g.Eventually(func(g Gomega) {
		g.Expect(getPolicy(g, c, "hr").Status.Phase).To(Equal(v1alpha1.RolloutHalted))
	}).Should(Succeed())
	code, stdout, _ := run(ctx, admin, "status", "hr")
	g.Expect(code).To(Equal(0))
	g.Expect(stdout).To(MatchRegexp(`hr\s+1\.26\.0\s+0/2\s+Halted\s+0/1`))
	g.Expect(stdout).To(MatchRegexp(`Failed: StageFailed\s+1\s+hr-a`))
	_, stdout, _ = run(ctx, admin, "why", "hr-a")
	g.Expect(stdout).To(ContainSubstring("until you run kubectl bottlerocket retry hr-a"))
	g.Expect(stdout).To(MatchRegexp(`Message:\s+disk full`))

	// One resume undoes both: the pause and the halt; the controller records the resume.
	code, stdout, stderr := run(ctx, admin, "resume", "hr")
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(stdout).To(ContainSubstring("updatepolicy/hr unpaused and resumed after its halt"))
	g.Eventually(func(g Gomega) {
		p := getPolicy(g, c, "hr")
		g.Expect(p.Spec.Paused).To(BeFalse())
		g.Expect(p.Status.ResumeTime).NotTo(BeNil())
		g.Expect(p.Annotations).NotTo(HaveKey(v1alpha1.AnnotationResume))
		g.Expect(p.Status.Phase).NotTo(Equal(v1alpha1.RolloutHalted))
	}).Should(Succeed())
	// Moving again, the rollout has an estimate: hr-b alone, from the deadlines (no node has
	// finished yet): drain 15m + ready 10m + stable 1m.
	g.Eventually(func(g Gomega) {
		eta := getPolicy(g, c, "hr").Status.EstimatedCompletionTime
		g.Expect(eta).NotTo(BeNil())
		g.Expect(time.Until(eta.Time)).To(BeNumerically("~", 26*time.Minute, time.Minute))
	}).Should(Succeed())
	_, stdout, _ = run(ctx, admin, "status", "hr")
	g.Expect(stdout).To(MatchRegexp(`NEXT WINDOW\s+ETA\n`))
	g.Expect(stdout).To(MatchRegexp(`always\s+(\w{3} )?\d\d:\d\d UTC \(in 2[5-7]m\)\n`))

	// retry of the Failed node: the controller picks it up and removes the request.
	code, stdout, stderr = run(ctx, admin, "retry", "hr-a")
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(stdout).To(ContainSubstring("bottlerocketnode/hr-a retry requested"))
	g.Eventually(func(g Gomega) {
		brn := getBRN(g, c, "hr-a")
		g.Expect(brn.Status.Phase).NotTo(Equal(v1alpha1.PhaseFailed))
		g.Expect(brn.Annotations).NotTo(HaveKey(v1alpha1.AnnotationRetry))
	}).Should(Succeed())
	code, stdout, _ = run(ctx, admin, "retry", "hr-a")
	g.Expect(code).To(Equal(0))
	g.Expect(stdout).To(ContainSubstring("not Failed: nothing to retry (no change)"))
}

func TestExcludeInclude(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	c, admin := start(t)
	ctx := context.Background()
	fleet(t, g, c, "ex", "ex-a")
	addPolicy(t, g, c, "ex", func(s *v1alpha1.UpdatePolicySpec) { s.Paused = true })

	code, stdout, stderr := run(ctx, admin, "exclude", "ex-a")
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(stdout).To(ContainSubstring("node/ex-a excluded"))
	g.Expect(getNode(g, c, "ex-a").Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationExclude, "true"))
	g.Eventually(func(g Gomega) {
		g.Expect(getBRN(g, c, "ex-a").Status.Reason).To(Equal(v1alpha1.ReasonExcluded))
	}).Should(Succeed())
	_, stdout, _ = run(ctx, admin, "why", "ex-a")
	g.Expect(stdout).To(ContainSubstring("excluded: run kubectl bottlerocket include ex-a"))
	_, stdout, _ = run(ctx, admin, "exclude", "ex-a")
	g.Expect(stdout).To(ContainSubstring("already excluded (no change)"))

	code, stdout, stderr = run(ctx, admin, "include", "ex-a")
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(stdout).To(ContainSubstring("node/ex-a included"))
	g.Expect(getNode(g, c, "ex-a").Annotations).NotTo(HaveKey(v1alpha1.AnnotationExclude))
	g.Eventually(func(g Gomega) {
		g.Expect(getBRN(g, c, "ex-a").Status.Reason).To(Equal(v1alpha1.ReasonPolicyPaused))
	}).Should(Succeed())
}

// viewer writes a kubeconfig for a user who may read the operator's objects and Nodes but
// change nothing.
func viewer(t *testing.T, g Gomega, c client.Client) string {
	t.Helper()
	ctx := context.Background()
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "bottlerocket-viewer"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"updatepolicies", "bottlerocketnodes"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
	}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "bottlerocket-viewer"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "viewer"}}}
	for _, obj := range []client.Object{role, binding} {
		g.Expect(c.Create(ctx, obj)).To(Succeed())
		t.Cleanup(func() { _ = c.Delete(context.Background(), obj) })
	}
	user, err := cluster.env.Environment.AddUser(envtest.User{Name: "viewer"}, nil)
	g.Expect(err).NotTo(HaveOccurred())
	raw, err := user.KubeConfig()
	g.Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(t.TempDir(), "viewer.kubeconfig")
	g.Expect(os.WriteFile(path, raw, 0o600)).To(Succeed())
	return path
}

func TestRefusedByRBACWritesNothing(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	c, _ := start(t)
	ctx := context.Background()
	fleet(t, g, c, "rb", "rb-a")
	addPolicy(t, g, c, "rb")
	kubeconfig := viewer(t, g, c)

	code, stdout, stderr := run(ctx, kubeconfig, "status", "rb")
	g.Expect(code).To(Equal(0), "a viewer reads the status: %s", stderr)
	g.Expect(stdout).To(ContainSubstring("rb"))

	policyBefore := getPolicy(g, c, "rb")
	nodeBefore := getNode(g, c, "rb-a")
	for _, args := range [][]string{{"pause", "rb"}, {"exclude", "rb-a"}} {
		code, stdout, stderr := run(ctx, kubeconfig, args...)
		g.Expect(code).NotTo(Equal(0), "%v", args)
		g.Expect(stdout).To(BeEmpty(), "%v", args)
		g.Expect(stderr).To(MatchRegexp(`^error: not allowed to patch .*forbidden`), "%v", args)
	}
	p := getPolicy(g, c, "rb")
	g.Expect(p.Spec.Paused).To(BeFalse())
	g.Expect(p.ManagedFields).NotTo(ContainElement(HaveField("Manager", FieldManager)))
	g.Expect(p.Generation).To(Equal(policyBefore.Generation))
	n := getNode(g, c, "rb-a")
	g.Expect(n.Annotations).NotTo(HaveKey(v1alpha1.AnnotationExclude))
	g.Expect(n.ManagedFields).NotTo(ContainElement(HaveField("Manager", FieldManager)))
	g.Expect(n.Annotations).To(Equal(nodeBefore.Annotations))
}

func TestBadInput(t *testing.T) {
	g := NewWithT(t)
	c, admin := start(t)
	ctx := context.Background()
	addPolicy(t, g, c, "bi")
	before := getPolicy(g, c, "bi")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"pause", "no-such-policy"}, `error: updatepolicy "no-such-policy" not found`},
		{[]string{"resume", "no-such-policy"}, `error: updatepolicy "no-such-policy" not found`},
		{[]string{"status", "no-such-policy"}, `error: updatepolicy "no-such-policy" not found`},
		{[]string{"why", "no-such-node"}, `error: bottlerocketnode "no-such-node" not found`},
		{[]string{"retry", "no-such-node"}, `error: bottlerocketnode "no-such-node" not found`},
		{[]string{"exclude", "no-such-node"}, `error: node "no-such-node" not found`},
		{[]string{"include", "no-such-node"}, `error: node "no-such-node" not found`},
		{[]string{"pause", "--bogus", "bi"}, "error: unknown flag: --bogus"},
		{[]string{"pause", "bi", "extra"}, "error: pause takes exactly one POLICY, got 2 arguments"},
		{[]string{"status", "-o", "xml"}, `error: unknown output format "xml"`},
		{[]string{"pause"}, "error: pause takes exactly one POLICY, got 0 arguments"},
		{[]string{"retry", "a", "b"}, "error: retry takes exactly one NODE, got 2 arguments"},
		{[]string{"frobnicate"}, `error: unknown command "frobnicate"`},
	}
	for _, tt := range tests {
		code, stdout, stderr := run(ctx, admin, tt.args...)
		g.Expect(code).To(Equal(1), "%v", tt.args)
		g.Expect(stdout).To(BeEmpty(), "%v", tt.args)
		g.Expect(stderr).To(HavePrefix(tt.want), "%v", tt.args)
	}
	after := getPolicy(g, c, "bi")
	g.Expect(after.Spec.Paused).To(BeFalse())
	g.Expect(after.Generation).To(Equal(before.Generation))
	g.Expect(after.ManagedFields).NotTo(ContainElement(HaveField("Manager", FieldManager)))
}

func TestOutputFormats(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	c, admin := start(t)
	ctx := context.Background()
	fleet(t, g, c, "of", "of-a")
	addPolicy(t, g, c, "of", func(s *v1alpha1.UpdatePolicySpec) { s.Paused = true })
	g.Eventually(func(g Gomega) {
		g.Expect(getBRN(g, c, "of-a").Status.Reason).To(Equal(v1alpha1.ReasonPolicyPaused))
	}).Should(Succeed())
	code, stdout, stderr := run(ctx, admin, "status", "of", "-o", "json")
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(stdout).To(ContainSubstring(`"kind": "UpdatePolicy"`))
	g.Expect(stdout).To(ContainSubstring(`"paused": true`))
	code, stdout, stderr = run(ctx, admin, "why", "of-a", "-o", "yaml")
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(stdout).To(ContainSubstring("kind: BottlerocketNode"))
	g.Expect(stdout).To(ContainSubstring("reason: PolicyPaused"))
	code, stdout, stderr = run(ctx, admin, "status", "-o", "yaml")
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(stdout).To(ContainSubstring("kind: UpdatePolicyList"))
	g.Expect(stdout).To(ContainSubstring("name: of"))
}

func TestPlan(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	c, admin := start(t)
	ctx := context.Background()
	fleet(t, g, c, "pl", "pl-a", "pl-b", "pl-c")
	addPolicy(t, g, c, "pl", func(s *v1alpha1.UpdatePolicySpec) {
		s.Paused = true
		s.Drain.DeleteEmptyDirData = ptr.To(false)
	})
	g.Eventually(func(g Gomega) {
		g.Expect(getBRN(g, c, "pl-c").Status.Reason).To(Equal(v1alpha1.ReasonPolicyPaused))
	}).Should(Succeed())

	// One at a time, 26 minutes a node from the policy's deadlines: b starts when a is back.
	code, stdout, stderr := run(ctx, admin, "plan", "pl", "-o", "json")
	g.Expect(code).To(Equal(0), stderr)
	var v planView
	g.Expect(json.Unmarshal([]byte(stdout), &v)).To(Succeed())
	g.Expect(v.PerNode).To(Equal("26m0s"))
	g.Expect(v.Nodes).To(HaveLen(3))
	for i, name := range []string{"pl-a", "pl-b", "pl-c"} {
		n := v.Nodes[i]
		g.Expect(n.Name).To(Equal(name))
		g.Expect(n.Reason).To(Equal(string(v1alpha1.ReasonPolicyPaused)))
		g.Expect(n.Back.Sub(*n.Start)).To(Equal(26 * time.Minute))
		if i > 0 {
			g.Expect(*n.Start).To(Equal(*v.Nodes[i-1].Back))
		}
	}
	g.Expect(*v.EstimatedDone).To(Equal(*v.Nodes[2].Back), "paused: the finish if it were resumed now")

	// A pod on pl-b under a PodDisruptionBudget that allows no disruption now (the status the
	// disruption controller writes: 2 healthy pods wanted, 1 is): its drain would be refused.
	web := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default", Labels: map[string]string{"app": "pl-web"}},
		Spec: corev1.PodSpec{NodeName: "pl-b", Containers: []corev1.Container{{Name: "web", Image: "web"}}}}
	g.Expect(c.Create(ctx, web)).To(Succeed())
	t.Cleanup(func() { _ = c.Delete(context.Background(), web, client.GracePeriodSeconds(0)) })
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "pl-web", Namespace: "default"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "pl-web"}}}}
	g.Expect(c.Create(ctx, pdb)).To(Succeed())
	t.Cleanup(func() { _ = c.Delete(context.Background(), pdb) })
	pdb.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation, DesiredHealthy: 2, CurrentHealthy: 1, ExpectedPods: 2}
	g.Expect(c.Status().Update(ctx, pdb)).To(Succeed())
	// A pod on pl-c with emptyDir data, which drain.deleteEmptyDirData: false keeps from being
	// evicted: the drain leaves it, and never finishes.
	cache := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "cache-1", Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: "pl-c", Containers: []corev1.Container{{Name: "cache", Image: "cache"}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}}}
	g.Expect(c.Create(ctx, cache)).To(Succeed())
	t.Cleanup(func() { _ = c.Delete(context.Background(), cache, client.GracePeriodSeconds(0)) })

	code, stdout, _ = run(ctx, admin, "plan", "pl")
	g.Expect(code).To(Equal(0))
	g.Expect(stdout).To(MatchRegexp(`Budget:\s+1 at a time, about 26m0s a node`))
	g.Expect(stdout).To(MatchRegexp(`1\s+pl-a\s+rest\s+Pending\s+\S+ UTC\s+\S+ UTC\s+PolicyPaused`))
	g.Expect(stdout).To(ContainSubstring("Would refuse a drain now"))
	g.Expect(stdout).To(ContainSubstring("  pl-b: PDB default/pl-web allows 0 disruptions: it needs 2 healthy pods, 1 are (pod web-1)\n"))
	g.Expect(stdout).To(ContainSubstring("  pl-c: pod default/cache-1 has emptyDir data and drain.deleteEmptyDirData is false: " +
		"it is never evicted, the drain times out (onTimeout: Abort)\n"))
	g.Expect(stdout).NotTo(ContainSubstring("pl-a: PDB"))
	g.Expect(stdout).NotTo(MatchRegexp(`pl-[ab]: pod default/cache-1`))

	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		g.Expect(os.WriteFile(path, []byte(text), 0o600)).To(Succeed())
		return path
	}
	// A policy file not applied yet: its edit of pl (three at a time) is planned, nothing is written.
	edit := write("edit.yaml", `apiVersion: updates.bottlerocket.aws/v1alpha1
kind: UpdatePolicy
metadata: {name: pl}
spec:
  nodeSelector: {matchLabels: {`+groupLabel+`: pl}}
  version: "`+toVersion+`"
  maxUnavailable: 3
`)
	code, stdout, stderr = run(ctx, admin, "plan", "-f", edit, "-o", "yaml")
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(yaml.Unmarshal([]byte(stdout), &v)).To(Succeed())
	g.Expect(v.Nodes).To(HaveLen(3))
	g.Expect(*v.Nodes[2].Start).To(Equal(*v.Nodes[0].Start), "three at a time: all start together")
	for _, n := range v.Nodes {
		g.Expect(n.WouldRefuseDrain).NotTo(ContainElement(ContainSubstring("cache-1")),
			"the file leaves drain.deleteEmptyDirData to its default, true: cache-1 is evicted")
	}
	g.Expect(getPolicy(g, c, "pl").Spec.Paused).To(BeTrue(), "the applied policy is unchanged")

	// A second policy over the same nodes would govern none of them: said, exit 1, not created.
	other := write("other.yaml", strings.Replace(strings.Replace(string(must(os.ReadFile(edit))), "name: pl}", "name: pl-other}", 1), "maxUnavailable: 3", "maxUnavailable: 1", 1))
	code, _, stderr = run(ctx, admin, "plan", "-f", other)
	g.Expect(code).To(Equal(1))
	g.Expect(stderr).To(ContainSubstring(`updatepolicy "pl-other" would not move: it selects nodes that pl select too`))
	var none v1alpha1.UpdatePolicy
	g.Expect(apierrors.IsNotFound(c.Get(ctx, client.ObjectKey{Name: "pl-other"}, &none))).To(BeTrue(), "plan -f created the policy")

	// Invalid files: refused by the API server's validation, or not a policy at all.
	bad := write("bad.yaml", strings.Replace(string(must(os.ReadFile(edit))), "maxUnavailable: 3", "maxUnavailable: -1", 1))
	code, _, stderr = run(ctx, admin, "plan", "-f", bad)
	g.Expect(code).To(Equal(1))
	g.Expect(stderr).To(ContainSubstring("the API server refuses"))
	typo := write("typo.yaml", strings.Replace(string(must(os.ReadFile(edit))), "maxUnavailable:", "maxUnavalable:", 1))
	code, _, stderr = run(ctx, admin, "plan", "-f", typo)
	g.Expect(code).To(Equal(1))
	g.Expect(stderr).To(ContainSubstring(`unknown field "maxUnavalable"`))
	code, _, stderr = run(ctx, admin, "plan", "pl", "-f", edit)
	g.Expect(code).To(Equal(1))
	g.Expect(stderr).To(ContainSubstring("plan takes a POLICY or -f FILE"))
}

// The controller updates the node its own pod runs on last in its wave. plan finds that node
// as the cluster shows it, from the leader election Lease, and says when it cannot.
func TestPlanKeepsTheControllersNodeLast(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	c, admin := start(t)
	ctx := context.Background()
	fleet(t, g, c, "pc", "pc-a", "pc-b", "pc-c")
	addPolicy(t, g, c, "pc", func(s *v1alpha1.UpdatePolicySpec) { s.Paused = true })
	g.Eventually(func(g Gomega) {
		g.Expect(getBRN(g, c, "pc-c").Status.Reason).To(Equal(v1alpha1.ReasonPolicyPaused))
	}).Should(Succeed())
	// plan reads the order, and the fields about the controller's node, from -o json.
	plan := func(g Gomega, kubeconfig string) (order []string, fields map[string]any) {
		code, stdout, stderr := run(ctx, kubeconfig, "plan", "pc", "-o", "json")
		g.Expect(code).To(Equal(0), stderr)
		var v planView
		g.Expect(json.Unmarshal([]byte(stdout), &v)).To(Succeed())
		for _, n := range v.Nodes {
			order = append(order, n.Name)
		}
		g.Expect(json.Unmarshal([]byte(stdout), &fields)).To(Succeed())
		return order, fields
	}
	const unknown = "the controller's node is unknown"

	// No leader election Lease: the plan is shown, and says the order may differ.
	order, fields := plan(g, admin)
	g.Expect(order).To(Equal([]string{"pc-a", "pc-b", "pc-c"}))
	g.Expect(fields).NotTo(HaveKey("controllerNode"))
	g.Expect(fields).To(HaveKeyWithValue("controllerNodeUnknown", ContainSubstring("no leader election Lease "+controllers.LeaderElectionID)))
	code, stdout, stderr := run(ctx, admin, "plan", "pc")
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(stdout).To(ContainSubstring(unknown))

	// The controller's leader runs on pc-a: its pod holds the Lease (controller-runtime's
	// identity, "<hostname>_<uuid>", and a pod's hostname is its name).
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bottlerocket-update-controller-6b8f9c7d4-x2x9k", Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: "pc-a", Containers: []corev1.Container{{Name: "controller", Image: "controller"}}}}
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: controllers.LeaderElectionID, Namespace: "default"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(pod.Name + "_0f6c2b1e-5d9a-4c3e-9a7b-2d1f8e6c4b3a"),
			LeaseDurationSeconds: ptr.To(int32(15)), RenewTime: &metav1.MicroTime{Time: time.Now()}}}
	for _, obj := range []client.Object{pod, lease} {
		g.Expect(c.Create(ctx, obj)).To(Succeed())
		t.Cleanup(func() { _ = c.Delete(context.Background(), obj, client.GracePeriodSeconds(0)) })
	}
	order, fields = plan(g, admin)
	g.Expect(order).To(Equal([]string{"pc-b", "pc-c", "pc-a"}), "the controller's node goes last, as the controller takes it")
	g.Expect(fields).To(HaveKeyWithValue("controllerNode", "pc-a"))
	g.Expect(fields).NotTo(HaveKey("controllerNodeUnknown"))
	code, stdout, stderr = run(ctx, admin, "plan", "pc")
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(stdout).To(MatchRegexp(`3\s+pc-a\s+rest\s+Pending`))
	g.Expect(stdout).NotTo(ContainSubstring(unknown))

	// A user who may not read Leases or pods still gets the plan, with the note.
	code, stdout, stderr = run(ctx, viewer(t, g, c), "plan", "pc")
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(stdout).To(MatchRegexp(`1\s+pc-a\s+rest\s+Pending`))
	g.Expect(stdout).To(ContainSubstring(unknown + " (not allowed to list Leases)"))

	// The Lease's holder gone (no leader now): unknown again.
	g.Expect(c.Delete(ctx, pod, client.GracePeriodSeconds(0))).To(Succeed())
	g.Eventually(func(g Gomega) {
		order, fields := plan(g, admin)
		g.Expect(order).To(Equal([]string{"pc-a", "pc-b", "pc-c"}))
		g.Expect(fields).To(HaveKeyWithValue("controllerNodeUnknown", ContainSubstring("pod default/"+pod.Name+" holds the leader election Lease but is not found")))
	}).Should(Succeed())
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
