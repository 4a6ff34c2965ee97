// Command demo shows a rollout through a simulated Bottlerocket fleet on this machine: a whole
// local cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) running
// real workloads guarded by PodDisruptionBudgets, simulated Bottlerocket hosts each with a
// real agent, and the real controller, the operator installed from dist/install.yaml and its
// components running under the identities it defines. It applies a policy (a canary wave, then the rest at 20%
// unavailable with a pause between nodes), makes a new release appear, and shows the rollout
// live until every node runs it. With -light it runs on etcd + kube-apiserver only, with no
// workloads and admin credentials.
//
//	go run ./hack/demo [-nodes 20] [-keep] [-light]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers"
	"github.com/bottlerocket-ops/update-operator/internal/kubeutil"
	"github.com/bottlerocket-ops/update-operator/test/framework/audit"
	"github.com/bottlerocket-ops/update-operator/test/framework/deploy"
	"github.com/bottlerocket-ops/update-operator/test/framework/fleet"
	"github.com/bottlerocket-ops/update-operator/test/framework/hostsim"
	"github.com/bottlerocket-ops/update-operator/test/framework/localcluster"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

const (
	fromVersion = "1.25.0"
	toVersion   = "1.26.0"
)

func main() {
	nodes := flag.Int("nodes", 20, "simulated Bottlerocket nodes")
	keep := flag.Bool("keep", false, "keep the cluster running after the rollout, until interrupted")
	stateDir := flag.String("state-dir", ".demo", "where the demo writes its kubeconfig")
	verbose := flag.Bool("v", false, "show the operator's logs")
	light := flag.Bool("light", false, "run on etcd + kube-apiserver only, with no workloads")
	flag.Parse()
	if *verbose {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true)))
	} else {
		ctrl.SetLogger(logr.Discard())
		klog.SetLogger(logr.Discard()) // client-go's own messages (leader election events)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *nodes, *keep, *light, *stateDir); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// cluster is where the demo runs.
type cluster struct {
	config     *rest.Config
	scheme     *runtime.Scheme
	client     client.Client
	kubeconfig string
	local      *localcluster.Cluster // nil with -light
	install    *deploy.Install       // nil with -light
	stop       func()
}

func run(ctx context.Context, n int, keep, light bool, stateDir string) error {
	start := startLocal
	if light {
		start = startLight
	}
	cl, err := start(ctx, stateDir)
	if err != nil {
		return err
	}
	defer cl.stop()
	say("Look around while it runs: export KUBECONFIG=%s; kubectl get brn -w   (Ctrl-C stops the demo)", cl.kubeconfig)
	if cl.local != nil {
		if err := workloads(ctx, cl.client, n); err != nil {
			return err
		}
	}

	// The controller first: it labels the nodes, which schedules an agent pod on each. It
	// stops before the cluster does.
	ctrlCtx, stopCtrl := context.WithCancel(ctx)
	ctrlDone, err := startController(ctrlCtx, cl)
	if err != nil {
		stopCtrl()
		return err
	}
	defer func() { stopCtrl(); <-ctrlDone }()
	say("Starting %d simulated Bottlerocket %s nodes in 3 zones, each with its host and a real agent", n, fromVersion)
	dir, err := fleet.TempDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	opts := fleet.Options{
		Nodes: n, Prefix: "ip-10-0", Dir: dir, Zones: []string{"us-west-2a", "us-west-2b", "us-west-2c"},
		RefreshInterval: 2 * time.Second, Cluster: cl.local,
		Host: hostsim.Config{
			Version: fromVersion, Variant: "aws-k8s-1.31", Arch: "x86_64", Releases: hostsim.Releases(fromVersion),
			RefreshDuration: 100 * time.Millisecond, PrepareDuration: 2 * time.Second,
			ActivateDuration: 100 * time.Millisecond, RebootDuration: 3 * time.Second,
			RebootResponse: hostsim.RebootDrop,
		},
	}
	if cl.install != nil {
		opts.AgentConfig = cl.install.Agent
	}
	fl, err := fleet.Start(ctx, cl.config, cl.scheme, opts)
	if err != nil {
		return err
	}
	defer fl.Stop()

	c := cl.client
	policy := demoPolicy()
	if err := c.Create(ctx, policy); err != nil {
		return fmt.Errorf("applying the policy: %w", err)
	}
	say("Applied UpdatePolicy %q: canary wave of 1 (soak 10s), then the rest at maxUnavailable %s, %s between nodes",
		policy.Name, policy.Spec.MaxUnavailable.String(), policy.Spec.PauseBetweenNodes.Duration)
	if err := waitFor(ctx, c, func(w world) bool { return w.reported() == n }); err != nil {
		return err
	}
	say("Every node labelled (%s=%s) and reporting through its agent", v1alpha1.LabelInterfaceVersion, v1alpha1.InterfaceVersion)

	say("Bottlerocket %s is released", toVersion)
	begin := time.Now()
	fl.SetAvailable(toVersion, fromVersion)
	stats := &stats{}
	tty := isTTY()
	err = waitFor(ctx, c, func(w world) bool {
		stats.observe(w)
		show(w, stats, time.Since(begin), tty)
		return w.done(toVersion)
	})
	if err != nil {
		return err
	}
	summary(ctx, c, stats, time.Since(begin), n, cl)
	if keep {
		fmt.Printf("\nThe cluster keeps running; look around with\n  export KUBECONFIG=%s\n  kubectl get upol,brn -o wide; kubectl get events -A; kubectl get pods -A -o wide\nand press Ctrl-C to stop it.\n", cl.kubeconfig)
		<-ctx.Done()
	} else {
		fmt.Println("\nStopping the cluster (go run ./hack/demo -keep keeps it up to look around).")
	}
	return nil
}

// startController runs the controller until ctx ends: on the local cluster as the installed
// Deployment's replica would (its service account, leader election, restarted if it exits);
// with -light as the admin. The channel is closed once it is gone.
func startController(ctx context.Context, cl *cluster) (<-chan struct{}, error) {
	o := controllers.Options{PollInterval: 500 * time.Millisecond}
	opts := ctrl.Options{Scheme: cl.scheme, Metrics: metricsserver.Options{BindAddress: "0"}}
	if cl.install != nil {
		say("Starting the controller under its service account, with leader election")
		return cl.install.RunController(ctx, o, opts)
	}
	say("Starting the controller")
	mgr, err := controllers.NewManager(cl.config, o, opts)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "demo: the controller stopped:", err)
		}
	}()
	return done, nil
}

