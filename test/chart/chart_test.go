package chart_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/bottlerocket-ops/update-operator/test/framework/deploy"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// TestLint runs `helm lint --strict` on the chart with its defaults and with every value this
// package sets at once.
func TestLint(t *testing.T) {
	runHelm(t, "lint", "--strict", chartDir)
	runHelm(t, "lint", "--strict", chartDir, "-f", valuesFile(t, map[string]any{
		"image":         map[string]any{"repository": "registry.example/brupop", "tag": "v1.2.3", "pullSecrets": []any{map[string]any{"name": "regcred"}}},
		"namespace":     map[string]any{"name": "fleet-updates"},
		"log":           map[string]any{"level": "debug", "format": "console"},
		"metrics":       map[string]any{"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}}, "prometheusRule": map[string]any{"enabled": true}},
		"commonLabels":  map[string]any{"team": "platform"},
		"controller":    map[string]any{"replicas": 3, "nodeSelector": map[string]any{"pool": "system"}},
		"agent":         map[string]any{"podAnnotations": map[string]any{"a": "b"}},
		"networkPolicy": map[string]any{"enabled": false},
	}))
}

// helmLabels are the labels only the chart sets (the install names kustomize as its manager).
var helmLabels = []string{"app.kubernetes.io/managed-by", "app.kubernetes.io/version", "helm.sh/chart"}

// TestDefaultsRenderTheInstall compares, object by object, `helm template --include-crds` with
// the default values and dist/install.yaml: the same objects with the same content. The labels
// that name the installing tool differ, and are checked for what Helm sets.
func TestDefaultsRenderTheInstall(t *testing.T) {
	chart := map[string]*unstructured.Unstructured{}
	for _, o := range render(t, nil) {
		if _, dup := chart[key(o)]; dup {
			t.Errorf("%s rendered twice", key(o))
		}
		chart[key(o)] = o
	}
	install := installManifest(t)
	for _, want := range install {
		got, ok := chart[key(want)]
		if !ok {
			t.Errorf("%s is in dist/install.yaml but not rendered by the chart", key(want))
			continue
		}
		delete(chart, key(want))
		got, want = got.DeepCopy(), want.DeepCopy()
		labels := got.GetLabels()
		if want.GetKind() == "CustomResourceDefinition" {
			// crds/ is installed as it is, not templated: no release labels.
			for _, l := range append(helmLabels, "app.kubernetes.io/instance") {
				if v, ok := labels[l]; ok {
					t.Errorf("%s: CRD labelled %s=%s; crds/ cannot know the release", key(want), l, v)
				}
			}
			wl := want.GetLabels()
			delete(wl, "app.kubernetes.io/instance")
			want.SetLabels(wl)
		} else {
			for l, v := range map[string]string{"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": release, "app.kubernetes.io/version": "latest"} {
				if labels[l] != v {
					t.Errorf("%s: label %s=%q, want %q", key(want), l, labels[l], v)
				}
			}
			if !strings.HasPrefix(labels["helm.sh/chart"], "bottlerocket-update-operator-") {
				t.Errorf("%s: label helm.sh/chart=%q", key(want), labels["helm.sh/chart"])
			}
		}
		for _, l := range helmLabels {
			delete(labels, l)
		}
		got.SetLabels(labels)
		wl := want.GetLabels()
		delete(wl, "app.kubernetes.io/managed-by")
		want.SetLabels(wl)
		if diff := cmp.Diff(want.Object, got.Object); diff != "" {
			t.Errorf("%s: the chart renders it otherwise (-install +chart):\n%s", key(want), diff)
		}
	}
	for k := range chart {
		t.Errorf("%s is rendered by the chart but not in dist/install.yaml", k)
	}
}

// workloads decodes the controller's Deployment and the agent's DaemonSet of a render.
func workloads(t *testing.T, objs []*unstructured.Unstructured) (*appsv1.Deployment, *appsv1.DaemonSet) {
	t.Helper()
	var d appsv1.Deployment
	var ds appsv1.DaemonSet
	convert(t, find(t, objs, "Deployment", controller), &d)
	convert(t, find(t, objs, "DaemonSet", agent), &ds)
	return &d, &ds
}

func convert(t *testing.T, o *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, into); err != nil {
		t.Fatalf("decoding %s: %v", key(o), err)
	}
}

