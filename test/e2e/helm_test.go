//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/deploy"
	"github.com/bottlerocket-ops/update-operator/test/framework/stack"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// The operator installed with the real `helm install` of its chart, as a platform team would,
// runs the demo's rollout: "latest", a canary wave that soaks, then the rest, 20% at a time
// with a pause between nodes. The agents run on the tokens of the pods the chart's DaemonSet
// made, confined by the chart's admission policy (the audit check at the end).
func TestHelmInstalledRollout(t *testing.T) {
	helm := testenv.PinnedTool(t, "HELM", "helm", "helm.sh/helm/v3")
	c := newCluster(t, 5, host, func(o *stack.Options) { o.Helm = helm })
	var agents appsv1.DaemonSet
	if err := c.Client.Get(context.Background(), client.ObjectKey{Namespace: deploy.Namespace, Name: deploy.AgentSA}, &agents); err != nil {
		t.Fatal(err)
	}
	if agents.Labels["app.kubernetes.io/managed-by"] != "Helm" || agents.Labels["app.kubernetes.io/instance"] != deploy.HelmRelease {
		t.Fatalf("the agents' DaemonSet is not the chart's: labels %v", agents.Labels)
	}

	start := time.Now()
	c.apply(policy("fleet", v1alpha1.UpdatePolicySpec{
		Version: v1alpha1.VersionLatest, MaxUnavailable: ios(intstr.FromString("20%")), PauseBetweenNodes: dur(time.Second),
		Waves: []v1alpha1.Wave{
			{Name: "canary", Nodes: ios(intstr.FromInt32(1)), SoakTime: dur(2 * time.Second)},
			{Name: "rest", Nodes: ios(intstr.FromString("100%"))},
		},
	}))
	c.waitUpdated("the rollout converges", 3*time.Minute)
	c.checkTimeline(to, []string{"canary", "rest"}, []string{"canary"})
	ideal := 5*perNode(time.Second) + 4*time.Second + 2*time.Second + host.PrepareDuration
	report(t, "helm", time.Since(start), ideal, c.w.peakUnavailable(), 1)
}
