package install_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/deploy"
)

// outcome is what a request under a component's identity must meet.
type outcome int

const (
	allowed         outcome = iota
	forbiddenByRBAC         // 403 from the authorizer
	deniedByPolicy          // refused by the agent's ValidatingAdmissionPolicy
)

func (o outcome) String() string {
	return [...]string{"allowed", "forbidden by RBAC", "denied by the admission policy"}[o]
}

// step is one request made under a component's identity, and what must come of it.
type step struct {
	name string
	do   func(ctx context.Context, c client.Client) error
	want outcome
	// msg is part of the policy's message, for deniedByPolicy.
	msg string
}

// verify reports how err differs from the step's expected outcome.
func (s step) verify(err error) error {
	byPolicy := err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+policyName+"'")
	switch {
	case s.want == allowed && err != nil:
		return fmt.Errorf("want it allowed, got: %w", err)
	case s.want == allowed:
		return nil
	case err == nil:
		return fmt.Errorf("want it %s, but it was allowed", s.want)
	case !apierrors.IsForbidden(err):
		return fmt.Errorf("want it %s (403), got: %w", s.want, err)
	case s.want == forbiddenByRBAC && byPolicy:
		return fmt.Errorf("want it forbidden by RBAC, got the admission policy's refusal: %w", err)
	case s.want == deniedByPolicy && !byPolicy:
		return fmt.Errorf("want it denied by the admission policy, got: %w", err)
	case s.want == deniedByPolicy && !strings.Contains(err.Error(), s.msg):
		return fmt.Errorf("want the policy's message to say %q, got: %w", s.msg, err)
	}
	return nil
}

func runSteps(t *testing.T, c client.Client, steps []step) {
	t.Helper()
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := s.do(ctx, c)
			if verr := s.verify(err); verr != nil {
				t.Error(verr)
			} else if err != nil {
				t.Logf("refused as it must be: %v", err)
			}
		})
	}
}

// TestAgentConfinement proves, under the agent's own identity (a service-account token bound
// to a pod on node "a", as the kubelet mounts it), that the agent can write status.agent of
// its own node's BottlerocketNode and nothing else.
func TestAgentConfinement(t *testing.T) {
	installed(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, name := range []string{"a", "b"} {
		createBottlerocketNode(ctx, t, name)
	}

	agent := agentOn(ctx, t, "a")
	otherNode := step{
		name: "status.agent of another node's BottlerocketNode",
		do:   patchStatus("b", map[string]any{"agent": map[string]any{"currentVersion": "1.26.0"}}),
		want: deniedByPolicy,
		msg:  `its token names node "a", the request is for "b"`,
	}
	// The policy takes effect a moment after it is written: wait for the first refusal.
	eventually(t, "waiting for the admission policy to refuse another node's write", func() error {
		return otherNode.verify(otherNode.do(ctx, agent))
	})

	steps := []step{
		{name: "status.agent of its own node (server-side apply, as the agent writes it)", do: applyAgentStatus("a"), want: allowed},
		{name: "status.agent of its own node (merge patch)", do: patchStatus("a", map[string]any{"agent": map[string]any{"bootID": "boot-2"}}), want: allowed},
		{name: "read its own BottlerocketNode", do: getObject(&v1alpha1.BottlerocketNode{}, "", "a"), want: allowed},
		{name: "list BottlerocketNodes", do: listObjects(&v1alpha1.BottlerocketNodeList{}), want: allowed},
		otherNode,
		{name: "server-side apply of another node's status.agent", do: applyAgentStatus("b"), want: deniedByPolicy, msg: `the request is for "b"`},
		{name: "remove the whole status of its own node", do: patchStatus("a", nil), want: deniedByPolicy, msg: "the controller owns status."},
		{name: "spec of its own BottlerocketNode", do: patchSpec("a"), want: forbiddenByRBAC},
		{name: "update of its own status (it applies)", do: updateStatus(&v1alpha1.BottlerocketNode{}, "a"), want: forbiddenByRBAC},
		{name: "create a BottlerocketNode", do: createBottlerocketNodeAs("c"), want: forbiddenByRBAC},
		{name: "delete its own BottlerocketNode", do: deleteObject(&v1alpha1.BottlerocketNode{}, "", "a"), want: forbiddenByRBAC},
		{name: "list pods", do: listObjects(&corev1.PodList{}), want: forbiddenByRBAC},
		{name: "get its Node", do: getObject(&corev1.Node{}, "", "a"), want: forbiddenByRBAC},
		{name: "patch its Node", do: patchNodeLabel("a"), want: forbiddenByRBAC},
		{name: "list Secrets", do: listObjects(&corev1.SecretList{}), want: forbiddenByRBAC},
		{name: "get a Secret in its namespace", do: getObject(&corev1.Secret{}, namespace, "any"), want: forbiddenByRBAC},
		{name: "create a pod in its namespace", do: createPod("rogue", agentSA, "b"), want: forbiddenByRBAC},
		{name: "mint a token for its service account", do: requestToken(agentSA), want: forbiddenByRBAC},
	}
	// Every status field the controller owns is refused, one at a time.
	changes := controllerStatusChanges()
	for _, field := range slices.Sorted(maps.Keys(changes)) {
		steps = append(steps, step{
			name: "status." + field + " of its own node",
			do:   patchStatus("a", map[string]any{field: changes[field]}),
			want: deniedByPolicy,
			msg:  "the controller owns status." + field,
		})
	}
	runSteps(t, agent, steps)

	// What the allowed writes must have left: status.agent written, the controller's status intact.
	var brn v1alpha1.BottlerocketNode
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "a"}, &brn); err != nil {
		t.Fatalf("reading BottlerocketNode a: %v", err)
	}
	if brn.Status.Agent == nil || brn.Status.Agent.CurrentVersion != "1.26.0" || brn.Status.Agent.BootID != "boot-2" {
		t.Errorf("status.agent of a = %+v, want the agent's writes", brn.Status.Agent)
	}
	if brn.Status.Phase != v1alpha1.PhasePending || brn.Status.FailureCount != 1 {
		t.Errorf("the controller's status of a changed: phase %q, failureCount %d", brn.Status.Phase, brn.Status.FailureCount)
	}
}

