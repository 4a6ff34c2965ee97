// Package install_test proves the install manifests (config/default, rendered as
// dist/install.yaml) against a real API server: every object is accepted, and the permissions
// they grant are exactly what each component needs, with the admission policy confining each
// agent to its own node's BottlerocketNode status.
package install_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/bottlerocket-ops/update-operator/test/framework/deploy"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

const (
	namespace      = deploy.Namespace
	agentSA        = deploy.AgentSA
	controllerSA   = deploy.ControllerSA
	policyName     = "bottlerocket-update-agent-own-node"
	testFieldOwner = "install-test"
)

var (
	env *testenv.Env
	// manifests is `kubectl kustomize config/default`, in the order kustomize emits it.
	manifests []*unstructured.Unstructured
	// rendered is the same as text.
	rendered []byte
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	log.SetLogger(logr.Discard())
	var err error
	rendered, err = render()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if manifests, err = deploy.Decode(rendered); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	return m.Run()
}

// render runs `kubectl kustomize config/default` ($KUBECTL if set); without kubectl it falls
// back to the committed dist/install.yaml (which `make verify` keeps current).
func render() ([]byte, error) {
	root := testenv.RepoRoot()
	kubectl := os.Getenv("KUBECTL")
	if kubectl == "" {
		kubectl = "kubectl"
	}
	if _, err := exec.LookPath(kubectl); err != nil {
		out, err := os.ReadFile(filepath.Join(root, "dist", "install.yaml"))
		if err != nil {
			return nil, fmt.Errorf("no %s to render config/default, and no dist/install.yaml: %w", kubectl, err)
		}
		return out, nil
	}
	cmd := exec.Command(kubectl, "kustomize", filepath.Join(root, "config", "default"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("rendering config/default with %s kustomize: %w: %s", kubectl, err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// find returns the rendered object of the given kind and name.
func find(t *testing.T, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range manifests {
		if o.GetKind() == kind && o.GetName() == name {
			return o.DeepCopy()
		}
	}
	t.Fatalf("the rendered manifests hold no %s %q", kind, name)
	return nil
}

// apply applies one rendered object with server-side apply.
func apply(ctx context.Context, o *unstructured.Unstructured, opts ...client.ApplyOption) error {
	opts = append([]client.ApplyOption{client.FieldOwner(testFieldOwner), client.ForceOwnership}, opts...)
	if err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), opts...); err != nil {
		return fmt.Errorf("applying %s %s: %w", o.GetKind(), client.ObjectKeyFromObject(o), err)
	}
	return nil
}

var (
	installOnce sync.Once
	installErr  error
)

// installed applies every rendered object for real, once per test binary. Nothing runs the
// Deployment or the DaemonSet (envtest has no controller manager or kubelet); the objects
// that matter here are the namespace, the identities, RBAC and the admission policy.
func installed(t *testing.T) {
	t.Helper()
	installOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, o := range manifests {
			if installErr = apply(ctx, o); installErr != nil {
				return
			}
		}
	})
	if installErr != nil {
		t.Fatalf("installing the rendered manifests: %v", installErr)
	}
}

// createFixture creates obj as the admin and deletes it when the test ends, so that the tests
// can run again against the same API server (go test -count).
func createFixture(ctx context.Context, t *testing.T, obj client.Object) {
	t.Helper()
	if err := env.Client.Create(ctx, obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
	t.Cleanup(func() { deleteFixture(t, obj) })
}

// deleteFixture deletes obj at once (no kubelet confirms a pod's graceful deletion here).
func deleteFixture(t *testing.T, obj client.Object) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := env.Client.Delete(ctx, obj, client.GracePeriodSeconds(0)); client.IgnoreNotFound(err) != nil {
		t.Errorf("deleting %T %s: %v", obj, obj.GetName(), err)
	}
}

// eventually retries fn until it returns nil, for at most 30 seconds: RBAC and admission
// policies take effect through the API server's informers, a moment after they are written.
func eventually(t *testing.T, what string, fn func() error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		last = fn()
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("%s: still failing after 30s: %v", what, last)
	}
}
