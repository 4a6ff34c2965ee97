package localcluster

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"
)

// Annotations kwok and the harness agree on.
const (
	// KwokNodeAnnotation marks the nodes kwok manages (--manage-nodes-with-annotation-selector).
	KwokNodeAnnotation = "kwok.x-k8s.io/node"
	// RebootAnnotation marks a node whose status the harness owns while it simulates a reboot.
	RebootAnnotation = "bottlerocket.aws/simulated-reboot"
)

// kwokStages are the stage files, under kwok's kustomize/stage directory, that kwok's own CLI
// uses: nodes Ready at once and kept alive by leases; pods Running and Ready as soon as they are
// scheduled, Jobs' pods completed, deleted pods removed.
var kwokStages = []string{
	"node/fast/node-initialize.yaml",
	"node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
	"pod/fast/pod-ready.yaml",
	"pod/fast/pod-complete.yaml",
	"pod/fast/pod-delete.yaml",
}

// rebootStage keeps a node NotReady while it carries RebootAnnotation (its patch is what
// BeginReboot writes, so usually a no-op). kwok keeps one pending job per node, rendered from the
// node as it was, and replaces it when a stage matches a newer version of the node: matching the
// marked node cancels the heartbeat kwok had scheduled, which would otherwise write back Ready=True,
// and a heartbeat already in flight is undone at the event it causes. (Seen by experiment; kwok's
// --disregard-status-with-annotation-selector ignores the node's events but plays that pending
// heartbeat anyway, so it is not used.)
const rebootStage = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-simulated-reboot
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchAnnotations:
      ` + RebootAnnotation + `: "true"
  next:
    statusTemplate: |
      conditions:
      - type: Ready
        status: "False"
        reason: ` + rebootReason + `
        message: ` + rebootMessage + `
`

// The Ready condition of a rebooting node.
const (
	rebootReason  = "KubeletNotReady"
	rebootMessage = "simulated reboot"
)

// notRebooting is the selector term added to kwok's node stages so that they leave a rebooting
// node alone (node-initialize would make it Ready at once, the heartbeat rewrite its conditions).
var notRebooting = map[string]any{
	"key":      fmt.Sprintf(".metadata.annotations[%q]", RebootAnnotation),
	"operator": "DoesNotExist",
}

// KwokStagesDir is the kustomize/stage directory of the kwok module in the Go module cache
// (hack/controlplane.sh --all downloads the module to build kwok).
func KwokStagesDir() (string, error) {
	modcache := os.Getenv("GOMODCACHE")
	if modcache == "" {
		out, err := exec.Command("go", "env", "GOMODCACHE").Output()
		if err != nil {
			return "", fmt.Errorf("finding the Go module cache: %w", err)
		}
		modcache = strings.TrimSpace(string(out))
	}
	dir := filepath.Join(modcache, "sigs.k8s.io", "kwok@v"+KwokVersion, "kustomize", "stage")
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("kwok's stages (run hack/controlplane.sh --all): %w", err)
	}
	return dir, nil
}

// writeKwokConfig writes kwok's stages, its node stages restricted to nodes not rebooting, and
// rebootStage into one kwok configuration file.
func writeKwokConfig(stagesDir, path string) error {
	var b bytes.Buffer
	for _, name := range kwokStages {
		data, err := os.ReadFile(filepath.Join(stagesDir, name))
		if err != nil {
			return fmt.Errorf("reading kwok's stage %s: %w", name, err)
		}
		if data, err = excludeRebooting(data); err != nil {
			return fmt.Errorf("adapting kwok's stage %s: %w", name, err)
		}
		b.WriteString("---\n")
		b.Write(data)
	}
	b.WriteString("---\n" + rebootStage)
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("writing kwok's configuration: %w", err)
	}
	return nil
}

// excludeRebooting adds notRebooting to the selector of a node stage; other stages are unchanged.
func excludeRebooting(stage []byte) ([]byte, error) {
	var obj map[string]any
	if err := yaml.Unmarshal(stage, &obj); err != nil {
		return nil, err
	}
	spec, _ := obj["spec"].(map[string]any)
	ref, _ := spec["resourceRef"].(map[string]any)
	if ref["kind"] != "Node" {
		return stage, nil
	}
	selector, _ := spec["selector"].(map[string]any)
	if selector == nil {
		selector = map[string]any{}
		spec["selector"] = selector
	}
	exprs, _ := selector["matchExpressions"].([]any)
	selector["matchExpressions"] = append(exprs, notRebooting)
	return yaml.Marshal(obj)
}

func (c *Cluster) startKwok(e *startEnv) (*process, wait.ConditionWithContextFunc, error) {
	stagesDir := e.opts.KwokStagesDir
	if stagesDir == "" {
		var err error
		if stagesDir, err = KwokStagesDir(); err != nil {
			return nil, nil, err
		}
	}
	config := filepath.Join(c.Dir, "kwok.yaml")
	if err := writeKwokConfig(stagesDir, config); err != nil {
		return nil, nil, err
	}
	// kwok also reads ~/.kwok/kwok.yaml: give it a home of its own.
	home := filepath.Join(c.Dir, "kwok-home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating kwok's home: %w", err)
	}
	proc, err := c.run("kwok", e.bin("kwok"), []string{"HOME=" + home},
		"--kubeconfig="+e.kubeconfigs[userKwok],
		"--config="+config,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+KwokNodeAnnotation+"=fake",
		// Without leases kwok refreshes a node's Ready condition every 10–20 min only, and the
		// node lifecycle controller would mark it Unknown after 50 s.
		"--node-lease-duration-seconds=40",
		"--cidr="+podCIDR,
		"--server-address="+hostPort(e.ports.kwok),
	)
	return proc, httpHealthy("http://" + hostPort(e.ports.kwok) + "/healthz"), err
}