// TestAgentFirstReport proves an agent can make the first write into a status the
// controller has not written yet (the policy's optionals on an absent status).
func TestAgentFirstReport(t *testing.T) {
	installed(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	createBottlerocketNode(ctx, t, "first-neighbour")
	createFixture(ctx, t, &v1alpha1.BottlerocketNode{ObjectMeta: metav1.ObjectMeta{Name: "first"}})
	agent := agentOn(ctx, t, "first")
	neighbour := step{
		do:   patchStatus("first-neighbour", map[string]any{"agent": map[string]any{"currentVersion": "1.26.0"}}),
		want: deniedByPolicy, msg: `the request is for "first-neighbour"`,
	}
	eventually(t, "waiting for the admission policy", func() error { return neighbour.verify(neighbour.do(ctx, agent)) })
	runSteps(t, agent, []step{
		{name: "first status.agent into an empty status", do: applyAgentStatus("first"), want: allowed},
		{name: "then the controller's phase", do: patchStatus("first", map[string]any{"phase": "Pending"}), want: deniedByPolicy, msg: "the controller owns status.phase"},
	})
}

// TestAgentTokenWithoutNode proves the policy fails closed: the agent's service account with
// a token not bound to a pod (so without a node name) writes no BottlerocketNode.
func TestAgentTokenWithoutNode(t *testing.T) {
	installed(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	createBottlerocketNode(ctx, t, "unbound")
	agent := tokenClient(ctx, t, agentSA, nil)
	if got, ok := whoAmI(ctx, t, agent).Extra[deploy.NodeNameExtra]; ok {
		t.Fatalf("an unbound token carries %s=%v", deploy.NodeNameExtra, got)
	}
	s := step{
		name: "status.agent with an unbound token",
		do:   patchStatus("unbound", map[string]any{"agent": map[string]any{"currentVersion": "1.26.0"}}),
		want: deniedByPolicy,
		msg:  "this token is bound to no pod",
	}
	eventually(t, "waiting for the admission policy to refuse a token without a node", func() error {
		return s.verify(s.do(ctx, agent))
	})
}

// TestAgentTokenBoundToANode proves the policy asks for a pod-bound token: a token of the
// agent's service account bound to a Node object names that node too, but no pod; whoever may
// request tokens for the account could mint one for any node. It writes nothing.
func TestAgentTokenBoundToANode(t *testing.T) {
	installed(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-bound"}}
	createFixture(ctx, t, node)
	createBottlerocketNode(ctx, t, node.Name)
	agent := boundClient(ctx, t, agentSA, &authenticationv1.BoundObjectReference{Kind: "Node", APIVersion: "v1", Name: node.Name, UID: node.UID})
	if got := whoAmI(ctx, t, agent).Extra[deploy.NodeNameExtra]; !slices.Equal(got, []string{node.Name}) {
		t.Fatalf("a Node-bound token carries %s=%v, want [%s]", deploy.NodeNameExtra, got, node.Name)
	}
	s := step{
		name: "status.agent with a token bound to the Node, not to a pod",
		do:   patchStatus(node.Name, map[string]any{"agent": map[string]any{"currentVersion": "1.26.0"}}),
		want: deniedByPolicy,
		msg:  "a token bound to an agent pod",
	}
	eventually(t, "waiting for the admission policy to refuse a token bound to a Node", func() error {
		return s.verify(s.do(ctx, agent))
	})
}

// TestPolicyGuardsEveryControllerField checks that the admission policy refuses agents every
// status field but status.agent — including any field added to the API later — and that the
// confinement test changes each of them.
func TestPolicyGuardsEveryControllerField(t *testing.T) {
	var want []string
	st := reflect.TypeFor[v1alpha1.BottlerocketNodeStatus]()
	for i := range st.NumField() {
		if name, _, _ := strings.Cut(st.Field(i).Tag.Get("json"), ","); name != "agent" {
			want = append(want, name)
		}
	}
	slices.Sort(want)
	policy, err := os.ReadFile(filepath.Join("..", "..", "config", "admission", "agent_policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var guarded []string
	for _, m := range regexp.MustCompile(`'(\w+)': object\.\?status\.\?(\w+) == oldObject\.\?status\.\?(\w+)`).FindAllStringSubmatch(string(policy), -1) {
		if m[1] == m[2] && m[2] == m[3] {
			guarded = append(guarded, m[1])
		}
	}
	slices.Sort(guarded)
	if !slices.Equal(guarded, want) {
		t.Errorf("the policy guards status fields %v; the API's status fields but agent are %v", guarded, want)
	}
	if changed := slices.Sorted(maps.Keys(controllerStatusChanges())); !slices.Equal(changed, want) {
		t.Errorf("the confinement test changes status fields %v; want every one but agent: %v", changed, want)
	}
}

// TestControllerPermissions proves, under the controller's own service account, that it can
// do what its roles say (every rule, by access review, and the main writes for real) and
// cannot read Secrets, create pods or tokens in its namespace, or grant itself more.
func TestControllerPermissions(t *testing.T) {
	installed(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	createBottlerocketNode(ctx, t, "ctl-1")
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ctl-1"}}
	policy := &v1alpha1.UpdatePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "install-test"},
		Spec:       v1alpha1.UpdatePolicySpec{Version: "latest"},
	}
	for _, o := range []client.Object{node, policy} {
		createFixture(ctx, t, o)
	}
	leaseName := "bottlerocket-update-operator.updates.bottlerocket.aws"
	// What the controller's steps create.
	t.Cleanup(func() {
		deleteFixture(t, &v1alpha1.BottlerocketNode{ObjectMeta: metav1.ObjectMeta{Name: "ctl-2"}})
		deleteFixture(t, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: leaseName, Namespace: namespace}})
	})
	controller := tokenClient(ctx, t, controllerSA, nil)
	eventually(t, "waiting for the controller's RBAC", func() error {
		return controller.Get(ctx, client.ObjectKey{Name: "ctl-1"}, &corev1.Node{})
	})

	t.Run("every rule of its roles", func(t *testing.T) {
		reviewRules(ctx, t, controller, "ClusterRole", "bottlerocket-update-operator-controller-role", "")
		reviewRules(ctx, t, controller, "Role", "bottlerocket-update-leader-election", namespace)
	})

	runSteps(t, controller, []step{
		{name: "list Nodes", do: listObjects(&corev1.NodeList{}), want: allowed},
		{name: "label a Node", do: patchNodeLabel("ctl-1"), want: allowed},
		{name: "create a BottlerocketNode", do: createBottlerocketNodeAs("ctl-2"), want: allowed},
		{name: "patch a BottlerocketNode's spec", do: patchSpec("ctl-1"), want: allowed},
		{name: "patch a BottlerocketNode's status.phase (the agents' policy does not apply)", do: patchStatus("ctl-1", map[string]any{"phase": "Staging"}), want: allowed},
		{name: "patch an UpdatePolicy's status", do: patchPolicyStatus("install-test"), want: allowed},
		{name: "update an UpdatePolicy's status (it patches)", do: updatePolicyStatus("install-test"), want: forbiddenByRBAC},
		{name: "update a Node (it patches)", do: updateObject(&corev1.Node{}, "ctl-1"), want: forbiddenByRBAC},
		{name: "update a BottlerocketNode (it patches)", do: updateObject(&v1alpha1.BottlerocketNode{}, "ctl-1"), want: forbiddenByRBAC},
		{name: "create its leader lease", do: createLease(namespace, leaseName), want: allowed},
		{name: "renew its leader lease", do: renewLease(namespace, leaseName), want: allowed},
		{name: "record an Event in its namespace", do: createEvent(namespace), want: allowed},
		{name: "read the PodDisruptionBudget of an evicted pod", do: getObject(&policyv1.PodDisruptionBudget{}, "default", "web"), want: allowed},
		{name: "read the DaemonSet of a pod", do: getObject(&appsv1.DaemonSet{}, "default", "logs"), want: allowed},
		{name: "get a Secret", do: getObject(&corev1.Secret{}, namespace, "any"), want: forbiddenByRBAC},
		{name: "list Secrets", do: listObjects(&corev1.SecretList{}), want: forbiddenByRBAC},
		{name: "create a pod in its namespace", do: createPod("rogue", agentSA, "b"), want: forbiddenByRBAC},
		{name: "mint an agent token", do: requestToken(agentSA), want: forbiddenByRBAC},
		{name: "bind itself cluster-admin", do: bindClusterAdmin, want: forbiddenByRBAC},
		{name: "create a lease in another namespace", do: createLease("default", leaseName), want: forbiddenByRBAC},
		{name: "delete an UpdatePolicy", do: deleteObject(&v1alpha1.UpdatePolicy{}, "", "install-test"), want: forbiddenByRBAC},
	})
}

// TestAgentRoleIsBound proves that every rule of the agent's ClusterRole reaches the agent's
// identity (the policy confines writes further; access reviews do not run admission).
func TestAgentRoleIsBound(t *testing.T) {
	installed(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	agent := tokenClient(ctx, t, agentSA, nil)
	eventually(t, "waiting for the agent's RBAC", func() error {
		return agent.List(ctx, &v1alpha1.BottlerocketNodeList{})
	})
	reviewRules(ctx, t, agent, "ClusterRole", "bottlerocket-update-operator-agent-role", "")
}

// reviewRules asks, under c's identity, for every verb on every resource of the rendered role
// (a SelfSubjectAccessReview each) and fails on any refusal.
func reviewRules(ctx context.Context, t *testing.T, c client.Client, kind, name, ns string) {
	t.Helper()
	var role struct {
		Rules []rbacv1.PolicyRule `json:"rules"`
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(find(t, kind, name).Object, &role); err != nil {
		t.Fatalf("decoding %s %s: %v", kind, name, err)
	}
	for _, rule := range role.Rules {
		for _, group := range rule.APIGroups {
			for _, res := range rule.Resources {
				resource, sub, _ := strings.Cut(res, "/")
				// A rule limited to named objects is reviewed for the first of them.
				name := ""
				if len(rule.ResourceNames) > 0 {
					name = rule.ResourceNames[0]
				}
				for _, verb := range rule.Verbs {
					review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
						ResourceAttributes: &authorizationv1.ResourceAttributes{
							Namespace: ns, Verb: verb, Group: group, Resource: resource, Subresource: sub, Name: name,
						},
					}}
					if err := c.Create(ctx, review); err != nil {
						t.Fatalf("reviewing %s %s: %v", verb, res, err)
					}
					if !review.Status.Allowed {
						t.Errorf("%s grants %s on %s.%s, but the identity is refused it: %s", name, verb, res, group, review.Status.Reason)
					}
				}
			}
		}
	}
}

// tokenClient returns a client that authenticates only with a fresh token of the service
// account (bound to pod when not nil), as a pod's mounted token would.
func tokenClient(ctx context.Context, t *testing.T, sa string, pod *corev1.Pod) client.Client {
	t.Helper()
	var bound *authenticationv1.BoundObjectReference
	if pod != nil {
		bound = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	return boundClient(ctx, t, sa, bound)
}

// boundClient is tokenClient with the token bound to the object bound (nil: unbound).
func boundClient(ctx context.Context, t *testing.T, sa string, bound *authenticationv1.BoundObjectReference) client.Client {
	t.Helper()
	c, err := client.New(tokenConfig(ctx, t, sa, bound), client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatalf("creating a client for %s: %v", sa, err)
	}
	return c
}

// tokenConfig returns a rest config that authenticates only with a fresh token of the
// service account (bound to the object bound when not nil).
func tokenConfig(ctx context.Context, t *testing.T, sa string, bound *authenticationv1.BoundObjectReference) *rest.Config {
	t.Helper()
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600), BoundObjectRef: bound}}
	account := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: namespace}}
	if err := env.Client.SubResource("token").Create(ctx, account, tr); err != nil {
		t.Fatalf("requesting a token for %s: %v", sa, err)
	}
	cfg := rest.AnonymousClientConfig(env.Config)
	cfg.BearerToken = tr.Status.Token
	return cfg
}

