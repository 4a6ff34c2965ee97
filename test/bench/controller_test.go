package bench_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/audit"
	"github.com/bottlerocket-ops/update-operator/test/framework/fleet"
	"github.com/bottlerocket-ops/update-operator/test/framework/hostsim"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// BenchmarkController runs the real binary in -controller mode against a real API server
// holding a fleet of realistic EKS Bottlerocket Nodes (fleet_test.go) and their
// BottlerocketNodes with full agent reports, at 5,000 and 15,000 nodes (BENCH_NODES: a comma
// separated list of sizes). A fleet takes minutes to build, so the benchmark measures a fixed
// number of samples and ignores b.N: run it with -benchtime 1x, as make bench does. It reports,
// per size:
//
//   - MiB-rss: the controller's resident memory at the end (targets 120 MiB at 5,000, 250 at
//     15,000);
//   - s-to-first-intent: from a policy's creation to its first node's intent, the mean over
//     ten policies of 50 nodes each (target 1 s);
//   - s-to-first-intent-heartbeats: the same while every Node's status is posted again (a
//     kubelet heartbeat wave): it may add at most 2 s;
//   - ms-per-pass: the mean duration of the rollout controller's passes that have nothing to
//     do (plan and apply; target 50 ms), from its reconcile-time metric;
//   - idle-writes: the writes the controller makes over 10 idle seconds (target 0);
//   - rps-idle, rps-rollout: the controller's requests per second to the API server from its
//     audit log (every request, reads and watches included), while idle and over a whole
//     rollout: 100 more nodes, with simulated hosts and real agents, updated ten at a time;
//   - s-rollout: how long that rollout took.
func BenchmarkController(b *testing.B) {
	ctrl.SetLogger(logr.Discard())
	for _, n := range benchSizes(b, 5000, 15000) {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) { benchController(b, n) })
	}
}

const (
	batch          = 50 // nodes per policy
	intentSamples  = 10 // policies whose first intent is timed
	controllerUser = "bench-controller"
)

func benchController(b *testing.B, nodes int) {
	dir := shortTempDir(b, "ctl")
	env, err := testenv.Start(testenv.WithAuditLog(dir), testenv.WithAuditPolicy(audit.Everything))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	ctx := context.Background()
	c := env.Client
	began := time.Now()
	step := func(what string) {
		b.Logf("%s: %s", what, time.Since(began).Round(time.Millisecond))
		began = time.Now()
	}
	if err := createFleet(ctx, c, nodes, batch); err != nil {
		b.Fatal(err)
	}
	step("fleet created")
	ctl := startController(b, env, dir)
	defer ctl.stop()
	poll(b, time.Minute, func() bool {
		resp, err := http.Get(ctl.metrics)
		if err == nil {
			_ = resp.Body.Close()
		}
		return err == nil
	})
	profiled := ctl.profile(b, "discovery", 20)

	// Discovery gives every node its BottlerocketNode, which the benchmark then fills with an
	// agent's report.
	poll(b, 15*time.Minute, func() bool {
		var list v1alpha1.BottlerocketNodeList
		return c.List(ctx, &list) == nil && len(list.Items) == nodes
	}, time.Second)
	step("discovered")
	if err := reportAgents(ctx, c, nodes); err != nil {
		b.Fatal(err)
	}
	ctl.settle(b)
	step("agents reported")

	batches := nodes / batch
	if batches < intentSamples+3 {
		b.Fatalf("%d nodes make %d batches of %d: the benchmark needs %d", nodes, batches, batch, intentSamples+3)
	}
	var latency time.Duration
	for i := range intentSamples {
		ctl.settle(b) // the controller idle: the time is the policy's alone
		latency += firstIntent(b, c, i)
	}
	step("first intents")

	// Idle: nothing changes in the world for ten seconds.
	ctl.settle(b)
	idleFrom := time.Now()
	idleWrites := writesBy(b, env, controllerUser)
	<-time.After(10 * time.Second) // the observation window itself, not a synchronisation
	idleWrites = writesBy(b, env, controllerUser) - idleWrites
	idleRPS := requestRate(b, env, idleFrom, time.Now())

	step("idle")
	profiled()
	profiled = ctl.profile(b, "passes", 10)
	passTime := ctl.passesWithNothingToDo(b, c, 20)
	profiled()
	step("passes")

	// A heartbeat wave: every Node's status posted again while a new policy waits for its
	// first intent.
	profiled = ctl.profile(b, "heartbeats", 10)
	posted := atomic.Int64{}
	wave := make(chan error, 1)
	go func() { wave <- heartbeat(ctx, c, nodes, &posted) }()
	poll(b, time.Minute, func() bool { return posted.Load() >= int64(nodes/10) })
	underWave := firstIntent(b, c, batches-3)
	if err := <-wave; err != nil {
		b.Fatal(err)
	}
	profiled()
	ctl.profile(b, "heap", 0)()
	rss := vmRSS(b, ctl.cmd.Process.Pid)
	step("heartbeat wave")

	// A rollout of 100 more nodes, whose agents act.
	ctl.settle(b)
	rolloutRPS, rolloutTook := rollout(b, env, ctl)
	step("rollout")

	b.ReportMetric(rss, "MiB-rss")
	b.ReportMetric(latency.Seconds()/intentSamples, "s-to-first-intent")
	b.ReportMetric(underWave.Seconds(), "s-to-first-intent-heartbeats")
	b.ReportMetric(passTime.Seconds()*1000, "ms-per-pass")
	b.ReportMetric(float64(idleWrites), "idle-writes")
	b.ReportMetric(idleRPS, "rps-idle")
	b.ReportMetric(rolloutRPS, "rps-rollout")
	b.ReportMetric(rolloutTook.Seconds(), "s-rollout")
}