func demoPolicy() *v1alpha1.UpdatePolicy {
	pct := intstr.FromString("20%")
	one := intstr.FromInt32(1)
	all := intstr.FromString("100%")
	return &v1alpha1.UpdatePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "fleet"},
		Spec: v1alpha1.UpdatePolicySpec{
			Version:           v1alpha1.VersionLatest,
			MaxUnavailable:    &pct,
			PauseBetweenNodes: &metav1.Duration{Duration: 2 * time.Second},
			Waves: []v1alpha1.Wave{
				{Name: "canary", Nodes: &one, SoakTime: &metav1.Duration{Duration: 10 * time.Second}},
				{Name: "rest", Nodes: &all},
			},
			Drain:         v1alpha1.DrainSpec{Timeout: &metav1.Duration{Duration: time.Minute}, OnTimeout: v1alpha1.DrainTimeoutAbort},
			Health:        v1alpha1.HealthSpec{ReadyTimeout: &metav1.Duration{Duration: 2 * time.Minute}, StableFor: &metav1.Duration{Duration: 3 * time.Second}},
			FailurePolicy: v1alpha1.FailurePolicy{MaxFailedNodes: 1},
		},
	}
}

// world is one look at the cluster.
type world struct {
	policy v1alpha1.UpdatePolicy
	nodes  map[string]*corev1.Node
	brns   []v1alpha1.BottlerocketNode
}

func (w world) reported() int {
	count := 0
	for _, b := range w.brns {
		if b.Status.Agent != nil && b.Status.Agent.CurrentVersion != "" {
			count++
		}
	}
	return count
}

// unavailable counts nodes cordoned or not Ready, whoever caused it, as the budget does.
func (w world) unavailable() int {
	count := 0
	for _, n := range w.nodes {
		if kubeutil.NodeUnavailable(n) {
			count++
		}
	}
	return count
}

func (w world) done(target string) bool {
	for _, b := range w.brns {
		if b.Status.Phase == v1alpha1.PhaseFailed {
			continue
		}
		if b.Status.Phase != v1alpha1.PhaseUpdated || b.Status.Agent == nil || b.Status.Agent.CurrentVersion != target {
			return false
		}
	}
	return len(w.brns) > 0
}