// pods returns the pod template of each component.
func pods(t *testing.T, objs []*unstructured.Unstructured) map[string]corev1.PodTemplateSpec {
	d, ds := workloads(t, objs)
	return map[string]corev1.PodTemplateSpec{"controller": d.Spec.Template, "agent": ds.Spec.Template}
}

func TestImageValues(t *testing.T) {
	t.Run("repository and tag, pull policy and secrets", func(t *testing.T) {
		objs := render(t, map[string]any{"image": map[string]any{
			"repository": "registry.example/brupop", "tag": "v1.2.3", "pullPolicy": "Always",
			"pullSecrets": []any{map[string]any{"name": "regcred"}},
		}})
		for component, pod := range pods(t, objs) {
			c := pod.Spec.Containers[0]
			if c.Image != "registry.example/brupop:v1.2.3" || c.ImagePullPolicy != corev1.PullAlways {
				t.Errorf("%s: image %s pull policy %s", component, c.Image, c.ImagePullPolicy)
			}
			if want := []corev1.LocalObjectReference{{Name: "regcred"}}; !slices.Equal(pod.Spec.ImagePullSecrets, want) {
				t.Errorf("%s: imagePullSecrets %v, want %v", component, pod.Spec.ImagePullSecrets, want)
			}
		}
	})
	t.Run("digest wins over the tag", func(t *testing.T) {
		digest := "sha256:" + strings.Repeat("ab", 32)
		objs := render(t, map[string]any{"image": map[string]any{"repository": "registry.example/brupop", "tag": "v1.2.3", "digest": digest}})
		for component, pod := range pods(t, objs) {
			if got, want := pod.Spec.Containers[0].Image, "registry.example/brupop@"+digest; got != want {
				t.Errorf("%s: image %s, want %s", component, got, want)
			}
		}
	})
}

func TestNamespaceValues(t *testing.T) {
	t.Run("another name", func(t *testing.T) {
		const ns = "fleet-updates"
		objs := render(t, map[string]any{"namespace": map[string]any{"name": ns}})
		nsObj := find(t, objs, "Namespace", ns)
		if nsObj.GetLabels()["pod-security.kubernetes.io/enforce"] != "privileged" {
			t.Errorf("the Namespace lost its Pod Security level: %v", nsObj.GetLabels())
		}
		for _, o := range objs {
			if o.GetNamespace() != "" && o.GetNamespace() != ns {
				t.Errorf("%s is not in %s", key(o), ns)
			}
			if o.GetKind() == "ClusterRoleBinding" || o.GetKind() == "RoleBinding" {
				var b rbacv1.ClusterRoleBinding // same subjects either way
				convert(t, o, &b)
				for _, s := range b.Subjects {
					if s.Namespace != ns {
						t.Errorf("%s binds %s in %s", key(o), s.Name, s.Namespace)
					}
				}
			}
		}
		// The admission policy recognises the agent by its service account's name, in any
		// namespace (the install test proves the confinement itself).
		vap := find(t, objs, "ValidatingAdmissionPolicy", "bottlerocket-update-agent-own-node")
		conds, _, _ := unstructured.NestedSlice(vap.Object, "spec", "matchConditions")
		expr := conds[0].(map[string]any)["expression"].(string)
		if !strings.Contains(expr, "startsWith('system:serviceaccount:')") || !strings.Contains(expr, "endsWith(':"+agent+"')") {
			t.Errorf("the admission policy does not recognise the agent's service account %s in every namespace: %s", agent, expr)
		}
		if d, _ := workloads(t, objs); d.Namespace != ns {
			t.Errorf("the controller runs in %s", d.Namespace)
		}
	})
	t.Run("the release's namespace, created by someone else", func(t *testing.T) {
		objs := render(t, map[string]any{"namespace": map[string]any{"name": "", "create": false}}, "--namespace", "ops")
		if has(objs, "Namespace", "ops") || has(objs, "Namespace", defaultNS) {
			t.Error("a Namespace is rendered with namespace.create=false")
		}
		if d, _ := workloads(t, objs); d.Namespace != "ops" {
			t.Errorf("the controller is in %q, want the release's namespace ops", d.Namespace)
		}
	})
}