// benchSizes returns the fleet sizes of BENCH_NODES, else defaults.
func benchSizes(b *testing.B, defaults ...int) []int {
	v := os.Getenv("BENCH_NODES")
	if v == "" {
		return defaults
	}
	var sizes []int
	for f := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			b.Fatalf("BENCH_NODES=%q: %v", v, err)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// firstIntent creates the policy of batch i and returns how long its first node waited for
// its intent.
func firstIntent(b *testing.B, c client.Client, i int) time.Duration {
	ctx := context.Background()
	start := time.Now()
	if err := c.Create(ctx, benchPolicy(i)); err != nil {
		b.Fatal(err)
	}
	first := nodeName(i * batch)
	poll(b, time.Minute, func() bool {
		var brn v1alpha1.BottlerocketNode
		return c.Get(ctx, client.ObjectKey{Name: first}, &brn) == nil && brn.Spec.Action == v1alpha1.ActionStage
	})
	return time.Since(start)
}

// settle waits until the controller's writes have landed: their count holds for a second.
func (p *controllerProcess) settle(b *testing.B) {
	before := -1.0
	poll(b, 5*time.Minute, func() bool {
		n := p.writes(b)
		settled := n == before
		before = n
		return settled
	}, time.Second)
}

// controllerProcess is the operator binary running in -controller mode.
type controllerProcess struct {
	cmd     *exec.Cmd
	metrics string // URL of its metrics, served over plain HTTP
	pprof   string // URL of its profiles, with BENCH_PROFILE_DIR
}

func startController(b *testing.B, env *testenv.Env, dir string) *controllerProcess {
	bin := buildOperator(b, dir)
	kc := kubeconfigFor(b, env, dir, controllerUser)
	addr := freeAddress(b)
	args := []string{"-controller", "-kubeconfig", kc, "-metrics-bind-address", addr, "-metrics-secure=false",
		"-health-probe-bind-address", "127.0.0.1:0"}
	p := &controllerProcess{metrics: "http://" + addr + "/metrics"}
	if os.Getenv("BENCH_PROFILE_DIR") != "" {
		pprof := freeAddress(b)
		args = append(args, "-pprof-bind-address", pprof)
		p.pprof = "http://" + pprof + "/debug/pprof/"
	}
	p.cmd = exec.Command(bin, args...)
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return p
}

// profile saves, with BENCH_PROFILE_DIR, the controller's CPU profile over the next seconds
// (or its heap profile, seconds 0) into that directory as name.pprof; the returned function
// waits for it.
func (p *controllerProcess) profile(b *testing.B, name string, seconds int) func() {
	if p.pprof == "" {
		return func() {}
	}
	url := p.pprof + "heap"
	if seconds > 0 {
		url = fmt.Sprintf("%sprofile?seconds=%d", p.pprof, seconds)
	}
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get(url)
		if err != nil {
			done <- err
			return
		}
		defer func() { _ = resp.Body.Close() }()
		raw, err := io.ReadAll(resp.Body)
		if err == nil {
			err = os.WriteFile(filepath.Join(os.Getenv("BENCH_PROFILE_DIR"), name+".pprof"), raw, 0o600)
		}
		done <- err
	}()
	return func() {
		if err := <-done; err != nil {
			b.Errorf("profiling the controller (%s): %v", name, err)
		}
	}
}

func (p *controllerProcess) stop() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() }

// passesWithNothingToDo makes the rollout controller plan n times with nothing to do (a
// policy's annotation changes, nothing it decides from) and returns the mean duration of its
// passes, from controller-runtime's reconcile-time histogram.
func (p *controllerProcess) passesWithNothingToDo(b *testing.B, c client.Client, n int) time.Duration {
	ctx := context.Background()
	sum0, count0 := p.reconcileTime(b)
	count := count0
	for k := range n {
		var policy v1alpha1.UpdatePolicy
		if err := c.Get(ctx, client.ObjectKey{Name: benchPolicy(0).Name}, &policy); err != nil {
			b.Fatal(err)
		}
		metav1.SetMetaDataAnnotation(&policy.ObjectMeta, "bench/touch", strconv.Itoa(k))
		if err := c.Update(ctx, &policy); err != nil {
			b.Fatal(err)
		}
		before := count
		poll(b, time.Minute, func() bool { _, count = p.reconcileTime(b); return count > before }, 100*time.Millisecond)
	}
	sum, count := p.reconcileTime(b)
	return time.Duration((sum - sum0) / float64(count-count0) * float64(time.Second))
}

