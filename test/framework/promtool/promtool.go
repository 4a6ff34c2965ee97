// Package promtool runs the pinned promtool (hack/promtool) for the tests of the alert rules,
// the dashboard and the metrics.
package promtool

import (
	"bytes"
	"os/exec"
	"strings"

	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// T is what the helpers need of a test (*testing.T, or Ginkgo's GinkgoT()).
type T interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

// Binary returns the pinned promtool: $PROMTOOL, or where `make promtool` builds it.
// The test is skipped, saying so, when neither exists.
func Binary(t T) string {
	t.Helper()
	return testenv.PinnedTool(t, "PROMTOOL", "promtool", "github.com/prometheus/prometheus")
}

// Run runs promtool with args (and stdin, if not nil) in dir and returns its output; a
// failing run fails the test.
func Run(t T, dir string, stdin []byte, args ...string) string {
	t.Helper()
	out, err := Try(t, dir, stdin, args...)
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// Try runs promtool like Run and returns its output and error.
func Try(t T, dir string, stdin []byte, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
