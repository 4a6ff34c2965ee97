package agent

import (
	"context"
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// publish writes status.agent of brn when, and only when, something in it changed: an idle
// agent makes no API writes. It applies only status.agent, with the agent's own field
// manager, so it never touches the controller's fields. The agent remembers what it wrote.
func (a *Agent) publish(ctx context.Context, brn *v1alpha1.BottlerocketNode, previous, report *v1alpha1.AgentStatus) error {
	if equality.Semantic.DeepEqual(previous, report) {
		return nil
	}
	agent, err := runtime.DefaultUnstructuredConverter.ToUnstructured(report)
	if err != nil {
		return fmt.Errorf("encoding the agent's report: %w", err)
	}
	patch := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "BottlerocketNode",
		"metadata":   map[string]any{"name": a.NodeName},
		"status":     map[string]any{"agent": agent},
	}}
	if err := a.Client.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(patch), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("writing status.agent of BottlerocketNode %s: %w", a.NodeName, err)
	}
	a.mu.Lock()
	a.published = &published{uid: brn.UID, report: report.DeepCopy()}
	a.mu.Unlock()
	log.FromContext(ctx).V(1).Info("Reported the host's state", "version", report.CurrentVersion, "state", report.UpdateState)
	agentWrites.Inc()
	return nil
}

// newestFirst returns at most limit versions, newest first.
func newestFirst(versions []string, limit int) []string {
	out := append([]string(nil), versions...)
	sort.SliceStable(out, func(i, j int) bool { return v1alpha1.CompareVersions(out[i], out[j]) > 0 })
	if len(out) > limit {
		out = out[:limit]
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// metaNow is the clock's time at the API's precision (seconds), so that a report read back
// from the API server compares equal to the one written.
func metaNow(c clock.Clock) metav1.Time {
	return metav1.NewTime(c.Now().Truncate(1e9))
}