// agentOn creates the agent's pod on node (nothing runs it: there is no kubelet) and returns
// a client with a token bound to that pod, as the kubelet mounts it, after checking the
// token's identity and node claim.
func agentOn(ctx context.Context, t *testing.T, node string) client.Client {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "agent-on-" + node, Namespace: namespace},
		Spec: corev1.PodSpec{
			ServiceAccountName: agentSA,
			NodeName:           node,
			Containers:         []corev1.Container{{Name: "agent", Image: "bottlerocket-update-operator:latest"}},
		},
	}
	createFixture(ctx, t, pod)
	agent := tokenClient(ctx, t, agentSA, pod)
	user := whoAmI(ctx, t, agent)
	if want := "system:serviceaccount:" + namespace + ":" + agentSA; user.Username != want {
		t.Fatalf("the agent's token authenticates as %q, want %q", user.Username, want)
	}
	if got := user.Extra[deploy.NodeNameExtra]; !slices.Equal(got, []string{node}) {
		t.Fatalf("the pod-bound token carries %s=%v, want [%s] (extra: %v)", deploy.NodeNameExtra, got, node, user.Extra)
	}
	return agent
}

// whoAmI returns the user the API server authenticates c as.
func whoAmI(ctx context.Context, t *testing.T, c client.Client) authenticationv1.UserInfo {
	t.Helper()
	review := &authenticationv1.SelfSubjectReview{}
	if err := c.Create(ctx, review); err != nil {
		t.Fatalf("asking the API server who the token is: %v", err)
	}
	return review.Status.UserInfo
}

