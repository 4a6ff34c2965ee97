//go:build e2e

package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers"
)

// The plan `kubectl bottlerocket plan` shows for a paused policy is what the controller then
// does once it is resumed: the same nodes, in the same waves, disrupted in the same order.
func TestPlanAgreesWithTheRollout(t *testing.T) {
	c := newCluster(t, 5, host)
	p := policy("fleet", v1alpha1.UpdatePolicySpec{
		MaxUnavailable: ios(intstr.FromInt32(1)), Paused: true,
		Waves: []v1alpha1.Wave{{Name: "canary", Nodes: ios(intstr.FromInt32(2)), SoakTime: dur(time.Second)}},
	})
	c.apply(p)
	c.waitFor("every node waits on the pause", time.Minute, func(w world) bool {
		for _, b := range w.brns {
			if b.Status.Reason != v1alpha1.ReasonPolicyPaused {
				return false
			}
		}
		return len(w.brns) == 5
	})
	ctx := context.Background()
	w, err := c.look(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nodes := make([]corev1.Node, 0, len(w.nodes))
	for _, n := range w.nodes {
		nodes = append(nodes, *n)
	}
	f, ok := controllers.ForecastRollout(time.Now(), nodes, w.brns, w.policies, "fleet", "") // the controller runs on no node here
	if !ok {
		t.Fatal("no forecast for fleet")
	}
	var planned []string
	for _, n := range f.Nodes {
		planned = append(planned, n.Wave+"/"+n.Name)
	}

	// Resumed: the controller now moves the nodes.
	if err := c.Client.Patch(ctx, &v1alpha1.UpdatePolicy{ObjectMeta: p.ObjectMeta}, client.RawPatch(client.Merge.Type(), []byte(`{"spec":{"paused":false}}`))); err != nil {
		t.Fatal(err)
	}
	c.waitUpdated("the rollout converges", 3*time.Minute)
	w, err = c.look(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := slices.Clone(w.brns)
	slices.SortFunc(done, func(a, b v1alpha1.BottlerocketNode) int {
		return a.Status.DrainStartTime.Compare(b.Status.DrainStartTime.Time)
	})
	var took []string
	for _, b := range done {
		took = append(took, b.Status.Wave+"/"+b.Name)
	}
	t.Logf("planned %v, the controller took %v", planned, took)
	if strings.Join(planned, " ") != strings.Join(took, " ") {
		t.Errorf("the plan\n  %v\ndisagrees with the rollout\n  %v", planned, took)
	}
}
