package chart_test

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// TestRenderWithValuesIsAccepted applies a render with non-default values of every group to a
// real API server (server-side apply, dry-run but for the Namespace and the CRDs the others
// need): what the values produce is valid Kubernetes, not only valid YAML.
func TestRenderWithValuesIsAccepted(t *testing.T) {
	objs := render(t, map[string]any{
		"image":             map[string]any{"repository": "registry.example/brupop", "digest": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "pullPolicy": "Always", "pullSecrets": []any{map[string]any{"name": "regcred"}}},
		"namespace":         map[string]any{"name": "fleet-updates"},
		"log":               map[string]any{"level": "debug", "format": "console"},
		"metrics":           map[string]any{"enabled": false},
		"commonLabels":      map[string]any{"team": "platform"},
		"commonAnnotations": map[string]any{"owner": "platform@example.com"},
		"controller": map[string]any{
			"replicas": 3, "nodeSelector": map[string]any{"pool": "system"},
			"resources":   map[string]any{"limits": map[string]any{"cpu": nil}},
			"affinity":    map[string]any{"podAntiAffinity": nil},
			"tolerations": []any{map[string]any{"key": "dedicated", "operator": "Exists"}},
			"podLabels":   map[string]any{"tier": "ops"}, "podAnnotations": map[string]any{"a": "b"},
		},
		"agent": map[string]any{"priorityClassName": "", "podLabels": map[string]any{"tier": "node"}},
	})
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	apply := func(o *unstructured.Unstructured, opts ...client.ApplyOption) error {
		opts = append([]client.ApplyOption{client.FieldOwner("chart-test"), client.ForceOwnership}, opts...)
		return env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), opts...)
	}
	for _, o := range objs {
		if o.GetKind() == "Namespace" || o.GetKind() == "CustomResourceDefinition" {
			if err := apply(o); err != nil {
				t.Fatalf("%s: %v", key(o), err)
			}
		}
	}
	for _, o := range objs {
		t.Run(key(o), func(t *testing.T) {
			if err := apply(o, client.DryRunAll); err != nil {
				t.Error(err)
			}
		})
	}
}
