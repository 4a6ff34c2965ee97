// Command image builds the operator's OCI image without a container engine: the static binary
// of each platform on an otherwise empty file system (no shell), run as 65532:65532, with
// version labels, written as one OCI image-layout tarball holding a multi-platform index.
// Every time stamp is the given epoch, so the same sources and toolchain give the same digest.
//
//	go run ./hack/image -version v1.2.3 -commit $(git rev-parse HEAD) -out bin/image/bottlerocket-update-operator.oci.tar
//
// (make image). Push it with `skopeo copy --all oci-archive:FILE docker://REGISTRY/NAME:TAG`, or
// load it with `podman load -i FILE`.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	binaryName = "bottlerocket-update-operator"
	buildinfo  = "github.com/bottlerocket-ops/update-operator/internal/buildinfo"
	// User is the image's user: distroless "nonroot". The agent's DaemonSet overrides it.
	User = "65532:65532"
)

type options struct {
	version, commit, out, source string
	platforms                    []string
	epoch                        time.Time
}

func main() {
	var o options
	platforms := flag.String("platforms", "linux/amd64,linux/arm64", "comma-separated os/arch list")
	epoch := flag.Int64("epoch", 0, "every time stamp of the image, in seconds since 1970 (make image: the commit's time)")
	flag.StringVar(&o.version, "version", "dev", "version stamped into the binary and the labels")
	flag.StringVar(&o.commit, "commit", "unknown", "commit stamped into the binary and the labels")
	flag.StringVar(&o.out, "out", "bin/image/"+binaryName+".oci.tar", "the OCI image-layout tarball to write")
	flag.StringVar(&o.source, "source", "https://github.com/bottlerocket-ops/update-operator", "org.opencontainers.image.source")
	flag.Parse()
	o.platforms = strings.Split(*platforms, ",")
	o.epoch = time.Unix(*epoch, 0).UTC()
	digest, err := build(o)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n%s\n", o.out, digest)
}

// build writes the image and returns the digest of its multi-platform index.
func build(o options) (v1.Hash, error) {
	work, err := os.MkdirTemp("", "brupop-image-")
	if err != nil {
		return v1.Hash{}, err
	}
	defer func() { _ = os.RemoveAll(work) }()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range o.platforms {
		osName, arch, ok := strings.Cut(p, "/")
		if !ok {
			return v1.Hash{}, fmt.Errorf("platform %q: want os/arch", p)
		}
		bin := filepath.Join(work, osName+"-"+arch, binaryName)
		if err := goBuild(o, osName, arch, bin); err != nil {
			return v1.Hash{}, err
		}
		img, err := image(o, osName, arch, bin)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("%s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: osName, Architecture: arch}},
		})
	}
	digest, err := idx.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	dir := filepath.Join(work, "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": o.version,
	})); err != nil {
		return v1.Hash{}, err
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return v1.Hash{}, err
	}
	return digest, tarDir(dir, o.out, o.epoch)
}

// goBuild builds the static binary for one platform, stamped with the version and commit.
func goBuild(o options, osName, arch, out string) error {
	ldflags := fmt.Sprintf("-s -w -X %s.Version=%s -X %s.Commit=%s", buildinfo, o.version, buildinfo, o.commit)
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+osName, "GOARCH="+arch)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build for %s/%s: %w", osName, arch, err)
	}
	return nil
}

// image returns the single-platform image of the binary at bin.
func image(o options, osName, arch, bin string) (v1.Image, error) {
	layerTar, err := rootfs(bin, o.epoch)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: o.epoch}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: created, CreatedBy: "hack/image: " + binaryName + " " + o.version, Comment: "static binary, no shell"},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = osName, arch, created
	cf.Config.Entrypoint = []string{"/" + binaryName}
	cf.Config.User = User
	cf.Config.WorkingDir = "/"
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":       binaryName,
		"org.opencontainers.image.description": "Bottlerocket update operator: -controller (cluster-wide) or -agent (per node)",
		"org.opencontainers.image.version":     o.version,
		"org.opencontainers.image.revision":    o.commit,
		"org.opencontainers.image.source":      o.source,
		"org.opencontainers.image.created":     o.epoch.Format(time.RFC3339),
	}
	return mutate.ConfigFile(img, cf)
}

// rootfs returns the layer: the binary, /etc/passwd and /etc/group naming root and nonroot,
// nonroot's home and a /tmp, every entry owned and stamped alike.
func rootfs(bin string, epoch time.Time) ([]byte, error) {
	binary, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	type entry struct {
		name     string
		mode     int64
		uid      int
		contents []byte
		dir      bool
	}
	entries := []entry{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, contents: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: "etc/passwd", mode: 0o644, contents: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, uid: 65532, dir: true},
		{name: "tmp/", mode: 0o1777, dir: true},
		{name: binaryName, mode: 0o755, contents: binary},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: epoch, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(e.contents))}
		if e.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.contents); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// tarDir writes the files under dir into a tarball at out, sorted, stamped with epoch.
func tarDir(dir, out string, epoch time.Time) error {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp) }()
	tw := tar.NewWriter(f)
	for _, path := range files {
		info, err := os.Stat(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: epoch, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: info.Size()}
		if info.IsDir() {
			h.Name, h.Mode, h.Typeflag, h.Size = h.Name+"/", 0o755, tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !info.IsDir() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if _, err := tw.Write(b); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
