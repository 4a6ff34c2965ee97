//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/internal/kubeutil"
)

// A node stops being governed while it reboots: a person excludes it, the policy's selector
// is edited so that it no longer selects it, or a second policy selects it too. It stays charged to the budget until it is back
// (the watcher counts it from the world, whatever the policies say), its reboot finishes, it
// is released (Idle, schedulable, nothing of ours left on it) and the rest of the fleet
// updates one at a time.
func TestUngovernedMidReboot(t *testing.T) {
	for name, ungovern := range map[string]func(t *testing.T, c *cluster, node string){
		"excluded": func(t *testing.T, c *cluster, node string) {
			patch := []byte(`{"metadata":{"annotations":{"` + v1alpha1.AnnotationExclude + `":"true"}}}`)
			if err := c.Client.Patch(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}},
				client.RawPatch(client.Merge.Type(), patch)); err != nil {
				t.Fatal(err)
			}
		},
		"selector edited": func(t *testing.T, c *cluster, node string) {
			// Retried on conflicts: the controller writes the policy's status meanwhile.
			err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				var p v1alpha1.UpdatePolicy
				if err := c.Client.Get(context.Background(), client.ObjectKey{Name: "fleet"}, &p); err != nil {
					return err
				}
				p.Spec.NodeSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "kubernetes.io/hostname", Operator: metav1.LabelSelectorOpNotIn, Values: []string{node}}}}
				return c.Client.Update(context.Background(), &p)
			})
			if err != nil {
				t.Fatal(err)
			}
		},
		"second policy": func(t *testing.T, c *cluster, node string) {
			// A second policy selects the node too: two policies claim it, so neither governs it.
			c.apply(policy("other", v1alpha1.UpdatePolicySpec{Paused: true,
				NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/hostname": node}}}))
		},
	} {
		t.Run(name, func(t *testing.T) {
			hc := host
			hc.RebootDuration = 4 * time.Second
			c := newCluster(t, 4, hc)
			c.apply(policy("fleet", v1alpha1.UpdatePolicySpec{MaxUnavailable: ios(intstr.FromInt32(1))}))
			first := c.waitRebooting()
			ungovern(t, c, first)
			c.waitFor("the rest updates; the node is released once back", 3*time.Minute, func(w world) bool {
				for _, b := range w.brns {
					n := w.nodes[b.Name]
					if b.Name == first {
						_, ours := n.Annotations[v1alpha1.AnnotationCordonedBy]
						if b.Status.Phase != v1alpha1.PhaseIdle || n.Spec.Unschedulable || ours || !kubeutil.NodeReady(n) {
							return false
						}
					} else if b.Status.Phase != v1alpha1.PhaseUpdated {
						return false
					}
				}
				return true
			})
			if peak := c.w.peakUnavailable(); peak > 1 {
				t.Errorf("peak unavailable %d, budget 1", peak)
			}
		})
	}
}