// TestResourcesValues sets each component's resources. Helm merges maps with the defaults: a
// key given replaces the default's, a key set to null drops it, the others stay.
func TestResourcesValues(t *testing.T) {
	objs := render(t, map[string]any{
		"controller": map[string]any{"resources": map[string]any{
			"requests": map[string]any{"cpu": "200m", "memory": "128Mi"},
			"limits":   map[string]any{"cpu": nil, "memory": "1Gi"},
		}},
		"agent": map[string]any{"resources": map[string]any{"requests": map[string]any{"cpu": "5m"}}},
	})
	p := pods(t, objs)
	want := map[string]corev1.ResourceRequirements{
		"controller": {
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
		},
		"agent": {
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("5m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
	}
	for component, w := range want {
		got := p[component].Spec.Containers[0].Resources
		if !equalResources(got.Requests, w.Requests) || !equalResources(got.Limits, w.Limits) {
			t.Errorf("%s: requests %v limits %v, want requests %v limits %v", component, got.Requests, got.Limits, w.Requests, w.Limits)
		}
	}
}

func equalResources(a, b corev1.ResourceList) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || v.Cmp(w) != 0 {
			return false
		}
	}
	return true
}

func TestSchedulingValues(t *testing.T) {
	toleration := map[string]any{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}
	affinity := map[string]any{"podAntiAffinity": nil, "nodeAffinity": map[string]any{"requiredDuringSchedulingIgnoredDuringExecution": map[string]any{
		"nodeSelectorTerms": []any{map[string]any{"matchExpressions": []any{map[string]any{"key": "pool", "operator": "In", "values": []any{"ops"}}}}},
	}}}
	for _, component := range []string{"controller", "agent"} {
		t.Run(component, func(t *testing.T) {
			// Helm merges maps with the defaults: podAntiAffinity: null drops the controller's.
			objs := render(t, map[string]any{component: map[string]any{
				"nodeSelector": map[string]any{"pool": "ops"}, "tolerations": []any{toleration},
				"affinity": affinity, "priorityClassName": "ops-critical",
			}})
			spec := pods(t, objs)[component].Spec
			if spec.NodeSelector["pool"] != "ops" {
				t.Errorf("nodeSelector %v lacks pool=ops", spec.NodeSelector)
			}
			if component == "agent" && spec.NodeSelector[interfaceKey] != "2.0.0" {
				t.Errorf("nodeSelector %v lost %s: the agent would run on nodes without the update interface", spec.NodeSelector, interfaceKey)
			}
			wantTol := []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "ops", Effect: corev1.TaintEffectNoSchedule}}
			if !slices.Equal(spec.Tolerations, wantTol) {
				t.Errorf("tolerations %v, want %v", spec.Tolerations, wantTol)
			}
			if spec.Affinity == nil || spec.Affinity.PodAntiAffinity != nil || spec.Affinity.NodeAffinity == nil ||
				spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Key != "pool" {
				t.Errorf("affinity %+v, want the given node affinity only", spec.Affinity)
			}
			if spec.PriorityClassName != "ops-critical" {
				t.Errorf("priorityClassName %q", spec.PriorityClassName)
			}
		})
	}
	t.Run("cleared", func(t *testing.T) {
		objs := render(t, map[string]any{
			"controller":    map[string]any{"tolerations": []any{}, "affinity": nil, "priorityClassName": ""},
			"agent":         map[string]any{"nodeSelector": nil},
			"priorityClass": map[string]any{"create": false},
		})
		p := pods(t, objs)
		if s := p["controller"].Spec; len(s.Tolerations) != 0 || s.Affinity != nil || s.PriorityClassName != "" {
			t.Errorf("controller: cleared values still render: tolerations %v affinity %v priorityClassName %q", s.Tolerations, s.Affinity, s.PriorityClassName)
		}
		if sel := p["agent"].Spec.NodeSelector; len(sel) != 1 || sel[interfaceKey] != "2.0.0" {
			t.Errorf("agent: nodeSelector %v, want only %s", sel, interfaceKey)
		}
		if has(objs, "PriorityClass", "bottlerocket-update-operator-critical") {
			t.Error("PriorityClass rendered with priorityClass.create=false")
		}
	})
}

