package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProductImportsNoHarness checks that no product package (everything but test/ and hack/)
// depends on the test harness under test/: the image is built from the product alone, and the
// invariant checker stays independent of the planner only if the arrows run one way.
func TestProductImportsNoHarness(t *testing.T) {
	const module = "github.com/bottlerocket-ops/update-operator"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	product := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := fields[0]
		if strings.HasPrefix(pkg, module+"/test/") || strings.HasPrefix(pkg, module+"/hack/") {
			continue
		}
		product++
		for _, dep := range fields[1:] {
			if strings.HasPrefix(dep, module+"/test/") {
				t.Errorf("product package %s depends on the harness package %s", pkg, dep)
			}
		}
	}
	if product < 5 {
		t.Fatalf("found only %d product packages; is go list reading the module?", product)
	}
}
