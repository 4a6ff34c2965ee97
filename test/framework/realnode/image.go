package realnode

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// PauseImage is the image of the nodes' pod sandboxes, built here (no registry is reached): it
// is containerd's sandbox_image, and a pod may run it too (with imagePullPolicy Never).
const PauseImage = "localhost/brupop-realnode-pause:v1"

// pausePackage is the pause program (see pause/main.go).
const pausePackage = "github.com/bottlerocket-ops/update-operator/test/framework/realnode/pause"

// buildTimeout bounds the pause program's build (a cold module cache still needs only the
// standard library).
const buildTimeout = 3 * time.Minute

// buildPauseImage builds the pause program statically and writes the image holding it, as a
// docker-archive tarball that `ctr images import` names PauseImage, to dir/pause.tar.
func buildPauseImage(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "pause")
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, pausePackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the pause program: %w\n%s", err, out)
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("reading the pause program: %w", err)
	}
	img, err := pauseImage(binary)
	if err != nil {
		return "", fmt.Errorf("assembling the pause image: %w", err)
	}
	ref, err := name.NewTag(PauseImage)
	if err != nil {
		return "", fmt.Errorf("parsing %s: %w", PauseImage, err)
	}
	out := filepath.Join(dir, "pause.tar")
	if err := tarball.WriteToFile(out, ref, img); err != nil {
		return "", fmt.Errorf("writing the pause image: %w", err)
	}
	return out, nil
}

// pauseImage is the image of one layer holding the binary as /pause, its entrypoint; it is built
// as hack/image builds the operator's, with go-containerregistry and no container engine.
func pauseImage(binary []byte) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "pause", Mode: 0o755, Size: int64(len(binary)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(binary); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON), layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	// The node runs this machine's architecture: the image must match it for containerd to unpack it.
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{"/pause"}
	return mutate.ConfigFile(img, cf)
}
