package v1alpha1_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// admit creates an object of kind from a YAML spec (and, for BottlerocketNode, status) and
// returns the API server's answer. Objects are built from raw YAML so that malformed input
// reaches the server as a user would send it.
func admit(kind, specYAML string) error {
	var spec map[string]any
	Expect(yaml.Unmarshal([]byte(specYAML), &spec)).To(Succeed())
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "updates.bottlerocket.aws/v1alpha1",
		"kind":       kind,
		"metadata":   map[string]any{"name": "v-" + rand.String(8)},
		"spec":       spec,
	}}
	return env.Client.Create(context.Background(), obj)
}

// admitStatus creates a BottlerocketNode, then writes status through the status subresource.
func admitStatus(statusYAML string) error {
	return admitStatusOf("BottlerocketNode", statusYAML)
}

// admitStatusOf creates an object of kind with an empty spec, then writes status through the
// status subresource.
func admitStatusOf(kind, statusYAML string) error {
	ctx := context.Background()
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "updates.bottlerocket.aws/v1alpha1",
		"kind":       kind,
		"metadata":   map[string]any{"name": "s-" + rand.String(8)},
	}}
	Expect(env.Client.Create(ctx, obj)).To(Succeed())
	var status map[string]any
	Expect(yaml.Unmarshal([]byte(statusYAML), &status)).To(Succeed())
	obj.Object["status"] = status
	return env.Client.Status().Update(ctx, obj)
}

// rule is one validation rule: a refused example with the message a user sees, and its
// accepted boundary twin.
type rule struct {
	kind, refused, message, accepted string
}

func policy(refused, message, accepted string) rule {
	return rule{"UpdatePolicy", refused, message, accepted}
}