// createBottlerocketNode creates, as the admin (standing in for the controller), a
// BottlerocketNode with every controller-owned status field set.
func createBottlerocketNode(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	brn := &v1alpha1.BottlerocketNode{ObjectMeta: metav1.ObjectMeta{Name: name}}
	createFixture(ctx, t, brn)
	then := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	brn.Status = v1alpha1.BottlerocketNodeStatus{
		Phase: v1alpha1.PhasePending, Reason: v1alpha1.ReasonWaitingForWave, Message: "waiting for wave canary",
		Wave: "rest", RolloutTarget: "1.26.1", PhaseStartTime: &then, UpdateStartTime: &then, UpdatedTime: &then,
		FailedTarget: "1.26.0", FailureCount: 1, FailedTime: &then,
		Conditions: []metav1.Condition{{Type: "Ready", Status: metav1.ConditionFalse, Reason: "Pending", LastTransitionTime: then}},
	}
	if err := env.Client.Status().Update(ctx, brn); err != nil {
		t.Fatalf("setting the controller's status of BottlerocketNode %s: %v", name, err)
	}
}

// controllerStatusChanges is a new value for every status field the controller owns.
func controllerStatusChanges() map[string]any {
	later := "2026-06-01T00:00:00Z"
	return map[string]any{
		"phase": "Updated", "reason": "UpToDate", "message": "changed", "wave": "canary",
		"rolloutTarget": "1.27.0", "phaseStartTime": later, "updateStartTime": later, "updatedTime": later,
		"failedTarget": "1.27.0", "failureCount": 7, "failedTime": later, "rebootStartTime": later, "drainStartTime": later, "healthySince": later,
		"evictedPDBs": []any{"shop/web"},
		"conditions":  []any{map[string]any{"type": "Ready", "status": "True", "reason": "Updated", "message": "", "lastTransitionTime": later}},
	}
}

