package install_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/go-logr/logr/testr"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/bottlerocket-ops/update-operator/test/framework/localcluster"
)

// TestViewAndEditRolesAggregate installs the operator's aggregated ClusterRoles on a local
// cluster, whose controller manager aggregates them into Kubernetes' own view and edit roles,
// and asks the API server what a person bound to view or edit may do with the operator's kinds.
func TestViewAndEditRolesAggregate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole cluster")
	}
	if missing := localcluster.MissingBinaries(""); len(missing) > 0 {
		t.Skipf("%v not cached in %s: run hack/controlplane.sh --all", missing, localcluster.DefaultBinDir())
	}
	if _, err := localcluster.KwokStagesDir(); err != nil {
		t.Skip(err)
	}
	ctx := t.Context()
	c, err := localcluster.Start(ctx, localcluster.Options{Logger: testr.New(t)})
	if err != nil {
		t.Fatalf("starting the cluster: %v", err)
	}
	t.Cleanup(c.Stop)
	rbac := c.Clientset.RbacV1()
	for _, name := range []string{"bottlerocket-update-operator-view", "bottlerocket-update-operator-edit"} {
		var role rbacv1.ClusterRole
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(find(t, "ClusterRole", name).Object, &role); err != nil {
			t.Fatal(err)
		}
		if _, err := rbac.ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for user, role := range map[string]string{"viewer": "view", "editor": "edit"} {
		if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "aggregation-test-" + user},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		user, verb, resource, sub string
		allowed                   bool
	}{
		{"viewer", "list", "updatepolicies", "", true},
		{"viewer", "watch", "bottlerocketnodes", "", true},
		{"viewer", "create", "updatepolicies", "", false},
		{"viewer", "patch", "bottlerocketnodes", "", false},
		{"editor", "list", "bottlerocketnodes", "", true}, // edit aggregates view
		{"editor", "create", "updatepolicies", "", true},
		{"editor", "patch", "bottlerocketnodes", "", true},
		{"editor", "update", "bottlerocketnodes", "status", false},
		{"editor", "delete", "bottlerocketnodes", "", false},
	} { // each user's first case is allowed: once it is, aggregation has happened, and a refusal means something
		what := fmt.Sprintf("%s may %s %s", tc.user, tc.verb, tc.resource)
		if tc.sub != "" {
			what += "/" + tc.sub
		}
		if !tc.allowed {
			what = "not: " + what
		}
		// The controller manager aggregates a moment after the roles are written.
		eventually(t, what, func() error {
			sar, err := c.Clientset.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authorizationv1.SubjectAccessReview{
				Spec: authorizationv1.SubjectAccessReviewSpec{User: tc.user, ResourceAttributes: &authorizationv1.ResourceAttributes{
					Group: "updates.bottlerocket.aws", Verb: tc.verb, Resource: tc.resource, Subresource: tc.sub,
				}},
			}, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			if sar.Status.Allowed != tc.allowed {
				return fmt.Errorf("allowed=%v (%s)", sar.Status.Allowed, sar.Status.Reason)
			}
			return nil
		})
	}
}
