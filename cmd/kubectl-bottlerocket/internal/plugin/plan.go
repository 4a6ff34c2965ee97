package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers"
	"github.com/bottlerocket-ops/update-operator/internal/kubeutil"
)

func (e *env) planCommand() *cobra.Command {
	var output, file string
	cmd := &cobra.Command{
		Use:   "plan (POLICY | -f FILE)",
		Short: "Show the order nodes would update in, by wave, when, the estimated finish, and what holds them",
		Long: `Show the order nodes would update in, by wave, when each is expected to be disrupted and
back (in which maintenance window), the estimated finish, what holds each node now, and what
would refuse its drain now (pods the drain's rules leave on the node, such as pods with emptyDir
data under drain.deleteEmptyDirData: false; PodDisruptionBudgets allowing no disruption; no
other Node).

The plan is computed by the controller's own planner and drain rules from the cluster as it is
now. The controller updates the node it runs on last in its wave: plan finds that node from the
controller's leader election Lease and the pod holding it, and says so when it cannot (the
order may then differ for that node). With -f, the policy in the file is planned as if applied
(it is checked by the API server with a dry run, and nothing is written).`,
		Example: `  kubectl bottlerocket plan fleet
  kubectl bottlerocket plan -f policy.yaml
  kubectl bottlerocket plan fleet -o yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if (len(args) == 1) == (file != "") {
				return fmt.Errorf("plan takes a POLICY or -f FILE\nSee '%s --help' for usage", cmd.CommandPath())
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			var p v1alpha1.UpdatePolicy
			if file != "" {
				err = e.readPolicy(cmd.Context(), c, file, &p)
			} else {
				err = get(cmd.Context(), c, args[0], &p)
			}
			if err != nil {
				return err
			}
			v, report, err := e.plan(cmd.Context(), c, &p)
			if err != nil {
				return err
			}
			text, err := renderPlan(v, output, e.Clock.Now(), e.Location)
			if err != nil {
				return err
			}
			if _, err := io.WriteString(e.Streams.Out, text); err != nil {
				return fmt.Errorf("writing the plan: %w", err)
			}
			if report.Invalid != "" || len(report.ConflictsWith) > 0 {
				return fmt.Errorf("updatepolicy %q would not move: %s", p.Name, blocked(report))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format: json or yaml (default: a table)")
	cmd.Flags().StringVarP(&file, "filename", "f", "", "An UpdatePolicy file (YAML or JSON) to plan as if applied; - reads standard input")
	return cmd
}

// readPolicy reads an UpdatePolicy from a file (strictly: an unknown field is an error) and
// has the API server check it with a dry run, which writes nothing.
func (e *env) readPolicy(ctx context.Context, c client.Client, file string, p *v1alpha1.UpdatePolicy) error {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(e.Streams.In)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return fmt.Errorf("reading the policy: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, p); err != nil {
		return fmt.Errorf("reading %s as an UpdatePolicy: %w", file, err)
	}
	if gvk := p.GroupVersionKind(); gvk != v1alpha1.GroupVersion.WithKind("UpdatePolicy") {
		return fmt.Errorf("%s holds a %s, not an UpdatePolicy (%s)", file, gvk.Kind, v1alpha1.GroupVersion)
	}
	if p.Name == "" {
		return fmt.Errorf("%s: the UpdatePolicy has no metadata.name", file)
	}
	p.Status = v1alpha1.UpdatePolicyStatus{}
	err = c.Create(ctx, p.DeepCopy(), client.DryRunAll)
	if apierrors.IsAlreadyExists(err) { // planned as an edit of the policy applied
		var applied v1alpha1.UpdatePolicy
		if err := get(ctx, c, p.Name, &applied); err != nil {
			return err
		}
		edit := applied.DeepCopy()
		edit.Spec = p.Spec
		if err = c.Update(ctx, edit, client.DryRunAll); err == nil {
			p.Status = applied.Status
		}
	}
	switch {
	case apierrors.IsInvalid(err):
		return fmt.Errorf("the API server refuses %s: %w", file, err)
	case err != nil:
		return apiError(err, "check (dry run)", p, p.Name)
	}
	return nil
}

// plan forecasts p's rollout around the controller's node as the cluster shows it, and adds
// what would refuse each drain now (or warns that it cannot); it returns the forecast's report
// of p too.
func (e *env) plan(ctx context.Context, c client.Client, p *v1alpha1.UpdatePolicy) (planView, controllers.PolicyReport, error) {
	node, unknown := controllerNode(ctx, c)
	f, nodes, err := e.forecast(ctx, c, p, node)
	if err != nil {
		return planView{}, controllers.PolicyReport{}, err
	}
	v := viewPlan(p.Name, f)
	v.ControllerNode = node
	if unknown != nil {
		v.ControllerNodeUnknown = unknown.Error()
	}
	if err := e.addBlockers(ctx, c, p, nodes, &v); err != nil {
		_, _ = fmt.Fprintf(e.Streams.ErrOut, "warning: what would refuse a drain is not shown: %v\n", err)
	}
	return v, f.Report, nil
}

// controllerNode finds the node the controller runs on as the cluster shows it: the pod that
// holds its leader election Lease, and that pod's node. The holder is controller-runtime's
// identity, "<hostname>_<uuid>", and a pod's hostname is its name. The error says why the
// node is unknown (no permission, no leader now, leader election off).
func controllerNode(ctx context.Context, c client.Client) (string, error) {
	var leases coordinationv1.LeaseList
	if err := c.List(ctx, &leases, client.MatchingFields{"metadata.name": controllers.LeaderElectionID}); err != nil {
		if apierrors.IsForbidden(err) {
			return "", errors.New("not allowed to list Leases")
		}
		return "", fmt.Errorf("listing Leases: %w", err)
	}
	var held []coordinationv1.Lease
	for _, l := range leases.Items {
		if ptr.Deref(l.Spec.HolderIdentity, "") != "" {
			held = append(held, l)
		}
	}
	switch {
	case len(leases.Items) == 0:
		return "", fmt.Errorf("no leader election Lease %s found", controllers.LeaderElectionID)
	case len(held) == 0:
		return "", fmt.Errorf("no controller holds the leader election Lease %s/%s", leases.Items[0].Namespace, controllers.LeaderElectionID)
	case len(held) > 1:
		return "", fmt.Errorf("leader election Leases %s are held in %d namespaces (%s)", controllers.LeaderElectionID, len(held), leaseNamespaces(held))
	}
	lease := &held[0]
	key := client.ObjectKey{Namespace: lease.Namespace, Name: holderPod(*lease.Spec.HolderIdentity)}
	var pod corev1.Pod
	if err := c.Get(ctx, key, &pod); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return "", fmt.Errorf("pod %s holds the leader election Lease but is not found", key)
		case apierrors.IsForbidden(err):
			return "", fmt.Errorf("not allowed to get pod %s, which holds the leader election Lease", key)
		}
		return "", fmt.Errorf("getting pod %s, which holds the leader election Lease: %w", key, err)
	}
	if pod.Spec.NodeName == "" {
		return "", fmt.Errorf("pod %s holds the leader election Lease but is on no node", key)
	}
	return pod.Spec.NodeName, nil
}

// holderPod is the pod named by a controller-runtime leader election identity,
// "<hostname>_<uuid>" (a pod's hostname is its name; a name has no "_").
func holderPod(identity string) string {
	if i := strings.LastIndex(identity, "_"); i > 0 {
		return identity[:i]
	}
	return identity
}

func leaseNamespaces(leases []coordinationv1.Lease) string {
	ns := make([]string, len(leases))
	for i := range leases {
		ns[i] = leases[i].Namespace
	}
	return strings.Join(ns, ", ")
}

// forecast reads the Nodes, BottlerocketNodes and policies, puts p in place of the policy of
// its name, and forecasts p's rollout with controllerNode ("" when unknown) kept for last in
// its wave, as the controller keeps its own; it returns the Nodes too.
func (e *env) forecast(ctx context.Context, c client.Client, p *v1alpha1.UpdatePolicy, controllerNode string) (controllers.Forecast, []corev1.Node, error) {
	var nodes corev1.NodeList
	var brns v1alpha1.BottlerocketNodeList
	var policies v1alpha1.UpdatePolicyList
	for _, l := range []struct {
		list client.ObjectList
		obj  client.Object
	}{{&nodes, &corev1.Node{}}, {&brns, &v1alpha1.BottlerocketNode{}}, {&policies, &v1alpha1.UpdatePolicy{}}} {
		if err := c.List(ctx, l.list); err != nil {
			return controllers.Forecast{}, nil, apiError(err, "list", l.obj, "*")
		}
	}
	all := []v1alpha1.UpdatePolicy{*p}
	for _, q := range policies.Items {
		if q.Name != p.Name && q.DeletionTimestamp == nil {
			all = append(all, q)
		}
	}
	f, _ := controllers.ForecastRollout(e.Clock.Now(), nodes.Items, brns.Items, all, p.Name, controllerNode)
	return f, nodes.Items, nil
}

// laterOf returns the later of a and b.
func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// blocked says why a policy would not move at all ("" when it would).
func blocked(r controllers.PolicyReport) string {
	if len(r.ConflictsWith) > 0 {
		return "it selects nodes that " + strings.Join(r.ConflictsWith, ", ") + " select too (a node two policies select is governed by neither)"
	}
	return r.Invalid
}

// planView is the plan as -o json|yaml prints it.
type planView struct {
	Policy        string     `json:"policy"`
	Target        string     `json:"target,omitempty"`
	Phase         string     `json:"phase,omitempty"`
	MaxUnavail    int        `json:"maxUnavailable"`
	PerNode       string     `json:"expectedPerNode"`
	EstimatedDone *time.Time `json:"estimatedCompletionTime,omitempty"`
	Blocked       string     `json:"blocked,omitempty"`
	// ControllerNode is the node the controller runs on, which it updates last in its wave.
	ControllerNode string `json:"controllerNode,omitempty"`
	// ControllerNodeUnknown says why the controller's node is not known, when it is not: the
	// order may then differ for that node.
	ControllerNodeUnknown string         `json:"controllerNodeUnknown,omitempty"`
	Nodes                 []planNodeView `json:"nodes"`
	Waves                 []planWaveView `json:"waves"`
}

type planNodeView struct {
	Name    string     `json:"name"`
	Wave    string     `json:"wave"`
	Phase   string     `json:"phase"`
	Reason  string     `json:"reason,omitempty"`
	Message string     `json:"message,omitempty"`
	Start   *time.Time `json:"start,omitempty"`
	Back    *time.Time `json:"back,omitempty"`
	// WouldRefuseDrain is what would refuse the node's drain now (a node not disrupted yet).
	WouldRefuseDrain []string `json:"wouldRefuseDrain,omitempty"`
}

type planWaveView struct {
	Name  string     `json:"name"`
	Nodes int        `json:"nodes"`
	First *time.Time `json:"firstStart,omitempty"`
	Last  *time.Time `json:"lastBack,omitempty"`
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// viewPlan arranges a forecast for printing: its nodes, and per wave the first start and last
// return. The finish is the status' estimate, or, for a rollout that is not moving by itself
// (paused, dry-run, halted), when the last node would be back if it were.
func viewPlan(name string, f controllers.Forecast) planView {
	r := f.Report
	v := planView{
		Policy: name, Target: r.TargetVersion, Phase: string(r.Phase), MaxUnavail: r.MaxUnavailable,
		PerNode: f.PerNode.Round(time.Second).String(), EstimatedDone: timeOrNil(r.EstimatedCompletion),
		Blocked: blocked(r), Nodes: []planNodeView{}, Waves: []planWaveView{},
	}
	var last time.Time
	for _, n := range f.Nodes {
		if n.Back.IsZero() {
			last = time.Time{}
			break
		}
		last = laterOf(last, n.Back)
	}
	if v.EstimatedDone == nil && v.Blocked == "" {
		v.EstimatedDone = timeOrNil(last)
	}
	byWave := map[string]int{}
	for _, n := range f.Nodes {
		v.Nodes = append(v.Nodes, planNodeView{Name: n.Name, Wave: n.Wave, Phase: string(n.Phase), Reason: string(n.Reason),
			Message: n.Message, Start: timeOrNil(n.Start), Back: timeOrNil(n.Back)})
		k, ok := byWave[n.Wave]
		if !ok {
			k = len(v.Waves)
			byWave[n.Wave] = k
			v.Waves = append(v.Waves, planWaveView{Name: n.Wave})
		}
		w := &v.Waves[k]
		w.Nodes++
		if !n.Start.IsZero() && (w.First == nil || n.Start.Before(*w.First)) {
			w.First = timeOrNil(n.Start)
		}
		if !n.Back.IsZero() && (w.Last == nil || n.Back.After(*w.Last)) {
			w.Last = timeOrNil(n.Back)
		}
	}
	return v
}

// renderPlan prints the plan as a table, or as JSON or YAML.
func renderPlan(v planView, output string, now time.Time, loc *time.Location) (string, error) {
	switch strings.ToLower(output) {
	case "json":
		b, err := json.MarshalIndent(v, "", "    ")
		return string(b) + "\n", err
	case "yaml":
		b, err := yaml.Marshal(v)
		return string(b), err
	case "":
	default:
		return "", errors.New("unreachable: output checked")
	}
	var b bytes.Buffer // writes to a buffer do not fail
	show := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return when(*t, now, loc, "")
	}
	eta := "-"
	if v.EstimatedDone != nil {
		eta = at(*v.EstimatedDone, now, loc, "")
	}
	fmt.Fprintf(&b, "Policy:     %s\nTarget:     %s\nPhase:      %s\nBudget:     %d at a time, about %s a node\nFinishes:   %s\n",
		v.Policy, dash(v.Target), dash(v.Phase), v.MaxUnavail, v.PerNode, eta)
	if len(v.Nodes) == 0 {
		b.WriteString("\nNothing left to update.\n")
		return b.String(), nil
	}
	b.WriteString("\n")
	w := printers.GetNewTabWriter(&b)
	_, _ = fmt.Fprintln(w, "WAVE\tNODES\tFIRST START\tLAST BACK")
	for _, wv := range v.Waves {
		_, _ = fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", wv.Name, wv.Nodes, show(wv.First), show(wv.Last))
	}
	_ = w.Flush()
	b.WriteString("\n")
	w = printers.GetNewTabWriter(&b)
	_, _ = fmt.Fprintln(w, "#\tNODE\tWAVE\tPHASE\tSTART\tBACK\tNOW WAITING FOR")
	var refused []string
	for i, n := range v.Nodes {
		_, _ = fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", i+1, n.Name, n.Wave, n.Phase, show(n.Start), show(n.Back), dash(n.Reason))
		for _, r := range n.WouldRefuseDrain {
			refused = append(refused, "  "+n.Name+": "+r)
		}
	}
	_ = w.Flush()
	if v.ControllerNodeUnknown != "" {
		fmt.Fprintf(&b, "\nNote: the controller's node is unknown (%s): the order may differ for that node.\n", v.ControllerNodeUnknown)
	}
	if len(refused) > 0 {
		b.WriteString("\nWould refuse a drain now (drain.timeout and drain.onTimeout decide then):\n" + strings.Join(refused, "\n") + "\n")
	}
	return b.String(), nil
}

// addBlockers adds to each node not disrupted yet what would refuse its drain now, by the
// controller's drain rules (kubectl's) and the PodDisruptionBudgets as they stand.
func (e *env) addBlockers(ctx context.Context, c client.Client, p *v1alpha1.UpdatePolicy, nodes []corev1.Node, v *planView) error {
	kube, err := e.kube()
	if err != nil {
		return err
	}
	var pdbs policyv1.PodDisruptionBudgetList
	if err := c.List(ctx, &pdbs); err != nil {
		return fmt.Errorf("listing PodDisruptionBudgets: %w", err)
	}
	schedulable := 0
	for i := range nodes {
		if !kubeutil.NodeUnavailable(&nodes[i]) {
			schedulable++
		}
	}
	for i := range v.Nodes {
		n := &v.Nodes[i]
		if n.Start == nil { // disrupted now, or not expected to start
			continue
		}
		pods, refused, err := controllers.PodsToEvict(ctx, kube, n.Name, p.Spec.Drain)
		if err != nil {
			return err
		}
		others := schedulable - 1 // the node itself is schedulable until it is cordoned
		n.WouldRefuseDrain = drainBlockers(pods, refused, pdbs.Items, others, p.Spec.Drain.TimeoutAction())
	}
	return nil
}

// drainBlockers says what would refuse a drain of a node now: a pod the drain's rules refuse
// to evict (refused; the drain never finishes, and onTimeout decides), a pod two budgets
// select (the API server refuses to evict it), a budget allowing no disruption of a pod it
// selects, and no other schedulable Node to take the pods to evict.
func drainBlockers(pods []corev1.Pod, refused []controllers.RefusedPod, pdbs []policyv1.PodDisruptionBudget, otherSchedulable int,
	onTimeout v1alpha1.DrainTimeoutAction) []string {
	var out []string
	for _, r := range refused {
		out = append(out, fmt.Sprintf("pod %s/%s %s: it is never evicted, the drain times out (onTimeout: %s)",
			r.Pod.Namespace, r.Pod.Name, r.Why, onTimeout))
	}
	seen := map[string]bool{}
	for i := range pods {
		pod := &pods[i]
		selecting := controllers.SelectingPDBs(pod, pdbs)
		switch {
		case len(selecting) > 1:
			out = append(out, fmt.Sprintf("pod %s/%s is selected by %d PodDisruptionBudgets: the API server refuses to evict it", pod.Namespace, pod.Name, len(selecting)))
		case len(selecting) == 1 && selecting[0].Status.DisruptionsAllowed <= 0:
			b := &selecting[0]
			key := b.Namespace + "/" + b.Name
			if seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, fmt.Sprintf("PDB %s allows 0 disruptions: it needs %d healthy pods, %d are (pod %s)",
				key, b.Status.DesiredHealthy, b.Status.CurrentHealthy, pod.Name))
		}
	}
	if len(pods) > 0 && otherSchedulable <= 0 {
		out = append(out, fmt.Sprintf("no other schedulable Node to take its %d pods", len(pods)))
	}
	return out
}