var _ = Describe("Admission refuses bad input with a message a user can act on", func() {
	DescribeTable("IANA time zone names of every form are accepted",
		func(zone string) {
			Expect(admit("UpdatePolicy", fmt.Sprintf(`maintenanceWindows: [{schedule: "@daily", duration: 1h, timeZone: %q}]`, zone))).To(Succeed())
		},
		Entry("no area", "GMT"), Entry("no area", "CET"), Entry("no area", "Japan"), Entry("no area", "UTC"),
		Entry("no area, with digits", "EST5EDT"), Entry("no area, with a hyphen", "NZ-CHAT"),
		Entry("area and location", "Europe/Berlin"), Entry("an offset zone", "Etc/GMT+5"), Entry("an offset zone", "Etc/GMT-14"),
		Entry("area, region and location", "America/Argentina/Buenos_Aires"),
	)

	DescribeTable("UpdatePolicy and BottlerocketNode spec rules",
		func(r rule) {
			err := admit(r.kind, r.refused)
			Expect(err).To(HaveOccurred(), "expected refusal of:\n%s", r.refused)
			Expect(err.Error()).To(ContainSubstring(r.message))
			Expect(admit(r.kind, r.accepted)).To(Succeed(), "expected acceptance of:\n%s", r.accepted)
		},
		Entry("percent over 100%", policy(`maxUnavailable: 101%`,
			"maxUnavailable must be a count of 0 or more or a percentage from 0% to 100%", `maxUnavailable: 100%`)),
		Entry("malformed percent", policy(`maxUnavailable: "ten%"`,
			"maxUnavailable must be a count", `maxUnavailable: 10%`)),
		Entry("negative count", policy(`maxUnavailable: -1`,
			"maxUnavailable must be a count of 0 or more", `maxUnavailable: 0`)),
		Entry("per-zone percent over 100%", policy(`maxUnavailablePerZone: 150%`,
			"maxUnavailablePerZone must be a count", `maxUnavailablePerZone: 1`)),
		Entry("staging of zero", policy(`staging: {maxConcurrent: 0}`,
			"staging.maxConcurrent must be a count of 1 or more", `staging: {maxConcurrent: 1}`)),
		Entry("duplicate wave names", policy(
			`waves: [{name: canary, nodes: 1}, {name: canary, nodes: 100%}]`, "wave names must be unique",
			`waves: [{name: canary, nodes: 1}, {name: rest, nodes: 100%}]`)),
		Entry("wave with nodes and nodeSelector", policy(
			`waves: [{name: a, nodes: 1, nodeSelector: {matchLabels: {z: a}}}]`, "a wave sets exactly one of nodes or nodeSelector",
			`waves: [{name: a, nodeSelector: {matchLabels: {z: a}}}]`)),
		Entry("wave with neither nodes nor nodeSelector", policy(
			`waves: [{name: a}]`, "a wave sets exactly one of nodes or nodeSelector",
			`waves: [{name: a, nodes: 1}]`)),
		Entry("wave of zero nodes", policy(`waves: [{name: a, nodes: 0}]`,
			"nodes must be a count of 1 or more or a percentage from 1% to 100%", `waves: [{name: a, nodes: 1%}]`)),
		Entry("wave name not a DNS label", policy(`waves: [{name: Canary_1, nodes: 1}]`,
			"should match", `waves: [{name: canary-1, nodes: 1}]`)),
		Entry("negative duration", policy(`pauseBetweenNodes: -5m`,
			"pauseBetweenNodes must be a duration such as 30s or 5m, from 0s to 24h", `pauseBetweenNodes: 0s`)),
		Entry("duration beyond its cap", policy(`pauseBetweenNodes: 25h`,
			"pauseBetweenNodes must be a duration", `pauseBetweenNodes: 24h`)),
		Entry("malformed duration", policy(`waves: [{name: a, nodes: 1, soakTime: soon}]`,
			"soakTime must be a duration such as 30s or 2h, from 0s to 168h", `waves: [{name: a, nodes: 1, soakTime: 168h}]`)),
		Entry("schedule without duration", policy(`maintenanceWindows: [{schedule: "0 22 * * *"}]`,
			"spec.maintenanceWindows[0].duration: Required value", `maintenanceWindows: [{schedule: "0 22 * * *", duration: 1s}]`)),
		Entry("window of zero length", policy(`maintenanceWindows: [{schedule: "@daily", duration: 0s}]`,
			"duration must be a duration such as 30m or 4h, from 1s to 168h", `maintenanceWindows: [{schedule: "@daily", duration: 168h}]`)),
		Entry("schedule that is not cron-shaped", policy(`maintenanceWindows: [{schedule: "every night", duration: 1h}]`,
			"schedule must be a cron expression of five fields", `maintenanceWindows: [{schedule: "0 22 * * 1-5", duration: 1h}]`)),
		Entry("time zone not of IANA form", policy(`maintenanceWindows: [{schedule: "@daily", duration: 1h, timeZone: "CET+1 summer"}]`,
			"timeZone must be an IANA time zone name", `maintenanceWindows: [{schedule: "@daily", duration: 1h, timeZone: America/Argentina/Buenos_Aires}]`)),
		Entry("the process's local zone, which is no IANA name", policy(`maintenanceWindows: [{schedule: "@daily", duration: 1h, timeZone: Local}]`,
			"timeZone must be an IANA time zone name", `maintenanceWindows: [{schedule: "@daily", duration: 1h, timeZone: GMT}]`)),
		Entry("version neither latest nor a version", policy(`version: newest`,
			"version must be 'latest' or a Bottlerocket version such as 1.26.1", `version: 1.26.1`)),
		Entry("unknown onTimeout", policy(`drain: {onTimeout: Skip}`,
			`supported values: "Abort", "Force"`, `drain: {onTimeout: Force}`)),
		Entry("drain timeout of zero", policy(`drain: {timeout: 0s}`,
			"drain.timeout must be a duration such as 15m, from 1s to 24h", `drain: {timeout: 1s}`)),
		Entry("negative grace period", policy(`drain: {gracePeriodSeconds: -1}`,
			"should be greater than or equal to 0", `drain: {gracePeriodSeconds: 0}`)),
		Entry("readyTimeout beyond its cap", policy(`health: {readyTimeout: 48h}`,
			"health.readyTimeout must be a duration", `health: {readyTimeout: 24h}`)),
		Entry("negative stableFor", policy(`health: {stableFor: -1s}`,
			"health.stableFor must be a duration", `health: {stableFor: 0s}`)),
		Entry("zero failure budget", policy(`failurePolicy: {maxFailedNodes: 0}`,
			"should be greater than or equal to 1", `failurePolicy: {maxFailedNodes: 1}`)),
		Entry("unknown node action", rule{"BottlerocketNode", `{action: Upgrade, targetVersion: 1.26.1}`,
			`supported values: "None", "Stage", "Reboot"`, `{action: Reboot, targetVersion: 1.26.1}`}),
		Entry("an intent without a target", rule{"BottlerocketNode", `{action: Stage}`,
			"targetVersion is required when action is Stage or Reboot", `{action: None}`}),
		Entry("a target that is not an exact version", rule{"BottlerocketNode", `{action: Stage, targetVersion: latest}`,
			"spec.targetVersion: Invalid value", `{action: Stage, targetVersion: 1.26.1}`}),
	)

	DescribeTable("BottlerocketNode status shapes that cannot happen",
		func(refused, message, accepted string) {
			err := admitStatus(refused)
			Expect(err).To(HaveOccurred(), "expected refusal of:\n%s", refused)
			Expect(err.Error()).To(ContainSubstring(message))
			Expect(admitStatus(accepted)).To(Succeed())
		},
		Entry("a failed action without the host's error text",
			`{agent: {lastAction: {action: Stage, result: Failed, time: "2026-11-23T19:00:00Z"}}}`,
			"a failed action carries a message",
			`{agent: {lastAction: {action: Stage, result: Failed, message: "prepare failed: no space", time: "2026-11-23T19:00:00Z"}}}`),
		Entry("a reboot record without the boot ID",
			`{agent: {rebootRecord: {fromVersion: 1.25.0, toVersion: 1.26.0, time: "2026-11-23T19:00:00Z"}}}`,
			"bootID: Required value",
			`{agent: {rebootRecord: {bootID: b1, fromVersion: 1.25.0, toVersion: 1.26.0, time: "2026-11-23T19:00:00Z"}}}`),
		Entry("an unknown phase", `{phase: Upgrading}`, `supported values: "Idle"`, `{phase: Draining}`),
		Entry("an unknown host state", `{agent: {updateState: Downloading}}`, `supported values: "Idle"`, `{agent: {updateState: Staged}}`),
	)

	It("refuses an UpdatePolicy target source that is neither Latest nor Pin", func() {
		err := admitStatusOf("UpdatePolicy", `{targetVersion: 1.26.1, targetSource: Pinned}`)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring(`supported values: "Latest", "Pin"`))
		Expect(admitStatusOf("UpdatePolicy", `{targetVersion: 1.26.1, targetSource: Pin}`)).To(Succeed())
	})
})

