// Package testenv starts a real Kubernetes control plane (etcd + kube-apiserver, via envtest)
// with this project's CRDs installed, for the tests of every package.
//
// The binaries come from KUBEBUILDER_ASSETS; when it is unset, hack/controlplane.sh builds them
// once from the Go module proxy (cached outside the repository) and prints their directory.
package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	updatesv1alpha1 "github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/audit"
)

// Env is a running control plane with the project's CRDs installed.
type Env struct {
	Environment *envtest.Environment
	// Config is an admin rest config for the API server.
	Config *rest.Config
	// Client is an uncached admin client that knows the project's types.
	Client client.Client
	// Scheme knows the built-in and the project's types.
	Scheme *k8sruntime.Scheme
	// AuditLog is the path of the API server's audit log, when WithAuditLog was given.
	AuditLog string
}

// Option configures Start.
type Option func(*settings)

type settings struct {
	auditDir    string
	auditPolicy string
}

// WithAuditLog makes the API server write an audit log (metadata level, every request that
// changes something) to dir/audit.log, for tests that count or attribute writes.
func WithAuditLog(dir string) Option {
	return func(s *settings) { s.auditDir = dir }
}

// WithAuditPolicy makes WithAuditLog's log record what policy says (audit.Everything: every
// request, reads too).
func WithAuditPolicy(policy string) Option {
	return func(s *settings) { s.auditPolicy = policy }
}

// RepoRoot is the root of this repository.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// Scheme returns a scheme with the built-in and the project's types.
func Scheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = updatesv1alpha1.AddToScheme(s)
	return s
}

// Codecs for decoding manifests with the project's scheme.
func Codecs() serializer.CodecFactory { return serializer.NewCodecFactory(Scheme()) }

// assets returns the directory of the control-plane binaries, building them if need be.
func assets() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	cmd := exec.Command(filepath.Join(RepoRoot(), "hack", "controlplane.sh"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the control-plane binaries with hack/controlplane.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	return lines[len(lines)-1], nil
}

// Start starts etcd and kube-apiserver and installs the CRDs from config/crd/bases.
func Start(opts ...Option) (*Env, error) {
	var s settings
	for _, o := range opts {
		o(&s)
	}
	dir, err := assets()
	if err != nil {
		return nil, err
	}
	scheme := Scheme()
	env := &envtest.Environment{
		BinaryAssetsDirectory: dir,
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
	}
	e := &Env{Environment: env, Scheme: scheme}
	if s.auditDir != "" {
		policy := filepath.Join(s.auditDir, "audit-policy.yaml")
		if s.auditPolicy == "" {
			s.auditPolicy = audit.Policy
		}
		if err := os.WriteFile(policy, []byte(s.auditPolicy), 0o600); err != nil {
			return nil, fmt.Errorf("writing the audit policy: %w", err)
		}
		e.AuditLog = filepath.Join(s.auditDir, "audit.log")
		args := env.ControlPlane.GetAPIServer().Configure()
		args.Set("audit-policy-file", policy)
		args.Set("audit-log-path", e.AuditLog)
		args.Set("audit-log-mode", "blocking")
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting the control plane from %s: %w", dir, err)
	}
	e.Config = cfg
	e.Client, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("creating the admin client: %w", err)
	}
	return e, nil
}

// AdminKubeconfig writes, into dir, a kubeconfig for a new user name in system:masters (for a
// process or a tool started by a test) and returns its path.
func (e *Env) AdminKubeconfig(dir, name string) (string, error) {
	user, err := e.Environment.AddUser(envtest.User{Name: name, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", fmt.Errorf("adding user %s: %w", name, err)
	}
	raw, err := user.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("kubeconfig of %s: %w", name, err)
	}
	path := filepath.Join(dir, name+".kubeconfig")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return "", fmt.Errorf("writing the kubeconfig of %s: %w", name, err)
	}
	return path, nil
}

// Stop stops the control plane.
func (e *Env) Stop() error { return e.Environment.Stop() }

// CompletedRequests returns the audit log's completed requests (see WithAuditLog) that match.
func (e *Env) CompletedRequests(match func(audit.Event) bool) (int, error) {
	return audit.Count(e.AuditLog, match)
}

// Connect installs the project's CRDs (config/crd/bases) into the cluster of cfg, for
// clusters started otherwise than by Start, and returns an uncached client that knows the
// project's types.
func Connect(cfg *rest.Config) (client.Client, error) {
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{
		Paths: []string{filepath.Join(RepoRoot(), "config", "crd", "bases")}, ErrorIfPathMissing: true,
	}); err != nil {
		return nil, fmt.Errorf("installing the CRDs: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		return nil, fmt.Errorf("creating a client: %w", err)
	}
	return c, nil
}

// TB is what PinnedTool needs of a test (*testing.T, or Ginkgo's GinkgoT()).
type TB interface {
	Helper()
	Fatal(args ...any)
	Skipf(format string, args ...any)
}

// PinnedTool returns a tool the Makefile builds from the Go module proxy into the tools cache:
// $envVar if set, else tools/<name>-<version> in the cache, the version being what
// hack/<name>/go.mod requires of module. The test is skipped, saying so, when neither exists.
func PinnedTool(t TB, envVar, name, module string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		return p
	}
	gomod, err := os.ReadFile(filepath.Join(RepoRoot(), "hack", name, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^require ` + regexp.QuoteMeta(module) + ` (v\S+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("hack/" + name + "/go.mod does not require " + module)
	}
	root := os.Getenv("BRUPOP_CACHE")
	if root == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		root = filepath.Join(cache, "bottlerocket-update-operator")
	}
	p := filepath.Join(root, "tools", name+"-"+string(m[1]))
	if _, err := os.Stat(p); err != nil {
		t.Skipf("no %s at %s and %s is not set: run `make %s` (make test builds it first)", name, p, envVar, name)
	}
	return p
}