// scrape reads the controller's metrics.
func (p *controllerProcess) scrape(b *testing.B) map[string]*dto.MetricFamily {
	resp, err := http.Get(p.metrics)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		b.Fatalf("reading the controller's metrics: %v", err)
	}
	return families
}

// writes counts the controller's write requests so far, from client-go's request metric.
func (p *controllerProcess) writes(b *testing.B) float64 {
	n := 0.0
	for _, m := range p.scrape(b)["rest_client_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "method" && l.GetValue() != http.MethodGet {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// reconcileTime returns the sum and count of the rollout controller's reconcile times.
func (p *controllerProcess) reconcileTime(b *testing.B) (sum float64, count uint64) {
	for _, m := range p.scrape(b)["controller_runtime_reconcile_time_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "controller" && l.GetValue() == "rollout" {
				return m.GetHistogram().GetSampleSum(), m.GetHistogram().GetSampleCount()
			}
		}
	}
	b.Fatal("the controller's metrics have no reconcile time of the rollout controller")
	return 0, 0
}

// requestRate is the controller's requests per second to the API server between from and to,
// from the audit log.
func requestRate(b *testing.B, env *testenv.Env, from, to time.Time) float64 {
	n, err := env.CompletedRequests(func(ev audit.Event) bool {
		return ev.User.Username == controllerUser && !ev.RequestReceived.Before(from) && ev.RequestReceived.Before(to)
	})
	if err != nil {
		b.Fatal(err)
	}
	return float64(n) / to.Sub(from).Seconds()
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

// rolloutNodes are the nodes of the rollout measured: nodes whose agents act.
const rolloutNodes = 100

// rollout adds rolloutNodes nodes with simulated hosts and the real agent
// (test/framework/fleet, which plays their kubelets), waits for their agents' reports, then
// updates them ten at a time. It returns the controller's request rate over the whole rollout
// and how long the rollout took. The nodes run no pods: their drains evict nothing.
func rollout(b *testing.B, env *testenv.Env, ctl *controllerProcess) (float64, time.Duration) {
	ctx := context.Background()
	hosts := hostsim.Config{
		Version: "1.25.0", Variant: "aws-k8s-1.31", Arch: "x86_64",
		Releases:        append(hostsim.Releases("1.26.0"), hostsim.Reached("1.25.0")...),
		PrepareDuration: 500 * time.Millisecond, RebootDuration: time.Second, RebootLinger: 500 * time.Millisecond,
	}
	f, err := fleet.Start(ctx, env.Config, env.Scheme, fleet.Options{
		Nodes: rolloutNodes, Prefix: "rollout", Zones: []string{"us-west-2a", "us-west-2b", "us-west-2c"},
		Host: hosts, RefreshInterval: 2 * time.Second, Dir: shortTempDir(b, "hosts"),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Stop()
	c := env.Client
	for _, n := range f.Nodes {
		patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"bench/rollout":"true"}}}`))
		if err := c.Patch(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name}}, patch); err != nil {
			b.Fatal(err)
		}
	}
	brns := func() []v1alpha1.BottlerocketNode {
		var list v1alpha1.BottlerocketNodeList
		if err := c.List(ctx, &list); err != nil {
			b.Fatal(err)
		}
		return slices.DeleteFunc(list.Items, func(brn v1alpha1.BottlerocketNode) bool { return !strings.HasPrefix(brn.Name, "rollout-") })
	}
	poll(b, 5*time.Minute, func() bool {
		list := brns()
		return len(list) == rolloutNodes && !slices.ContainsFunc(list, func(brn v1alpha1.BottlerocketNode) bool { return brn.Status.Agent == nil })
	}, time.Second)
	ctl.settle(b)

	ten := intstr.FromInt32(10)
	from := time.Now()
	if err := c.Create(ctx, &v1alpha1.UpdatePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "rollout"},
		Spec: v1alpha1.UpdatePolicySpec{
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"bench/rollout": "true"}}, Version: "1.26.0", MaxUnavailable: &ten,
			// Ten rounds of a minute's default stableFor would make the rollout mostly waiting.
			Health: v1alpha1.HealthSpec{StableFor: &metav1.Duration{Duration: 5 * time.Second}},
		},
	}); err != nil {
		b.Fatal(err)
	}
	poll(b, 15*time.Minute, func() bool {
		return !slices.ContainsFunc(brns(), func(brn v1alpha1.BottlerocketNode) bool { return brn.Status.Phase != v1alpha1.PhaseUpdated })
	}, time.Second)
	took := time.Since(from)
	return requestRate(b, env, from, time.Now()), took
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
	n, err := env.CompletedRequests(func(ev audit.Event) bool { return ev.User.Username == user && ev.Write() })
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// freeAddress returns a loopback address no one listened on a moment ago.
func freeAddress(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}