func TestControllerReplicas(t *testing.T) {
	d, _ := workloads(t, render(t, map[string]any{"controller": map[string]any{"replicas": 3}}))
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("replicas %v, want 3", d.Spec.Replicas)
	}
}

// args returns a container's arguments as flag -> value.
func args(c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, a := range c.Args {
		k, v, _ := strings.Cut(a, "=")
		out[k] = v
	}
	return out
}

func TestLogValues(t *testing.T) {
	objs := render(t, map[string]any{"log": map[string]any{"level": "debug", "format": "console"}})
	for component, pod := range pods(t, objs) {
		a := args(pod.Spec.Containers[0])
		if a["-zap-log-level"] != "debug" || a["-zap-encoder"] != "console" {
			t.Errorf("%s: args %v, want -zap-log-level=debug -zap-encoder=console", component, pod.Spec.Containers[0].Args)
		}
	}
}

func TestMetricsValues(t *testing.T) {
	t.Run("off", func(t *testing.T) {
		objs := render(t, map[string]any{"metrics": map[string]any{"enabled": false, "serviceMonitor": map[string]any{"enabled": true}}})
		for component, pod := range pods(t, objs) {
			if a := args(pod.Spec.Containers[0]); a["-metrics-bind-address"] != "0" {
				t.Errorf("%s: -metrics-bind-address=%s, want 0 (off)", component, a["-metrics-bind-address"])
			}
		}
		for _, o := range objs {
			if o.GetKind() == "ServiceMonitor" || o.GetKind() == "Service" && strings.HasSuffix(o.GetName(), "-metrics") {
				t.Errorf("%s rendered with metrics off", key(o))
			}
		}
	})
	t.Run("ServiceMonitor", func(t *testing.T) {
		if has(render(t, nil), "ServiceMonitor", release) {
			t.Error("a ServiceMonitor by default: it needs the Prometheus operator's CRDs")
		}
		objs := render(t, map[string]any{"metrics": map[string]any{"serviceMonitor": map[string]any{
			"enabled": true, "interval": "1m", "labels": map[string]any{"release": "prom"},
		}}})
		got := find(t, objs, "ServiceMonitor", release)
		if got.GetLabels()["release"] != "prom" {
			t.Errorf("labels %v lack release=prom", got.GetLabels())
		}
		b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "prometheus", "monitor.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		ref, err := deploy.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		want := ref[0].DeepCopy()
		eps, _, _ := unstructured.NestedSlice(want.Object, "spec", "endpoints")
		eps[0].(map[string]any)["interval"] = "1m"
		_ = unstructured.SetNestedSlice(want.Object, eps, "spec", "endpoints")
		if diff := cmp.Diff(want.Object["spec"], got.Object["spec"]); diff != "" {
			t.Errorf("the ServiceMonitor's spec differs from config/prometheus (-want +got):\n%s", diff)
		}
	})
	t.Run("PrometheusRule", func(t *testing.T) {
		if has(render(t, nil), "PrometheusRule", release) {
			t.Error("a PrometheusRule by default: it needs the Prometheus operator's CRDs")
		}
		objs := render(t, map[string]any{"metrics": map[string]any{"prometheusRule": map[string]any{
			"enabled": true, "labels": map[string]any{"release": "prom"},
		}}})
		got := find(t, objs, "PrometheusRule", release)
		if got.GetLabels()["release"] != "prom" {
			t.Errorf("labels %v lack release=prom", got.GetLabels())
		}
		// The rules as Prometheus reads them, alert templates ({{ $labels.policy }}) included.
		b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "prometheus", "rules.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var want map[string]any
		if err := yaml.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got.Object["spec"]); diff != "" {
			t.Errorf("the PrometheusRule's spec differs from config/prometheus/rules.yaml (-want +got):\n%s", diff)
		}
		off := render(t, map[string]any{"metrics": map[string]any{"enabled": false, "prometheusRule": map[string]any{"enabled": true}}})
		if has(off, "PrometheusRule", release) {
			t.Error("a PrometheusRule with metrics off")
		}
	})
}

