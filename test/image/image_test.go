// Package image_test builds the operator's image as `make image` does (hack/image, no container
// engine) and checks what a cluster would run: one image for linux/amd64 and linux/arm64, each
// the static binary of its architecture as a non-root entrypoint with no shell, labelled with
// its version, with the same digest from the same sources.
package image_test

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

const (
	version = "v0.0.0-imagetest"
	commit  = "0123456789abcdef"
	epoch   = "1700000000"
	binary  = "bottlerocket-update-operator"
)

// buildImage runs hack/image into out and returns the digest it reports.
func buildImage(t *testing.T, out string) string {
	t.Helper()
	cmd := exec.Command("go", "run", "./hack/image", "-version", version, "-commit", commit, "-epoch", epoch, "-out", out)
	cmd.Dir = testenv.RepoRoot()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("hack/image: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	return lines[len(lines)-1]
}

func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: building the image compiles the operator for two architectures")
	}
	dir := t.TempDir()
	tarA, tarB := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	digest := buildImage(t, tarA)

	t.Run("reproducible", func(t *testing.T) {
		if again := buildImage(t, tarB); again != digest {
			t.Errorf("digest %s, then %s from the same sources", digest, again)
		}
		a, _ := os.ReadFile(tarA)
		b, _ := os.ReadFile(tarB)
		if !bytes.Equal(a, b) {
			t.Error("the two tarballs differ")
		}
	})

	idx := openIndex(t, tarA, dir)
	if got, err := idx.Digest(); err != nil || got.String() != digest {
		t.Errorf("the tarball's index is %v (%v), hack/image reported %s", got, err, digest)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, d := range m.Manifests {
		platforms = append(platforms, d.Platform.OS+"/"+d.Platform.Architecture)
	}
	slices.Sort(platforms)
	if want := []string{"linux/amd64", "linux/arm64"}; !slices.Equal(platforms, want) {
		t.Fatalf("platforms %v, want %v", platforms, want)
	}
	for _, d := range m.Manifests {
		t.Run(d.Platform.Architecture, func(t *testing.T) {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			checkConfig(t, img, d.Platform.Architecture)
			files := extract(t, img)
			bin, ok := files[binary]
			if !ok {
				t.Fatalf("no /%s in the image; files: %v", binary, keys(files))
			}
			for name := range files {
				if base := filepath.Base(name); base == "sh" || base == "bash" || base == "busybox" {
					t.Errorf("a shell in the image: %s", name)
				}
			}
			checkELF(t, bin, d.Platform.Architecture)
			// time/tzdata embeds the zone files in a zip: a name followed by its TZif data.
			if !bytes.Contains(bin, []byte("Europe/BerlinTZif")) {
				t.Error("no time-zone data in the binary: maintenance windows with a timeZone would fail")
			}
			if d.Platform.Architecture == runtime.GOARCH && runtime.GOOS == "linux" {
				runVersion(t, bin)
			}
		})
	}
}

// openIndex unpacks the OCI layout tarball and returns the one multi-platform index it names.
func openIndex(t *testing.T, tarball, dir string) v1.ImageIndex {
	t.Helper()
	root := filepath.Join(dir, "layout")
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, filepath.FromSlash(h.Name))
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	top, err := layout.ImageIndexFromPath(root)
	if err != nil {
		t.Fatal(err)
	}
	tm, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.Manifests) != 1 || tm.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != version {
		t.Fatalf("want index.json to name one index, tagged %s; got %+v", version, tm.Manifests)
	}
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func checkConfig(t *testing.T, img v1.Image, arch string) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != arch {
		t.Errorf("config says %s/%s, want linux/%s", cf.OS, cf.Architecture, arch)
	}
	if want := []string{"/" + binary}; !slices.Equal(cf.Config.Entrypoint, want) {
		t.Errorf("entrypoint %v, want %v", cf.Config.Entrypoint, want)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532 (non-root, as the Dockerfile's)", cf.Config.User)
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.revision": commit,
		"org.opencontainers.image.title":    binary,
		"org.opencontainers.image.created":  "2023-11-14T22:13:20Z",
	} {
		if cf.Config.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, cf.Config.Labels[k], v)
		}
	}
	if got := cf.Created.UTC().Format("2006-01-02T15:04:05Z"); got != "2023-11-14T22:13:20Z" {
		t.Errorf("created %s, want the given epoch", got)
	}
}

// extract returns the regular files of the image's file system by path.
func extract(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if h.Name == binary && h.Mode&0o111 == 0 {
			t.Errorf("/%s is not executable: mode %o", binary, h.Mode)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimPrefix(h.Name, "/")] = b
	}
}

func checkELF(t *testing.T, bin []byte, arch string) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("the binary is not ELF: %v", err)
	}
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if f.Machine != want {
		t.Errorf("binary for %v, want %v", f.Machine, want)
	}
	if f.Section(".interp") != nil {
		t.Error("the binary asks for a dynamic loader; the image has none (build with CGO_ENABLED=0)")
	}
}

// runVersion runs the image's binary with -version: it prints the stamped version and commit.
func runVersion(t *testing.T, bin []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), binary)
	if err := os.WriteFile(path, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(path, "-version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -version: %v\n%s", binary, err, out)
	}
	if !strings.Contains(string(out), version) || !strings.Contains(string(out), commit) {
		t.Errorf("-version printed %q, want %s and %s", out, version, commit)
	}
}

func keys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
