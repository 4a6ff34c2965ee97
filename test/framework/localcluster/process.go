package localcluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// pidFileName names the file, in the cluster's directory, listing the processes it started
// ("name pid" per line), for StopDir.
const pidFileName = "pids"

// stopGrace is how long a component has to exit after SIGTERM before it gets SIGKILL.
const stopGrace = 10 * time.Second

// process is one running component, leader of its own process group.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
	// healthy holds once the component serves (set by the cluster once it is healthy).
	healthy wait.ConditionWithContextFunc
	// retired is set when the cluster stops the process on purpose, to start it again.
	retired atomic.Bool
}

// startProcess starts bin with args in its own process group, its output going to logDir/name.log.
func startProcess(name, bin, logDir string, env []string, args ...string) (*process, error) {
	return launch(name, filepath.Join(logDir, name+".log"), os.O_TRUNC, bin, append(os.Environ(), env...), args)
}

// again starts the same program with the same arguments, appending to the same log.
func (p *process) again() (*process, error) {
	np, err := launch(p.name, p.log, os.O_APPEND, p.cmd.Path, p.cmd.Env, p.cmd.Args[1:])
	if err != nil {
		return nil, err
	}
	np.healthy = p.healthy
	return np, nil
}

// launch starts a process with the environment env; mode is os.O_TRUNC or os.O_APPEND for its log.
func launch(name, logPath string, mode int, bin string, env, args []string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|mode, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating the log of %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = env
	// Own process group, so that Stop kills it whole; SIGKILL if this process dies first (strictly:
	// if the OS thread that started it exits, which Go only does for goroutines that lock their
	// thread and end without unlocking it; nothing here does).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close() // nothing was written; the start error is the one to report
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close() // the process wrote to it directly: nothing of ours is buffered
		close(p.done)
	}()
	return p, nil
}

// exited reports an error if the process has stopped.
func (p *process) exited() error {
	select {
	case <-p.done:
		err := p.err
		if err == nil {
			err = errors.New("exit status 0")
		}
		return fmt.Errorf("%s exited (%w); last lines of %s:\n%s", p.name, err, p.log, tail(p.log, 20))
	default:
		return nil
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after stopGrace, and waits.
func (p *process) stop() {
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.done
	}
	// Anything left in the group (none of these components forks, but be sure).
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// kill kills the process group at once and waits.
func (p *process) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// writePIDFile records the running processes of the cluster in dir.
func writePIDFile(dir string, procs []*process) error {
	var b strings.Builder
	for _, p := range procs {
		fmt.Fprintf(&b, "%s %d\n", p.name, p.cmd.Process.Pid)
	}
	path := filepath.Join(dir, pidFileName)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

type pidEntry struct {
	name string
	pid  int
}

func (e pidEntry) String() string { return fmt.Sprintf("%s (pid %d)", e.name, e.pid) }

func readPIDFile(dir string) ([]pidEntry, error) {
	raw, err := os.ReadFile(filepath.Join(dir, pidFileName))
	if err != nil {
		return nil, err
	}
	var entries []pidEntry
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		name, pidText, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 1 {
			return nil, fmt.Errorf("bad line %q in the pid file of %s", sc.Text(), dir)
		}
		entries = append(entries, pidEntry{name: name, pid: pid})
	}
	return entries, sc.Err()
}

// ours reports whether pid is alive and still a process of the cluster in dir: its command
// line mentions dir (every component's flags point into it), so a recycled pid is left alone.
func ours(pid int, dir string) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil {
		// A zombie is dead already: state is the field after "(comm)".
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
			return false
		}
	}
	return strings.Contains(string(cmdline), dir)
}

// StopDir stops the processes of a cluster started with Options.Dir = dir, from another process
// (e.g. after the one that started it was killed): SIGTERM to each process group in reverse
// start order, SIGKILL after a grace period; then it removes the pid file.
func StopDir(ctx context.Context, dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("resolving %s: %w", dir, err)
	}
	entries, err := readPIDFile(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the pid file of %s: %w", dir, err)
	}
	var errs []error
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if !ours(e.pid, dir) {
			continue
		}
		_ = syscall.Kill(-e.pid, syscall.SIGTERM)
		gone := func(context.Context) (bool, error) { return !ours(e.pid, dir), nil }
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, stopGrace, true, gone); err != nil {
			_ = syscall.Kill(-e.pid, syscall.SIGKILL)
			if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, stopGrace, true, gone); err != nil {
				errs = append(errs, fmt.Errorf("%s (pid %d) does not stop: %w", e.name, e.pid, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, pidFileName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the pid file of %s: %w", dir, err)
	}
	return nil
}

// running reports the processes of the pid file in dir that are still alive.
func running(dir string) []pidEntry {
	entries, err := readPIDFile(dir)
	if err != nil {
		return nil
	}
	var alive []pidEntry
	for _, e := range entries {
		if ours(e.pid, dir) {
			alive = append(alive, e)
		}
	}
	return alive
}

// Process is a program run as the cluster's components are: in its own process group, its
// output in a log file, killed if the test process dies. test/framework/realnode runs a real
// node's containerd and kubelet so.
type Process struct{ p *process }

// StartProcess starts bin with args and this process's environment plus env, its output going
// to logDir/name.log.
func StartProcess(name, bin, logDir string, env []string, args ...string) (*Process, error) {
	p, err := startProcess(name, bin, logDir, env, args...)
	if err != nil {
		return nil, err
	}
	return &Process{p: p}, nil
}

// Stop sends SIGTERM to the process group, then SIGKILL after a grace period, and waits.
func (p *Process) Stop() { p.p.stop() }

// Exited reports an error, with the last lines of the log, if the process has stopped.
func (p *Process) Exited() error { return p.p.exited() }

// Pid is the process id, also its process group's.
func (p *Process) Pid() int { return p.p.cmd.Process.Pid }

// Log is the path of the process's log.
func (p *Process) Log() string { return p.p.log }

// WritePIDFile records procs in dir's pid file, which StopDir reads.
func WritePIDFile(dir string, procs ...*Process) error {
	inner := make([]*process, len(procs))
	for i, p := range procs {
		inner[i] = p.p
	}
	return writePIDFile(dir, inner)
}

// Tail returns the last n lines of a file (or the error reading it).
func Tail(path string, n int) string { return tail(path, n) }
