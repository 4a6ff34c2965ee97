// Package promtool runs the pinned promtool (hack/promtool) for the tests of the alert rules,
// the dashboard and the metrics.
package promtool

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	gomod, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "hack", "promtool", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^require github\.com/prometheus/prometheus (v\S+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("hack/promtool/go.mod does not require github.com/prometheus/prometheus")
	}
	root := os.Getenv("BRUPOP_CACHE")
	if root == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		root = filepath.Join(cache, "bottlerocket-update-operator")
	}
	p := filepath.Join(root, "tools", "promtool-"+string(m[1]))
	if _, err := os.Stat(p); err != nil {
		t.Skipf("no promtool at %s and PROMTOOL is not set: run `make promtool` (make test builds it first)", p)
	}
	return p
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
