package install_test

import (
	"fmt"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
)

// TestRecommendedLabels checks that every rendered object carries the recommended
// app.kubernetes.io labels, so that `kubectl get -l app.kubernetes.io/part-of=...` and
// inventory tools find the whole install.
func TestRecommendedLabels(t *testing.T) {
	want := map[string]string{
		"app.kubernetes.io/name":       "bottlerocket-update-operator",
		"app.kubernetes.io/instance":   "bottlerocket-update-operator",
		"app.kubernetes.io/part-of":    "bottlerocket-update-operator",
		"app.kubernetes.io/managed-by": "kustomize",
	}
	for _, o := range manifests {
		for k, v := range want {
			if got := o.GetLabels()[k]; got != v {
				t.Errorf("%s %s: label %s is %q, want %q", o.GetKind(), o.GetName(), k, got, v)
			}
		}
	}
	for _, w := range []struct{ kind, name, component string }{
		{"Deployment", controllerSA, "controller"},
		{"DaemonSet", agentSA, "agent"},
	} {
		if got := find(t, w.kind, w.name).GetLabels()["app.kubernetes.io/component"]; got != w.component {
			t.Errorf("%s %s: component label %q, want %q", w.kind, w.name, got, w.component)
		}
	}
}

// TestCategoryListsBothKinds asks the API server's discovery, as `kubectl get bottlerocket`
// does, which resources the category "bottlerocket" names: both of the operator's kinds.
func TestCategoryListsBothKinds(t *testing.T) {
	installed(t)
	dc, err := discovery.NewDiscoveryClientForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "discovering the category bottlerocket", func() error {
		_, lists, err := dc.ServerGroupsAndResources()
		if err != nil {
			return err
		}
		var got []string
		for _, l := range lists {
			for _, r := range l.APIResources {
				if slices.Contains(r.Categories, "bottlerocket") {
					got = append(got, r.Name)
				}
			}
		}
		slices.Sort(got)
		if want := []string{"bottlerocketnodes", "updatepolicies"}; !slices.Equal(got, want) {
			return fmt.Errorf("the category bottlerocket names %v, want %v", got, want)
		}
		return nil
	})
}

// TestAggregatedRoles checks the ClusterRoles that Kubernetes' view and edit roles aggregate:
// "view" may read both kinds and nothing more; "edit" may write UpdatePolicies and annotate
// BottlerocketNodes but not their status, which belongs to the operator.
func TestAggregatedRoles(t *testing.T) {
	for _, tc := range []struct {
		name, label string
		allowed     map[string][]string // resource -> verbs
	}{
		{"bottlerocket-update-operator-view", "rbac.authorization.k8s.io/aggregate-to-view", map[string][]string{
			"updatepolicies": {"get", "list", "watch"}, "updatepolicies/status": {"get", "list", "watch"},
			"bottlerocketnodes": {"get", "list", "watch"}, "bottlerocketnodes/status": {"get", "list", "watch"},
		}},
		{"bottlerocket-update-operator-edit", "rbac.authorization.k8s.io/aggregate-to-edit", map[string][]string{
			"updatepolicies":    {"create", "update", "patch", "delete", "deletecollection"},
			"bottlerocketnodes": {"update", "patch"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var role rbacv1.ClusterRole
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(find(t, "ClusterRole", tc.name).Object, &role); err != nil {
				t.Fatal(err)
			}
			if role.Labels[tc.label] != "true" {
				t.Errorf("label %s=true missing: Kubernetes' role would not aggregate it", tc.label)
			}
			got := map[string][]string{}
			for _, r := range role.Rules {
				if !slices.Equal(r.APIGroups, []string{"updates.bottlerocket.aws"}) {
					t.Errorf("rule %v reaches beyond the operator's API group", r)
				}
				for _, res := range r.Resources {
					got[res] = append(got[res], r.Verbs...)
				}
			}
			for res, verbs := range got {
				slices.Sort(verbs)
				want := slices.Clone(tc.allowed[res])
				slices.Sort(want)
				if !slices.Equal(verbs, want) {
					t.Errorf("%s: verbs %v, want %v", res, verbs, want)
				}
			}
			for res := range tc.allowed {
				if _, ok := got[res]; !ok {
					t.Errorf("%s: not granted", res)
				}
			}
		})
	}
}
