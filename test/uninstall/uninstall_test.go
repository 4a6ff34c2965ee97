// Package uninstall_test runs hack/uninstall.sh with kubectl against a real API server: it
// deletes the UpdatePolicies, deletes nothing else while a node is still held, and removes the
// install once the controller has released every node. The controller's release (its
// finalizer, the nodes' spec.policy) is played by the test: it is the controller's own tests'
// subject; here the script's waiting and ordering is.
package uninstall_test

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
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

const finalizer = "updates.bottlerocket.aws/release-nodes" // the controller's, on every policy

func TestUninstall(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("no kubectl on PATH: hack/uninstall.sh drives kubectl")
	}
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kubeconfig, err := env.AdminKubeconfig(t.TempDir(), "uninstall-test")
	if err != nil {
		t.Fatal(err)
	}
	root := testenv.RepoRoot()
	run := func(timeout string, args ...string) (string, error) {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "KUBECTL="+kubectl, "TIMEOUT="+timeout)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	if out, err := run("0", kubectl, "apply", "--server-side", "-f", "dist/install.yaml"); err != nil {
		t.Fatalf("installing dist/install.yaml: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := env.Client
	// A policy the controller holds (its finalizer) and a node it governs, mid-drain.
	policy := &v1alpha1.UpdatePolicy{ObjectMeta: metav1.ObjectMeta{Name: "fleet", Finalizers: []string{finalizer}},
		Spec: v1alpha1.UpdatePolicySpec{Version: "latest"}}
	if err := c.Create(ctx, policy); err != nil {
		t.Fatal(err)
	}
	brn := &v1alpha1.BottlerocketNode{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Spec: v1alpha1.BottlerocketNodeSpec{Policy: "fleet"}}
	if err := c.Create(ctx, brn); err != nil {
		t.Fatal(err)
	}
	brn.Status.Phase = v1alpha1.PhaseDraining
	if err := c.Status().Update(ctx, brn); err != nil {
		t.Fatal(err)
	}

	// The node is never released: the script gives up at its timeout and deletes nothing else.
	out, err := run("2", "hack/uninstall.sh")
	if err == nil {
		t.Fatalf("the script succeeded with a node still held:\n%s", out)
	}
	for _, want := range []string{"node-a (policy fleet, Draining)", "nothing else was deleted"} {
		if !strings.Contains(out, want) {
			t.Errorf("its output does not say %q:\n%s", want, out)
		}
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(policy), policy); err != nil || policy.DeletionTimestamp == nil {
		t.Errorf("want the policy deleted and waiting on its finalizer: %v, %v", err, policy.DeletionTimestamp)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "bottlerocket-update-operator", Name: "bottlerocket-update-controller"}, &appsv1.Deployment{}); err != nil {
		t.Errorf("the controller's Deployment must stay while a node is held (it releases them): %v", err)
	}

	// The controller releases the node, then lets the policy go.
	brn.Spec.Policy = ""
	if err := c.Update(ctx, brn); err != nil {
		t.Fatal(err)
	}
	controllerutil.RemoveFinalizer(policy, finalizer)
	if err := c.Update(ctx, policy); err != nil {
		t.Fatal(err)
	}
	if out, err := run("60", "hack/uninstall.sh"); err != nil {
		t.Fatalf("the script failed with every node released: %v\n%s", err, out)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "bottlerocket-update-operator", Name: "bottlerocket-update-controller"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
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