var _ = Describe("Samples", func() {
	It("apply and read back unchanged, with defaults applied", func(ctx SpecContext) {
		files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "samples", "updates_*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(files).To(HaveLen(5))
		for _, f := range files {
			raw, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			sample := &unstructured.Unstructured{}
			Expect(yaml.Unmarshal(raw, &sample.Object)).To(Succeed())
			Expect(env.Client.Create(ctx, sample.DeepCopy())).To(Succeed(), f)

			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(sample.GroupVersionKind())
			Expect(env.Client.Get(ctx, nameOf(sample), got)).To(Succeed())
			// Everything the sample says comes back as written.
			Expect(got.Object["spec"]).To(matchSubset(sample.Object["spec"]), f)
			// Defaults a user would expect are filled in.
			spec := got.Object["spec"].(map[string]any)
			Expect(spec).To(HaveKey("maxUnavailable"))
			Expect(spec["drain"]).To(HaveKeyWithValue("onTimeout", Or(Equal("Abort"), Equal("Force"))))
			Expect(spec["drain"]).To(HaveKey("timeout"))
			Expect(spec["health"]).To(HaveKey("readyTimeout"))
			Expect(spec["failurePolicy"]).To(HaveKey("maxFailedNodes"))
		}
	})
})

var _ = Describe("Printer columns", func() {
	It("come back from the server's table output", func(ctx SpecContext) {
		Expect(admit("UpdatePolicy", `{version: 1.26.1}`)).To(Succeed())
		Expect(admit("BottlerocketNode", `{action: None}`)).To(Succeed())
		for resource, columns := range map[string][]string{
			"updatepolicies":    {"Name", "Target", "Progress", "Phase", "Ready", "Age"},
			"bottlerocketnodes": {"Name", "Phase", "Version", "Target", "Policy", "Wave", "Reason", "Age"},
		} {
			Expect(tableColumns(ctx, resource)).To(ContainElements(columns), resource)
		}
	})
})

// matchSubset succeeds when every key of want is in the actual map with a matching value.
func matchSubset(want any) OmegaMatcher {
	switch w := want.(type) {
	case map[string]any:
		keys := Keys{}
		for k, v := range w {
			keys[k] = matchSubset(v)
		}
		return MatchKeys(IgnoreExtras, keys)
	case []any:
		elems := make([]any, len(w))
		for i, v := range w {
			elems[i] = matchSubset(v)
		}
		return HaveExactElements(elems...)
	default:
		return WithTransform(func(v any) string { return fmt.Sprint(v) }, Equal(fmt.Sprint(w)))
	}
}

func nameOf(u *unstructured.Unstructured) types.NamespacedName {
	return types.NamespacedName{Name: u.GetName()}
}

// tableColumns asks the API server for its Table rendering of a resource, as kubectl get does.
func tableColumns(ctx context.Context, resource string) []string {
	cs, err := kubernetes.NewForConfig(env.Config)
	Expect(err).NotTo(HaveOccurred())
	raw, err := cs.RESTClient().Get().AbsPath("/apis/updates.bottlerocket.aws/v1alpha1", resource).
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
	Expect(err).NotTo(HaveOccurred())
	var table metav1.Table
	Expect(json.Unmarshal(raw, &table)).To(Succeed())
	Expect(table.Rows).NotTo(BeEmpty())
	names := make([]string, 0, len(table.ColumnDefinitions))
	for _, c := range table.ColumnDefinitions {
		names = append(names, c.Name)
	}
	return names
}
