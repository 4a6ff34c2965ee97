package chart_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// TestHelmInstallThenUninstall installs the chart with `helm install` into a real API server,
// then removes it with hack/uninstall.sh --helm: the release's objects are created (the CRDs
// from crds/ first), and afterwards the release, its objects and the CRDs are gone. No
// controller runs here, so the policy the test creates carries no finalizer to wait on.
func TestHelmInstallThenUninstall(t *testing.T) {
	helm := helmBinary(t)
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("no kubectl on PATH: hack/uninstall.sh drives kubectl")
	}
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kubeconfig, err := env.AdminKubeconfig(t.TempDir(), "chart-test")
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = testenv.RepoRoot()
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "KUBECTL="+kubectl, "HELM="+helm, "TIMEOUT=30",
			"HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := env.Client
	controllerKey := client.ObjectKey{Namespace: defaultNS, Name: controller}

	run(helm, "install", release, chartDir, "--namespace", "default")
	var d appsv1.Deployment
	if err := c.Get(ctx, controllerKey, &d); err != nil {
		t.Fatalf("the controller's Deployment after helm install: %v", err)
	}
	if d.Labels["app.kubernetes.io/managed-by"] != "Helm" {
		t.Errorf("the Deployment's labels %v do not name Helm", d.Labels)
	}
	if !strings.Contains(run(helm, "list", "--namespace", "default", "-q"), release) {
		t.Fatal("helm list does not show the release")
	}
	policy := &v1alpha1.UpdatePolicy{ObjectMeta: metav1.ObjectMeta{Name: "fleet"}, Spec: v1alpha1.UpdatePolicySpec{Version: "latest"}}
	if err := c.Create(ctx, policy); err != nil {
		t.Fatalf("creating an UpdatePolicy with the chart's CRD: %v", err)
	}

	run("hack/uninstall.sh", "--helm", release, "--namespace", "default")
	if out := run(helm, "list", "--namespace", "default", "-q"); strings.Contains(out, release) {
		t.Errorf("the release is still listed: %s", out)
	}
	if err := c.Get(ctx, controllerKey, &d); !apierrors.IsNotFound(err) {
		t.Errorf("the controller's Deployment is still there: %v", err)
	}
	crd := &unstructured.Unstructured{}
	crd.SetAPIVersion("apiextensions.k8s.io/v1")
	crd.SetKind("CustomResourceDefinition")
	err = c.Get(ctx, client.ObjectKey{Name: "updatepolicies.updates.bottlerocket.aws"}, crd)
	if !apierrors.IsNotFound(err) && (err != nil || crd.GetDeletionTimestamp() == nil) {
		t.Errorf("the UpdatePolicy CRD is not being deleted: %v", err)
	}
}