// The requests below are made under whichever identity runs the step.

// patchStatus merge-patches the status subresource; a nil status removes the whole status.
func patchStatus(name string, status map[string]any) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error {
		body := map[string]any{"status": status}
		if status == nil {
			body["status"] = nil
		}
		patch, err := mergePatch(body)
		if err != nil {
			return err
		}
		return c.Status().Patch(ctx, &v1alpha1.BottlerocketNode{ObjectMeta: metav1.ObjectMeta{Name: name}}, patch)
	}
}

func patchSpec(name string) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error {
		patch, err := mergePatch(map[string]any{"spec": map[string]any{"action": "Stage", "targetVersion": "1.27.0"}})
		if err != nil {
			return err
		}
		return c.Patch(ctx, &v1alpha1.BottlerocketNode{ObjectMeta: metav1.ObjectMeta{Name: name}}, patch)
	}
}

func patchNodeLabel(name string) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error {
		labels := map[string]any{v1alpha1.LabelInterfaceVersion: v1alpha1.InterfaceVersion}
		patch, err := mergePatch(map[string]any{"metadata": map[string]any{"labels": labels}})
		if err != nil {
			return err
		}
		return c.Patch(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, patch)
	}
}

// mergePatch encodes body as a JSON merge patch.
func mergePatch(body map[string]any) (client.Patch, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encoding the patch: %w", err)
	}
	return client.RawPatch(types.MergePatchType, data), nil
}

