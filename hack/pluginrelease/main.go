// Command pluginrelease builds the kubectl plugin's release: one archive per platform, each
// holding the static kubectl-bottlerocket binary with the version stamped in, and the krew
// manifest (bottlerocket.yaml) that lists them with their SHA-256 sums. Archives are
// reproducible: the same source, version and epoch give the same bytes.
//
//	go run ./hack/pluginrelease -version v0.3.0 [-platforms linux/amd64,...] [-out bin/plugin-release] [-epoch SECONDS]
//
// `kubectl krew install --manifest=bin/plugin-release/bottlerocket.yaml
// --archive=bin/plugin-release/kubectl-bottlerocket_linux_amd64.tar.gz` installs it from the
// files; once the archives are published at -base-url, the manifest alone does.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
	"time"
)

const (
	plugin    = "kubectl-bottlerocket"
	buildinfo = "github.com/bottlerocket-ops/update-operator/internal/buildinfo"
)

//go:embed bottlerocket.yaml.tmpl
var manifestTemplate string

// semver is the version form krew accepts: v, then major.minor.patch, an optional pre-release.
var semver = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)

type platform struct{ OS, Arch string }

func (p platform) archive() string { return fmt.Sprintf("%s_%s_%s.tar.gz", plugin, p.OS, p.Arch) }

func (p platform) binary() string {
	if p.OS == "windows" {
		return plugin + ".exe"
	}
	return plugin
}

// release is what the manifest template is given.
type release struct {
	Version   string
	Platforms []built
}

type built struct {
	platform
	URI, Sha256, Bin string
}

func main() {
	version := flag.String("version", "", "the release's version, such as v0.3.0 (krew needs a semantic version)")
	platforms := flag.String("platforms", "linux/amd64,linux/arm64,darwin/amd64,darwin/arm64,windows/amd64", "GOOS/GOARCH pairs to build, comma-separated")
	out := flag.String("out", "bin/plugin-release", "directory for the archives and the manifest")
	baseURL := flag.String("base-url", "https://github.com/bottlerocket-ops/update-operator/releases/download/{version}", "where the archives are published ({version} is replaced)")
	commit := flag.String("commit", "unknown", "the commit stamped into the binaries")
	epoch := flag.Int64("epoch", 0, "modification time of the archives' files, in seconds since 1970 (the commit's time makes them reproducible)")
	flag.Parse()
	if err := run(*version, *platforms, *out, *baseURL, *commit, time.Unix(*epoch, 0)); err != nil {
		fmt.Fprintln(os.Stderr, "pluginrelease:", err)
		os.Exit(1)
	}
}

func run(version, platforms, out, baseURL, commit string, mtime time.Time) error {
	if !semver.MatchString(version) {
		return fmt.Errorf("-version %q is not a semantic version such as v0.3.0 (krew refuses others)", version)
	}
	var ps []platform
	for _, s := range strings.Split(platforms, ",") {
		goos, arch, ok := strings.Cut(strings.TrimSpace(s), "/")
		if !ok || goos == "" || arch == "" {
			return fmt.Errorf("-platforms: %q is not GOOS/GOARCH", s)
		}
		ps = append(ps, platform{goos, arch})
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", out, err)
	}
	rel := release{Version: version}
	for _, p := range ps {
		sum, err := buildArchive(p, version, commit, out, mtime)
		if err != nil {
			return err
		}
		rel.Platforms = append(rel.Platforms, built{platform: p, Bin: p.binary(), Sha256: sum,
			URI: strings.ReplaceAll(baseURL, "{version}", version) + "/" + p.archive()})
		fmt.Printf("%s  %s\n", sum, filepath.Join(out, p.archive()))
	}
	var manifest bytes.Buffer
	if err := template.Must(template.New("manifest").Parse(manifestTemplate)).Execute(&manifest, rel); err != nil {
		return fmt.Errorf("writing the krew manifest: %w", err)
	}
	path := filepath.Join(out, "bottlerocket.yaml")
	if err := os.WriteFile(path, manifest.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	fmt.Println(path)
	return nil
}

// buildArchive builds the plugin for p and writes its archive into out; it returns the
// archive's SHA-256 sum.
func buildArchive(p platform, version, commit, out string, mtime time.Time) (string, error) {
	dir, err := os.MkdirTemp("", "pluginrelease")
	if err != nil {
		return "", fmt.Errorf("creating a build directory: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	bin := filepath.Join(dir, p.binary())
	build := exec.Command("go", "build", "-trimpath", "-o", bin,
		"-ldflags", fmt.Sprintf("-s -w -X %s.Version=%s -X %s.Commit=%s", buildinfo, version, buildinfo, commit),
		"./cmd/kubectl-bottlerocket")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("building the plugin for %s/%s: %w", p.OS, p.Arch, err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("reading the plugin built for %s/%s: %w", p.OS, p.Arch, err)
	}
	archive, err := tarGz(p.binary(), data, mtime)
	if err != nil {
		return "", fmt.Errorf("archiving the plugin for %s/%s: %w", p.OS, p.Arch, err)
	}
	path := filepath.Join(out, p.archive())
	if err := os.WriteFile(path, archive, 0o644); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	sum := sha256.Sum256(archive)
	return hex.EncodeToString(sum[:]), nil
}

// tarGz is a gzipped tar of one executable file, with nothing in it that depends on who built
// it or when (owner, times, gzip header).
func tarGz(name string, data []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	zw.ModTime = mtime
	tw := tar.NewWriter(zw)
	hdr := &tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := errors.Join(tw.Close(), zw.Close()); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