func TestExtraLabelsAndAnnotations(t *testing.T) {
	objs := render(t, map[string]any{
		"commonLabels":      map[string]any{"team": "platform"},
		"commonAnnotations": map[string]any{"owner": "platform@example.com"},
		"controller":        map[string]any{"podLabels": map[string]any{"tier": "ops"}, "podAnnotations": map[string]any{"scrape": "yes"}},
		"agent":             map[string]any{"podLabels": map[string]any{"tier": "node"}, "podAnnotations": map[string]any{"scrape": "no"}},
	})
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			continue // crds/ is not templated
		}
		if o.GetLabels()["team"] != "platform" || o.GetAnnotations()["owner"] != "platform@example.com" {
			t.Errorf("%s: labels %v annotations %v lack the common ones", key(o), o.GetLabels(), o.GetAnnotations())
		}
	}
	d, ds := workloads(t, objs)
	for _, tc := range []struct {
		component string
		tmpl      corev1.PodTemplateSpec
		tier      string
		scrape    string
		selector  map[string]string
	}{
		{"controller", d.Spec.Template, "ops", "yes", d.Spec.Selector.MatchLabels},
		{"agent", ds.Spec.Template, "node", "no", ds.Spec.Selector.MatchLabels},
	} {
		if tc.tmpl.Labels["tier"] != tc.tier || tc.tmpl.Annotations["scrape"] != tc.scrape {
			t.Errorf("%s: pod labels %v annotations %v", tc.component, tc.tmpl.Labels, tc.tmpl.Annotations)
		}
		if tc.tmpl.Annotations["kubectl.kubernetes.io/default-container"] != tc.component {
			t.Errorf("%s: the install's pod annotation is lost: %v", tc.component, tc.tmpl.Annotations)
		}
		if _, ok := tc.selector["tier"]; ok {
			t.Errorf("%s: pod labels reached the selector %v, which is immutable", tc.component, tc.selector)
		}
	}
}

func TestNetworkPolicyValue(t *testing.T) {
	if !has(render(t, nil), "NetworkPolicy", release) {
		t.Error("no NetworkPolicy by default")
	}
	if has(render(t, map[string]any{"networkPolicy": map[string]any{"enabled": false}}), "NetworkPolicy", release) {
		t.Error("NetworkPolicy rendered with networkPolicy.enabled=false")
	}
}

// TestCompleteGrantedEvictionsValue: the controller may delete pods only when asked, through
// the opt-in role, bound to its service account in the chart's namespace.
func TestCompleteGrantedEvictionsValue(t *testing.T) {
	const name = "bottlerocket-update-operator-complete-evictions"
	if objs := render(t, nil); has(objs, "ClusterRole", name) || has(objs, "ClusterRoleBinding", name) {
		t.Error("the pod-deleting role is rendered by default")
	}
	objs := render(t, map[string]any{"controller": map[string]any{"completeGrantedEvictions": true}, "namespace": map[string]any{"name": "ops"}})
	var role rbacv1.ClusterRole
	convert(t, find(t, objs, "ClusterRole", name), &role)
	if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].Resources, []string{"pods"}) || !slices.Equal(role.Rules[0].Verbs, []string{"delete"}) {
		t.Errorf("the opt-in role grants %+v, want pods delete only", role.Rules)
	}
	var binding rbacv1.ClusterRoleBinding
	convert(t, find(t, objs, "ClusterRoleBinding", name), &binding)
	want := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: controller, Namespace: "ops"}
	if binding.RoleRef.Name != name || len(binding.Subjects) != 1 || binding.Subjects[0] != want {
		t.Errorf("the opt-in role is bound to %+v (role %s), want %+v", binding.Subjects, binding.RoleRef.Name, want)
	}
}
