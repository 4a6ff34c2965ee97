package stack

import (
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// lightAdmin is the user of a light stack's admin kubeconfig.
const lightAdmin = "demo-admin"

// startLight starts etcd + kube-apiserver with the CRDs installed, and writes an admin
// kubeconfig to Dir (or a temporary directory).
func (s *Stack) startLight() error {
	env, err := testenv.Start()
	if err != nil {
		return fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	s.env, s.Config, s.Scheme, s.Client = env, env.Config, env.Scheme, env.Client
	user, err := env.Environment.AddUser(envtest.User{Name: lightAdmin, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("creating the admin user: %w", err)
	}
	raw, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("writing the admin kubeconfig: %w", err)
	}
	dir := s.opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "stack"); err != nil {
			return fmt.Errorf("creating a state directory: %w", err)
		}
		s.tempDir = dir
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating the state directory: %w", err)
	}
	if s.Kubeconfig, err = filepath.Abs(filepath.Join(dir, "kubeconfig")); err != nil {
		return fmt.Errorf("resolving the kubeconfig's path: %w", err)
	}
	if err := os.WriteFile(s.Kubeconfig, raw, 0o600); err != nil {
		return fmt.Errorf("writing the admin kubeconfig: %w", err)
	}
	return nil
}
