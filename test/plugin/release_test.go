// Package plugin_test builds the kubectl plugin's release as `make plugin-release` does
// (hack/pluginrelease) and installs it the way a user would: with the real krew (pinned in
// hack/krew), from the release's manifest and archive, then runs it through the real kubectl.
package plugin_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

const (
	version = "v0.0.0-releasetest.1"
	commit  = "0123456789abcdef"
	epoch   = "1700000000"
)

// manifest is the part of a krew plugin manifest the test reads.
type manifest struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version   string `json:"version"`
		Platforms []struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			URI    string `json:"uri"`
			Sha256 string `json:"sha256"`
			Bin    string `json:"bin"`
		} `json:"platforms"`
	} `json:"spec"`
}

// release runs hack/pluginrelease for this machine's platform into out.
func release(t *testing.T, out string) {
	t.Helper()
	cmd := exec.Command("go", "run", "./hack/pluginrelease", "-version", version, "-commit", commit, "-epoch", epoch,
		"-platforms", runtime.GOOS+"/"+runtime.GOARCH, "-out", out)
	cmd.Dir = testenv.RepoRoot()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("hack/pluginrelease: %v\n%s", err, stderr.String())
	}
}

func sum(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func TestReleaseInstallsWithKrew(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the release compiles the plugin")
	}
	krew := testenv.PinnedTool(t, "KREW", "krew", "sigs.k8s.io/krew")
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not on PATH")
	}
	out := t.TempDir()
	release(t, out)
	archive := filepath.Join(out, "kubectl-bottlerocket_"+runtime.GOOS+"_"+runtime.GOARCH+".tar.gz")

	t.Run("manifest", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join(out, "bottlerocket.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var m manifest
		if err := yaml.Unmarshal(data, &m); err != nil { // krew's own checks come at install
			t.Fatal(err)
		}
		if m.Kind != "Plugin" || m.Metadata.Name != "bottlerocket" || m.Spec.Version != version || len(m.Spec.Platforms) != 1 {
			t.Fatalf("manifest: kind %q name %q version %q, %d platforms", m.Kind, m.Metadata.Name, m.Spec.Version, len(m.Spec.Platforms))
		}
		p := m.Spec.Platforms[0]
		if p.Selector.MatchLabels["os"] != runtime.GOOS || p.Selector.MatchLabels["arch"] != runtime.GOARCH {
			t.Errorf("platform selector %v, want os %s arch %s", p.Selector.MatchLabels, runtime.GOOS, runtime.GOARCH)
		}
		if got := sum(t, archive); p.Sha256 != got {
			t.Errorf("manifest sha256 %s, the archive's %s", p.Sha256, got)
		}
		if want := "/releases/download/" + version + "/" + filepath.Base(archive); !strings.HasSuffix(p.URI, want) {
			t.Errorf("uri %s does not end in %s", p.URI, want)
		}
	})

	t.Run("reproducible", func(t *testing.T) {
		again := t.TempDir()
		release(t, again)
		if a, b := sum(t, archive), sum(t, filepath.Join(again, filepath.Base(archive))); a != b {
			t.Errorf("the archive's sha256 is %s, then %s from the same sources", a, b)
		}
	})

	t.Run("krew install, then kubectl bottlerocket", func(t *testing.T) {
		root := t.TempDir()
		env := append(os.Environ(), "KREW_ROOT="+root, "KREW_NO_UPGRADE_CHECK=1", "HOME="+t.TempDir(),
			"PATH="+filepath.Join(root, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
		install := exec.Command(krew, "install", "--manifest="+filepath.Join(out, "bottlerocket.yaml"), "--archive="+archive)
		install.Env = env
		if o, err := install.CombinedOutput(); err != nil {
			t.Fatalf("krew install: %v\n%s", err, o)
		}
		run := exec.Command(kubectl, "bottlerocket", "--version")
		run.Env = env
		o, err := run.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl bottlerocket --version: %v\n%s", err, o)
		}
		if want := "kubectl bottlerocket " + version + " (commit " + commit + ")"; strings.TrimSpace(string(o)) != want {
			t.Errorf("kubectl bottlerocket --version printed %q, want %q", o, want)
		}
	})
}
