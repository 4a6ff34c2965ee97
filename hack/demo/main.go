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
	"bytes"
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
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers"
	"github.com/bottlerocket-ops/update-operator/test/framework/audit"
	"github.com/bottlerocket-ops/update-operator/test/framework/deploy"
	"github.com/bottlerocket-ops/update-operator/test/framework/hostsim"
	"github.com/bottlerocket-ops/update-operator/test/framework/invariants"
	"github.com/bottlerocket-ops/update-operator/test/framework/stack"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
	"github.com/bottlerocket-ops/update-operator/test/framework/timeline"
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

func run(ctx context.Context, n int, keep, light bool, stateDir string) error {
	p := &progress{nodes: n, light: light, stateDir: stateDir}
	opts := stack.Options{
		Nodes: n, RefreshInterval: 2 * time.Second, Light: light, Dir: stateDir,
		Host: hostsim.Config{
			Version: fromVersion, Variant: "aws-k8s-1.31", Arch: "x86_64", Releases: hostsim.Reached(fromVersion),
			RefreshDuration: 100 * time.Millisecond, PrepareDuration: 2 * time.Second,
			ActivateDuration: 100 * time.Millisecond, RebootDuration: 3 * time.Second,
			SettingsDelay: 200 * time.Millisecond, RebootLinger: time.Second,
		},
		Controller: controllers.Options{PollInterval: 500 * time.Millisecond},
		Before:     p.before,
		Logger:     ctrl.Log.WithName("stack"),
	}
	if !light {
		binDir, err := buildBinaries(ctx)
		if err != nil {
			return err
		}
		opts.BinDir, opts.Dir = binDir, filepath.Join(stateDir, "cluster")
		// The workloads come before the nodes: their pods land as the nodes do, unevenly, and
		// drains meet the budgets' refusals.
		opts.Workloads, opts.WorkloadsFirst = stack.Shop, true
	}
	s, err := stack.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer s.Stop()

	c := s.Client
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
	s.Fleet.SetAvailable(toVersion, fromVersion)
	stats := &stats{}
	rec := timeline.NewRecorder(policy.Name, time.UTC)
	tty := isTTY()
	err = waitFor(ctx, c, func(w world) bool {
		stats.observe(w)
		rec.Observe(w.snapshot())
		show(w, stats, time.Since(begin), tty)
		return w.done(toVersion)
	})
	if err != nil {
		return err
	}
	rec.Finish(time.Now())
	picture := filepath.Join(stateDir, "timeline.svg")
	if err := drawTimeline(rec, picture, stats); err != nil {
		return err
	}
	summary(ctx, c, stats, time.Since(begin), n, s.AuditLogPath)
	fmt.Printf("  timeline:                  %s\n", picture)
	if keep {
		fmt.Printf("\nThe cluster keeps running; look around with\n  export KUBECONFIG=%s\n  kubectl get upol,brn -o wide; kubectl get events -A; kubectl get pods -A -o wide\nand press Ctrl-C to stop it.\n", s.Kubeconfig)
		<-ctx.Done()
	} else {
		fmt.Println("\nStopping the cluster (go run ./hack/demo -keep keeps it up to look around).")
	}
	return nil
}

// progress tells what the stack is starting.
type progress struct {
	nodes     int
	light     bool
	stateDir  string
	announced bool
}