// applyAgentStatus writes status.agent the way the agent does: server-side apply of that
// field alone, with the agent's field manager.
func applyAgentStatus(name string) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(),
			"kind":       "BottlerocketNode",
			"metadata":   map[string]any{"name": name},
			"status": map[string]any{"agent": map[string]any{
				"currentVersion": "1.26.0", "variant": "aws-k8s-1.31", "arch": "x86_64", "updateState": "Idle",
			}},
		}}
		return c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("bottlerocket-update-agent"), client.ForceOwnership)
	}
}

func createBottlerocketNodeAs(name string) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error {
		return c.Create(ctx, &v1alpha1.BottlerocketNode{ObjectMeta: metav1.ObjectMeta{Name: name}})
	}
}

func getObject(obj client.Object, ns, name string) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error {
		err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj.DeepCopyObject().(client.Object))
		if apierrors.IsNotFound(err) {
			return nil // authorized; the object just does not exist
		}
		return err
	}
}

func listObjects(list client.ObjectList) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error {
		return c.List(ctx, list.DeepCopyObject().(client.ObjectList))
	}
}

func deleteObject(obj client.Object, ns, name string) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error {
		o := obj.DeepCopyObject().(client.Object)
		o.SetNamespace(ns)
		o.SetName(name)
		return c.Delete(ctx, o, client.DryRunAll)
	}
}

func createPod(name, sa, nodeName string) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error {
		return c.Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
			Spec: corev1.PodSpec{
				ServiceAccountName: sa, NodeName: nodeName,
				Containers: []corev1.Container{{Name: "c", Image: "bottlerocket-update-operator:latest"}},
			},
		}, client.DryRunAll)
	}
}

func requestToken(sa string) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error {
		account := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: namespace}}
		return c.SubResource("token").Create(ctx, account, &authenticationv1.TokenRequest{})
	}
}

func bindClusterAdmin(ctx context.Context, c client.Client) error {
	return c.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "install-test-escalation"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: controllerSA, Namespace: namespace}},
	}, client.DryRunAll)
}

func updatePolicyStatus(name string) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error {
		var p v1alpha1.UpdatePolicy
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &p); err != nil {
			return err
		}
		p.Status.ObservedGeneration = p.Generation
		return c.Status().Update(ctx, &p)
	}
}

func patchPolicyStatus(name string) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error {
		var p v1alpha1.UpdatePolicy
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &p); err != nil {
			return err
		}
		orig := p.DeepCopy()
		p.Status.ObservedGeneration = p.Generation
		p.Status.Progress = "0/0"
		return c.Status().Patch(ctx, &p, client.MergeFrom(orig))
	}
}

// updateObject reads a cluster-scoped object and writes it back unchanged with update.
func updateObject(o client.Object, name string) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error {
		if err := c.Get(ctx, client.ObjectKey{Name: name}, o); err != nil {
			return err
		}
		return c.Update(ctx, o)
	}
}

