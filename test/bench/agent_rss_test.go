// Package bench_test measures the operator's processes against a real API server.
package bench_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/hostsim"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// BenchmarkAgentIdleRSS starts the real binary in -agent mode against a real API server and a
// simulated host, waits until it has reported and refreshed several times while idle, and
// reports its resident memory (target: at most 30 MiB) — split into anonymous memory (the Go heap and
// runtime) and file-backed pages (the binary's code and read-only data it touched) — and CPU
// time per idle refresh.
func BenchmarkAgentIdleRSS(b *testing.B) {
	ctrl.SetLogger(logr.Discard())
	env, err := testenv.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	dir := shortTempDir(b, "rss")

	bin := buildOperator(b, dir)
	kc := kubeconfigFor(b, env, dir, "agent")
	host := hostsim.New(hostsim.Config{Version: "1.25.0", Releases: hostsim.Releases("1.25.0"), BootIDFile: filepath.Join(dir, "boot_id")})
	if err := host.Start(filepath.Join(dir, "api.sock")); err != nil {
		b.Fatal(err)
	}
	defer host.Close()
	ctx := context.Background()
	if err := env.Client.Create(ctx, &v1alpha1.BottlerocketNode{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Spec: v1alpha1.BottlerocketNodeSpec{Policy: "fleet"}}); err != nil {
		b.Fatal(err)
	}

	cmd := exec.Command(bin, "-agent", "-node-name", "node-a", "-kubeconfig", kc,
		"-api-socket", filepath.Join(dir, "api.sock"), "-boot-id-file", filepath.Join(dir, "boot_id"),
		// Metrics served as installed (HTTPS, a certificate made at start), on a free loopback port.
		"-refresh-interval", "200ms", "-metrics-bind-address", "127.0.0.1:0", "-health-probe-bind-address", "127.0.0.1:0")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	// Reported once, then idle: each iteration is one idle refresh cycle of the agent.
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var brn v1alpha1.BottlerocketNode
		err := env.Client.Get(ctx, client.ObjectKey{Name: "node-a"}, &brn)
		return err == nil && brn.Status.Agent != nil, nil
	})
	if err != nil {
		b.Fatalf("waiting for the agent's first report: %v", err)
	}
	lastRefresh := func() time.Time {
		if c := host.State().LastCommand; c != nil {
			return c.Timestamp
		}
		return time.Time{}
	}
	cpuStart := cpuSeconds(b, cmd.Process.Pid)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		last := lastRefresh()
		if err := host.WaitFor(ctx, func(s hostsim.State) bool {
			return !s.Busy && s.LastCommand != nil && s.LastCommand.Timestamp.After(last)
		}); err != nil {
			b.Fatal(err)
		}
	}
	rss := vmRSS(b, cmd.Process.Pid)
	b.StopTimer()
	b.ReportMetric(rss, "MiB-rss")
	b.ReportMetric(procStatus(b, cmd.Process.Pid, "RssAnon"), "MiB-rss-anon")
	b.ReportMetric(procStatus(b, cmd.Process.Pid, "RssFile"), "MiB-rss-file")
	b.ReportMetric((cpuSeconds(b, cmd.Process.Pid)-cpuStart)/float64(b.N), "cpu-s/refresh")
}

// vmRSS reads a process's resident memory in MiB.
func vmRSS(b *testing.B, pid int) float64 { return procStatus(b, pid, "VmRSS") }

// procStatus reads a memory figure (kB) of /proc/PID/status in MiB.
func procStatus(b *testing.B, pid int, field string) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(raw)) {
		if fields := strings.Fields(line); len(fields) >= 2 && fields[0] == field+":" {
			kb, _ := strconv.ParseFloat(fields[1], 64)
			return kb / 1024
		}
	}
	b.Fatalf("no %s", field)
	return 0
}

// cpuSeconds reads a process's user+system CPU time.
func cpuSeconds(b *testing.B, pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100 // clock ticks
}