// before is called before each step of the stack's start. The kubeconfig is told once the
// cluster runs with the operator installed.
func (p *progress) before(_ context.Context, step stack.Step, s *stack.Stack) error {
	if s.Kubeconfig != "" && step != stack.StepInstall && !p.announced {
		p.announced = true
		say("Look around while it runs: export KUBECONFIG=%s; kubectl get brn -w   (Ctrl-C stops the demo)", s.Kubeconfig)
	}
	switch step {
	case stack.StepCluster:
		if p.light {
			say("Starting a control plane (etcd + kube-apiserver; built once from the Go module proxy, ~7 min the first time)")
		} else {
			say("Starting a local cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) in %s", p.stateDir)
		}
	case stack.StepInstall:
		say("Installing the operator from dist/install.yaml (CRDs, RBAC, admission policy, agent DaemonSet); its components run here, under the identities it defines")
	case stack.StepController:
		// The controller first: it labels the nodes, which schedules an agent pod on each.
		if p.light {
			say("Starting the controller")
		} else {
			say("Starting the controller under its service account, with leader election")
		}
	case stack.StepFleet:
		say("Starting %d simulated Bottlerocket %s nodes in 3 zones, each with its host and a real agent", p.nodes, fromVersion)
	case stack.StepWorkloads:
		say("Running workloads in namespace %s: Deployment web (%d, PDB maxUnavailable 5%%), StatefulSet db (3, PDB minAvailable 2), DaemonSet node-logs",
			stack.WorkloadNamespace, stack.ShopReplicas(p.nodes))
	}
	return nil
}

// buildBinaries builds the local cluster's binaries if need be and returns their directory.
func buildBinaries(ctx context.Context) (string, error) {
	say("Building the cluster's binaries if needed (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok: ~9 min on 2 cores the first time, with progress; then cached)")
	build := exec.CommandContext(ctx, filepath.Join(testenv.RepoRoot(), "hack", "controlplane.sh"), "--all")
	build.Stderr = os.Stderr
	out, err := build.Output()
	if err != nil {
		return "", fmt.Errorf("building the cluster's binaries: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
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

// unavailable counts nodes cordoned, not Ready or being disrupted, whoever caused it, as the
// budget does.
func (w world) unavailable() int {
	count := 0
	for _, n := range w.snapshot().Nodes {
		if n.Unavailable() {
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

// snapshot is the world as the timeline reads it: every Node, with its BottlerocketNode if any.
func (w world) snapshot() invariants.Snapshot {
	s := invariants.Snapshot{Now: time.Now(), Policies: []v1alpha1.UpdatePolicy{w.policy}}
	brns := make(map[string]*v1alpha1.BottlerocketNode, len(w.brns))
	for i := range w.brns {
		brns[w.brns[i].Name] = &w.brns[i]
	}
	for _, n := range w.nodes {
		s.Nodes = append(s.Nodes, invariants.Node{Node: n, BRN: brns[n.Name]})
	}
	return s
}

// drawTimeline writes the rollout's picture to path and reads it back: it must show what the
// demo counted, the updated nodes at the end and the most nodes unavailable at once.
func drawTimeline(rec *timeline.Recorder, path string, s *stats) error {
	if err := rec.WriteFile(path); err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the timeline back: %w", err)
	}
	fig, err := timeline.Read(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("the timeline %s: %w", path, err)
	}
	if fig.Final[v1alpha1.PhaseUpdated] != s.updated || fig.PeakUnavailable != s.maxUnavailable {
		return fmt.Errorf("the timeline %s shows %d nodes updated and at most %d unavailable; the demo counted %d and %d",
			path, fig.Final[v1alpha1.PhaseUpdated], fig.PeakUnavailable, s.updated, s.maxUnavailable)
	}
	return nil
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
	updated        int // nodes in phase Updated
}

func (s *stats) observe(w world) {
	s.maxUnavailable = max(s.maxUnavailable, w.unavailable())
	s.budget = w.policy.Status.MaxUnavailable
	s.failed, s.updated = 0, 0
	for _, b := range w.brns {
		switch b.Status.Phase {
		case v1alpha1.PhaseFailed:
			s.failed++
		case v1alpha1.PhaseUpdated:
			s.updated++
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

func summary(ctx context.Context, c client.Client, s *stats, elapsed time.Duration, n int, auditLog string) {
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
	if auditLog != "" {
		refused, err := audit.Count(auditLog, func(ev audit.Event) bool {
			return ev.ObjectRef.Subresource == "eviction" && ev.ResponseStatus.Code == 429
		})
		if err != nil {
			fmt.Printf("  evictions refused by PDBs: unknown (%v)\n", err)
		} else {
			fmt.Printf("  evictions refused by PDBs: %d\n", refused)
		}
		if own, foreign, err := deploy.AgentWrites(auditLog); err != nil {
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