// updateStatus reads a cluster-scoped object and writes its status back unchanged with update.
func updateStatus(o client.Object, name string) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error {
		if err := c.Get(ctx, client.ObjectKey{Name: name}, o); err != nil {
			return err
		}
		return c.Status().Update(ctx, o)
	}
}

func createLease(ns, name string) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error {
		return c.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("replica-1"), LeaseDurationSeconds: ptr.To[int32](15)},
		})
	}
}

// renewLease does what client-go's Lease lock does: get, then update.
func renewLease(ns, name string) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error {
		var l coordinationv1.Lease
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &l); err != nil {
			return err
		}
		l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
		return c.Update(ctx, &l)
	}
}

func createEvent(ns string) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error {
		return c.Create(ctx, &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{GenerateName: "install-test-", Namespace: ns},
			InvolvedObject: corev1.ObjectReference{Kind: "Lease", APIVersion: "coordination.k8s.io/v1", Namespace: ns, Name: "any"},
			Reason:         "LeaderElection", Message: "install test", Type: corev1.EventTypeNormal,
			Source: corev1.EventSource{Component: "install-test"},
		})
	}
}

// TestRolesGrantOnlyWhatIsUsed pins the verbs of the two ClusterRoles: the controller and the
// agent write with patch (merge patch or server-side apply), never update, so no role grants
// update but on updatepolicies/finalizers, which the API server asks of whoever sets a
// finalizer. TestControllerFlowOnItsOwnRole and TestAgentConfinement prove the roles suffice;
// TestMetricsAreServedToTheirReadersOnly that both may ask who scrapes their metrics.
func TestRolesGrantOnlyWhatIsUsed(t *testing.T) {
	for _, tc := range []struct {
		role string
		want map[string][]string // group/resource (name) → verbs, sorted
	}{
		{"bottlerocket-update-operator-controller-role", map[string][]string{
			"/nodes":         {"get", "list", "patch", "watch"},
			"/pods":          {"get", "list"},
			"/pods/eviction": {"create"},
			"apiextensions.k8s.io/customresourcedefinitions (bottlerocketshadows.brupop.bottlerocket.aws)": {"get"},
			"apps/daemonsets":                                    {"get"},
			"authentication.k8s.io/tokenreviews":                 {"create"},
			"authorization.k8s.io/subjectaccessreviews":          {"create"},
			"events.k8s.io/events":                               {"create", "patch"},
			"policy/poddisruptionbudgets":                        {"get", "list"},
			"updates.bottlerocket.aws/bottlerocketnodes":         {"create", "delete", "get", "list", "patch", "watch"},
			"updates.bottlerocket.aws/bottlerocketnodes/status":  {"get", "patch"},
			"updates.bottlerocket.aws/updatepolicies":            {"get", "list", "patch", "watch"},
			"updates.bottlerocket.aws/updatepolicies/status":     {"get", "patch"},
			"updates.bottlerocket.aws/updatepolicies/finalizers": {"update"},
		}},
		{"bottlerocket-update-operator-agent-role", map[string][]string{
			"authentication.k8s.io/tokenreviews":                {"create"},
			"authorization.k8s.io/subjectaccessreviews":         {"create"},
			"updates.bottlerocket.aws/bottlerocketnodes":        {"get", "list", "watch"},
			"updates.bottlerocket.aws/bottlerocketnodes/status": {"patch"},
		}},
	} {
		t.Run(tc.role, func(t *testing.T) {
			var role struct {
				Rules []rbacv1.PolicyRule `json:"rules"`
			}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(find(t, "ClusterRole", tc.role).Object, &role); err != nil {
				t.Fatalf("decoding %s: %v", tc.role, err)
			}
			if got := grantedVerbs(role.Rules); !maps.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("%s grants\n%v\nwant\n%v", tc.role, got, tc.want)
			}
		})
	}
}

// grantedVerbs flattens rules into group/resource (names) → sorted verbs.
func grantedVerbs(rules []rbacv1.PolicyRule) map[string][]string {
	got := map[string][]string{}
	for _, rule := range rules {
		for _, group := range rule.APIGroups {
			for _, res := range rule.Resources {
				key := group + "/" + res
				if len(rule.ResourceNames) > 0 {
					key += " (" + strings.Join(rule.ResourceNames, ",") + ")"
				}
				got[key] = append(got[key], rule.Verbs...)
			}
		}
	}
	for k, verbs := range got {
		slices.Sort(verbs)
		got[k] = slices.Compact(verbs)
	}
	return got
}
