// Package chart_test renders the Helm chart (charts/bottlerocket-update-operator) with the real
// helm, pinned in hack/helm and built by `make helm`: with the defaults it renders the objects
// of dist/install.yaml, and each group of values does what it says.
package chart_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/bottlerocket-ops/update-operator/test/framework/deploy"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

const (
	release      = "bottlerocket-update-operator"
	controller   = "bottlerocket-update-controller"
	agent        = "bottlerocket-update-agent"
	defaultNS    = "bottlerocket-update-operator"
	interfaceKey = "bottlerocket.aws/updater-interface-version"
)

var chartDir = filepath.Join(testenv.RepoRoot(), "charts", "bottlerocket-update-operator")

// helmBinary returns the pinned helm: $HELM, or where `make helm` builds it. The test is
// skipped, saying so, when neither exists.
func helmBinary(t *testing.T) string {
	t.Helper()
	return testenv.PinnedTool(t, "HELM", "helm", "helm.sh/helm/v3")
}

// runHelm runs helm with args and returns its standard output.
func runHelm(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(helmBinary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes()
}

// valuesFile writes values as a values file for -f.
func valuesFile(t *testing.T, values map[string]any) string {
	t.Helper()
	b, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	// Not under t.TempDir(): its name holds the test's, and helm splits -f at commas.
	f, err := os.CreateTemp("", "chart-values-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(f.Name()) })
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// render returns `helm template` of the chart with values (nil: the defaults) and the CRDs,
// then extra arguments.
func render(t *testing.T, values map[string]any, extra ...string) []*unstructured.Unstructured {
	t.Helper()
	args := []string{"template", release, chartDir, "--include-crds"}
	if values != nil {
		args = append(args, "-f", valuesFile(t, values))
	}
	args = append(args, extra...) // after values: a later -f overrides an earlier one
	objs, err := deploy.Decode(runHelm(t, args...))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// installManifest returns the objects of dist/install.yaml.
func installManifest(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	objs, err := deploy.DecodeFile(filepath.Join(testenv.RepoRoot(), "dist", "install.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func key(o *unstructured.Unstructured) string {
	return fmt.Sprintf("%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
}

// find returns the object of kind and name, failing the test without one.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
	return nil
}

// has reports whether objs hold an object of kind and name.
func has(objs []*unstructured.Unstructured, kind, name string) bool {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return true
		}
	}
	return false
}
