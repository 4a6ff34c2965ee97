package install_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestManifestsAreComplete guards the composition of config/default: every piece the
// operator needs is rendered.
func TestManifestsAreComplete(t *testing.T) {
	for _, want := range []struct{ kind, name string }{
		{"Namespace", namespace},
		{"CustomResourceDefinition", "bottlerocketnodes.updates.bottlerocket.aws"},
		{"CustomResourceDefinition", "updatepolicies.updates.bottlerocket.aws"},
		{"ServiceAccount", controllerSA},
		{"ServiceAccount", agentSA},
		{"ClusterRole", "bottlerocket-update-operator-controller-role"},
		{"ClusterRole", "bottlerocket-update-operator-agent-role"},
		{"ClusterRoleBinding", controllerSA},
		{"ClusterRoleBinding", agentSA},
		{"Role", "bottlerocket-update-leader-election"},
		{"RoleBinding", "bottlerocket-update-leader-election"},
		{"PriorityClass", "bottlerocket-update-operator-critical"},
		{"Deployment", controllerSA},
		{"PodDisruptionBudget", controllerSA},
		{"Service", "bottlerocket-update-controller-metrics"},
		{"DaemonSet", agentSA},
		{"Service", "bottlerocket-update-agent-metrics"},
		{"ValidatingAdmissionPolicy", policyName},
		{"ValidatingAdmissionPolicyBinding", policyName},
		{"NetworkPolicy", "bottlerocket-update-operator"},
		{"ClusterRole", "bottlerocket-update-operator-view"},
		{"ClusterRole", "bottlerocket-update-operator-edit"},
	} {
		find(t, want.kind, want.name)
	}
	// `make deploy` and `make build-installer` substitute the image by this exact line.
	if got := bytes.Count(rendered, []byte("image: bottlerocket-update-operator:latest\n")); got != 2 {
		t.Errorf("want the image line `image: bottlerocket-update-operator:latest` twice (controller, agent), found it %d times", got)
	}
}

// TestManifestsApplyDryRun applies every rendered object with server-side apply in dry-run
// mode, in kustomize's order. The Namespace and the CRDs are applied for real first, as the
// objects after them need them to exist.
func TestManifestsApplyDryRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, o := range manifests {
		if o.GetKind() == "Namespace" || o.GetKind() == "CustomResourceDefinition" {
			if err := apply(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, o := range manifests {
		t.Run(o.GetKind()+"/"+o.GetName(), func(t *testing.T) {
			if err := apply(ctx, o, client.DryRunAll); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestPodSecurity creates (dry-run) a pod from each component's pod template in namespaces that
// enforce each Pod Security level: the controller meets "restricted"; the agent needs
// "privileged" (hostPath socket, root, super_t), which is why the operator's namespace enforces
// that level.
func TestPodSecurity(t *testing.T) {
	installed(t) // the PriorityClass must exist
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, level := range []string{"restricted", "baseline"} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:   "pod-security-" + level,
			Labels: map[string]string{"pod-security.kubernetes.io/enforce": level},
		}}
		// Not deleted afterwards: nothing finalizes a namespace here. A rerun reuses it.
		if err := env.Client.Create(ctx, ns); client.IgnoreAlreadyExists(err) != nil {
			t.Fatalf("creating namespace %s: %v", ns.Name, err)
		}
	}
	for _, tc := range []struct {
		kind, name, namespace string
		admitted              bool
	}{
		{"Deployment", controllerSA, "pod-security-restricted", true},
		{"DaemonSet", agentSA, "pod-security-baseline", false},
		{"DaemonSet", agentSA, namespace, true},
	} {
		t.Run(tc.kind+" in "+tc.namespace, func(t *testing.T) {
			template := podTemplate(t, tc.kind, tc.name)
			pod := &corev1.Pod{ObjectMeta: template.ObjectMeta, Spec: template.Spec}
			pod.Name, pod.Namespace = "pod-security-check", tc.namespace
			err := env.Client.Create(ctx, pod, client.DryRunAll)
			switch {
			case tc.admitted && err != nil:
				t.Errorf("want the pod admitted, got: %v", err)
			case !tc.admitted && !apierrors.IsForbidden(err):
				t.Errorf("want the pod refused by Pod Security, got: %v", err)
			case err != nil:
				t.Logf("refused as it must be: %v", err)
			}
		})
	}
}

// podTemplate decodes the pod template of the manifest's workload of kind and name.
func podTemplate(t *testing.T, kind, name string) corev1.PodTemplateSpec {
	t.Helper()
	var workload struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(find(t, kind, name).Object, &workload); err != nil {
		t.Fatalf("decoding the pod template of %s %s: %v", kind, name, err)
	}
	return workload.Spec.Template
}

// TestWorkloadsKnowTheirNode checks that the controller and the agent are given the name of
// the node they run on (NODE_NAME from spec.nodeName, the downward API): the agent drives
// that node's host, and the controller updates its own node last in its wave.
func TestWorkloadsKnowTheirNode(t *testing.T) {
	for _, tc := range []struct{ kind, name string }{
		{"Deployment", controllerSA},
		{"DaemonSet", agentSA},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			for _, c := range podTemplate(t, tc.kind, tc.name).Spec.Containers {
				if !setsNodeName(c.Env) {
					t.Errorf("container %s of %s %s does not set NODE_NAME from spec.nodeName", c.Name, tc.kind, tc.name)
				}
			}
		})
	}
}

// setsNodeName reports whether env sets NODE_NAME from the pod's spec.nodeName.
func setsNodeName(env []corev1.EnvVar) bool {
	for _, e := range env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			return true
		}
	}
	return false
}