func look(ctx context.Context, c client.Client) (world, error) {
	var w world
	var nodes corev1.NodeList
	var brns v1alpha1.BottlerocketNodeList
	if err := c.Get(ctx, client.ObjectKey{Name: "fleet"}, &w.policy); err != nil {
		return w, err
	}
	if err := c.List(ctx, &nodes); err != nil {
		return w, err
	}
	if err := c.List(ctx, &brns); err != nil {
		return w, err
	}
	w.nodes = map[string]*corev1.Node{}
	for i := range nodes.Items {
		w.nodes[nodes.Items[i].Name] = &nodes.Items[i]
	}
	w.brns = brns.Items
	sort.Slice(w.brns, func(i, j int) bool { return w.brns[i].Name < w.brns[j].Name })
	return w, nil
}

// waitFor looks at the cluster every 250ms until cond holds.
func waitFor(ctx context.Context, c client.Client, cond func(world) bool) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		w, err := look(ctx, c)
		if err == nil && cond(w) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// stats are what the summary reports.
type stats struct {
	maxUnavailable int
	budget         int32
	failed         int
}

func (s *stats) observe(w world) {
	s.maxUnavailable = max(s.maxUnavailable, w.unavailable())
	s.budget = w.policy.Status.MaxUnavailable
	s.failed = 0
	for _, b := range w.brns {
		if b.Status.Phase == v1alpha1.PhaseFailed {
			s.failed++
		}
	}
}

var lastShown time.Time

func show(w world, s *stats, elapsed time.Duration, tty bool) {
	if !tty && time.Since(lastShown) < 5*time.Second {
		return
	}
	lastShown = time.Now()
	var b strings.Builder
	if tty {
		b.WriteString("\033[H\033[2J")
		fmt.Fprintf(&b, "%-12s %-12s %-8s %-8s %-7s %s\n", "NAME", "PHASE", "VERSION", "TARGET", "WAVE", "REASON")
		for _, brn := range w.brns {
			version := ""
			if brn.Status.Agent != nil {
				version = brn.Status.Agent.CurrentVersion
			}
			fmt.Fprintf(&b, "%-12s %-12s %-8s %-8s %-7s %s\n", brn.Name, brn.Status.Phase, version,
				brn.Spec.TargetVersion, brn.Status.Wave, brn.Status.Reason)
		}
		b.WriteString("\n")
	}
	p := w.policy.Status
	fmt.Fprintf(&b, "[%5.1fs] policy fleet: target %s, %s updated, %d unavailable now (budget %d, most so far %d), phase %s\n",
		elapsed.Seconds(), p.TargetVersion, p.Progress, w.unavailable(), p.MaxUnavailable, s.maxUnavailable, p.Phase)
	fmt.Print(b.String())
}

func summary(ctx context.Context, c client.Client, s *stats, elapsed time.Duration, n int, cl *cluster) {
	w, _ := look(ctx, c)
	updated := 0
	for _, b := range w.brns {
		if b.Status.Phase == v1alpha1.PhaseUpdated && b.Status.Agent != nil && b.Status.Agent.CurrentVersion == toVersion {
			updated++
		}
	}
	fmt.Printf("\nRollout summary\n")
	fmt.Printf("  nodes updated to %s:      %d of %d\n", toVersion, updated, n)
	fmt.Printf("  time taken:                %s\n", elapsed.Round(100*time.Millisecond))
	fmt.Printf("  most nodes unavailable:    %d (budget %d)\n", s.maxUnavailable, s.budget)
	if cl.local != nil {
		refused, err := audit.Count(cl.local.AuditLogPath, func(ev audit.Event) bool {
			return ev.ObjectRef.Subresource == "eviction" && ev.ResponseStatus.Code == 429
		})
		if err != nil {
			fmt.Printf("  evictions refused by PDBs: unknown (%v)\n", err)
		} else {
			fmt.Printf("  evictions refused by PDBs: %d\n", refused)
		}
		if own, foreign, err := deploy.AgentWrites(cl.local.AuditLogPath); err != nil {
			fmt.Printf("  agents' writes:            unknown (%v)\n", err)
		} else {
			writes := 0
			for _, w := range own {
				writes += w
			}
			fmt.Printf("  agents' writes:            %d, each to its own node's status; %d elsewhere (audit log)\n", writes, len(foreign))
		}
	} else {
		fmt.Printf("  evictions refused by PDBs: 0 (-light runs no workloads)\n")
	}
	fmt.Printf("  failures:                  %d\n", s.failed)
}

func say(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}

func isTTY() bool {
	fi, err := os.Stdout.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// startLight starts etcd + kube-apiserver with the CRDs (no workloads, no scheduler).
func startLight(_ context.Context, stateDir string) (*cluster, error) {
	say("Starting a control plane (etcd + kube-apiserver; built once from the Go module proxy, ~7 min the first time)")
	env, err := testenv.Start()
	if err != nil {
		return nil, err
	}
	cl := &cluster{config: env.Config, scheme: env.Scheme, client: env.Client, stop: func() { _ = env.Stop() }}
	user, err := env.Environment.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		cl.stop()
		return nil, fmt.Errorf("creating the demo's admin user: %w", err)
	}
	raw, err := user.KubeConfig()
	if err != nil {
		cl.stop()
		return nil, fmt.Errorf("writing the demo's kubeconfig: %w", err)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		cl.stop()
		return nil, err
	}
	if cl.kubeconfig, err = filepath.Abs(filepath.Join(stateDir, "kubeconfig")); err != nil {
		cl.stop()
		return nil, err
	}
	return cl, os.WriteFile(cl.kubeconfig, raw, 0o600)
}

// startLocal starts a whole local cluster with the CRDs installed.
func startLocal(ctx context.Context, stateDir string) (*cluster, error) {
	say("Building the cluster's binaries if needed (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok: ~9 min on 2 cores the first time, with progress; then cached)")
	build := exec.CommandContext(ctx, filepath.Join(testenv.RepoRoot(), "hack", "controlplane.sh"), "--all")
	build.Stderr = os.Stderr
	out, err := build.Output()
	if err != nil {
		return nil, fmt.Errorf("building the cluster's binaries: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	say("Starting a local cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) in %s", stateDir)
	dir, err := filepath.Abs(filepath.Join(stateDir, "cluster"))
	if err != nil {
		return nil, err
	}
	lc, err := localcluster.Start(ctx, localcluster.Options{Dir: dir, BinDir: lines[len(lines)-1], AuditLog: true})
	if err != nil {
		return nil, err
	}
	c, err := testenv.Connect(lc.Config)
	if err != nil {
		lc.Stop()
		return nil, err
	}
	say("Installing the operator from dist/install.yaml (CRDs, RBAC, admission policy, agent DaemonSet); its components run here, under the identities it defines")
	in, err := deploy.Apply(ctx, lc.Config, c)
	if err != nil {
		lc.Stop()
		return nil, err
	}
	return &cluster{config: lc.Config, scheme: c.Scheme(), client: c, kubeconfig: lc.Kubeconfig, local: lc, install: in, stop: lc.Stop}, nil
}

// workloads runs what a fleet runs: a Deployment and a StatefulSet guarded by
// PodDisruptionBudgets, and a DaemonSet, so that evictions meet real refusals.
func workloads(ctx context.Context, c client.Client, n int) error {
	const ns = "shop"
	labels := func(app string) map[string]string { return map[string]string{"app": app} }
	template := func(app string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels(app)},
			Spec: corev1.PodSpec{
				Containers:  []corev1.Container{{Name: app, Image: "registry.example/" + app + ":1"}},
				Tolerations: []corev1.Toleration{{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpExists}},
			},
		}
	}
	web, db := int32(max(3, n)), int32(3)
	// web's budget scales with the fleet (one pod per node): 5% may be disrupted at once (one
	// pod of 20, 25 of 500).
	twentieth, two := intstr.FromString("5%"), intstr.FromInt32(2)
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: appsv1.DeploymentSpec{
			Replicas: &web, Selector: &metav1.LabelSelector{MatchLabels: labels("web")}, Template: template("web")}},
		&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: &twentieth, Selector: &metav1.LabelSelector{MatchLabels: labels("web")}}},
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns}, Spec: appsv1.StatefulSetSpec{
			Replicas: &db, Selector: &metav1.LabelSelector{MatchLabels: labels("db")}, Template: template("db"), ServiceName: "db"}},
		&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns}, Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: &two, Selector: &metav1.LabelSelector{MatchLabels: labels("db")}}},
		&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "node-logs", Namespace: ns}, Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels("node-logs")}, Template: template("node-logs")}},
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	say("Running workloads in namespace %s: Deployment web (%d, PDB maxUnavailable 5%%), StatefulSet db (3, PDB minAvailable 2), DaemonSet node-logs", ns, web)
	return nil
}
