package planner

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/internal/kubeutil"
)

// selectorFor parses a label selector; nil or empty selects everything.
func selectorFor(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(s)
}

// nodeView is what the planner reads of a node again and again, gathered once per pass.
type nodeView struct {
	name  string
	zone  string
	agent *v1alpha1.AgentStatus // nil until the agent reports a current version
	down  bool                  // cordoned or not Ready
}

// viewOf gathers the view of a node.
func viewOf(ns NodeState) nodeView {
	n := ns.Node
	v := nodeView{name: n.Name, zone: n.Labels[v1alpha1.LabelZone], down: kubeutil.NodeUnavailable(n)}
	if brn := ns.BRN; brn != nil && brn.Status.Agent != nil && brn.Status.Agent.CurrentVersion != "" {
		v.agent = brn.Status.Agent
	}
	return v
}

// observe gives every policy the views of the nodes, and returns which policy governs each
// node or why none does (see selectorIndex.classify). Both come from in.Memo for the nodes
// whose objects are those it saw, and are kept in it for the next pass.
func observe(in Input, passes []*policyPass, idx *selectorIndex) []int32 {
	views := make([]nodeView, len(in.Nodes))
	governed := make([]int32, len(in.Nodes))
	memo := in.Memo.cursor(selectorsKey(passes), len(in.Nodes))
	for i, ns := range in.Nodes {
		seen, sameBRN := memo.seen(ns)
		if sameBRN {
			views[i] = seen.view
		} else {
			views[i] = viewOf(ns)
		}
		if seen != nil && memo.sameSelectors {
			governed[i] = seen.governor
		} else {
			governed[i] = idx.classify(ns.Node)
		}
		memo.keep(memoOf(ns, views[i], governed[i]))
	}
	memo.done()
	for _, p := range passes {
		p.views = views
	}
	return governed
}

// selectorsKey says which policies, with which node selectors, a node's governor was found
// under: a governor is an index into the policies.
func selectorsKey(passes []*policyPass) string {
	var b strings.Builder
	for _, p := range passes {
		b.WriteString(p.policy.Name)
		b.WriteByte(0)
		if p.selector == nil {
			b.WriteByte(1) // invalid: selects nothing
		} else {
			b.WriteString(p.selector.String())
		}
		b.WriteByte(0)
	}
	return b.String()
}

// preparePolicies parses every policy's selectors once for the pass.
func preparePolicies(in *Input) []*policyPass {
	passes := make([]*policyPass, len(in.Policies))
	for i := range in.Policies {
		passes[i] = newPolicyPass(in, &in.Policies[i])
	}
	return passes
}

// excluded reports whether a person excluded the node from updates.
func excluded(n *corev1.Node) bool {
	return n.Annotations[v1alpha1.AnnotationExclude] == "true"
}

// scope gives every node to the one policy selecting it. Nodes selected by none, by more than
// one (a conflict both policies report) or excluded are Idle, and get their final decision
// here, but for those the operator disrupted: scope returns them (see carryOn).
func scope(in Input, passes []*policyPass, idx *selectorIndex, governed []int32, out []NodeDecision) (disrupted []int) {
	pairs := map[[2]int]struct{}{}
	matched := make([]int, 0, len(passes))
	sizeMembers(passes, governed)
	for i := range in.Nodes {
		n := in.Nodes[i].Node
		d := &out[i]
		d.Name = n.Name
		if brn := in.Nodes[i].BRN; brn != nil {
			d.From = brn.Status.Phase
		}
		switch g := governed[i]; {
		case g >= 0:
			passes[g].members = append(passes[g].members, i)
			continue
		case g == selectedByNone:
			idle(d, v1alpha1.ReasonNotGoverned, "no UpdatePolicy selects this node")
		case g == selectedBySeveral:
			matched = idx.matching(n, matched[:0])
			for _, a := range matched {
				for _, b := range matched {
					if a != b {
						pairs[[2]int{a, b}] = struct{}{}
					}
				}
			}
			idle(d, v1alpha1.ReasonPolicyConflict, conflictMessage(passes, matched))
		case g == excludedByPerson:
			idle(d, v1alpha1.ReasonExcluded, "annotation "+v1alpha1.AnnotationExclude+"=true keeps this node from updates")
		}
		if brn := in.Nodes[i].BRN; brn != nil && brn.Status.Phase.Unavailable() {
			disrupted = append(disrupted, i)
		}
	}
	for pair := range pairs {
		r := &passes[pair[0]].report
		r.ConflictsWith = append(r.ConflictsWith, passes[pair[1]].policy.Name)
	}
	for _, p := range passes {
		slices.Sort(p.report.ConflictsWith)
	}
	return disrupted
}

// sizeMembers makes each policy's members room for the nodes it governs.
func sizeMembers(passes []*policyPass, governed []int32) {
	counts := make([]int, len(passes))
	for _, g := range governed {
		if g >= 0 {
			counts[g]++
		}
	}
	for j, p := range passes {
		p.members = make([]int, 0, counts[j])
	}
}

// What selectorIndex.classify says of a node no policy governs.
const (
	selectedByNone    = -1
	selectedBySeveral = -2
	excludedByPerson  = -3 // selected by one policy
)

// selectorIndex evaluates every policy's selector on a node reading each label key once: with
// ten policies over 100,000 nodes, looking the key up again for each policy was most of what
// giving nodes to policies cost.
type selectorIndex struct {
	keys   []string               // the label keys any selector reads
	reqs   [][]indexedRequirement // per policy; nil with an invalid selector: matches nothing
	values []keyValue             // the node's value of each key, parallel to keys
}

type indexedRequirement struct {
	key int // in selectorIndex.keys
	req labels.Requirement
}

// keyValue is one label of a node as labels.Labels: a requirement asks only for its own key.
type keyValue struct {
	value string
	has   bool
}

func (kv *keyValue) Has(string) bool              { return kv.has }
func (kv *keyValue) Get(string) string            { return kv.value }
func (kv *keyValue) Lookup(string) (string, bool) { return kv.value, kv.has }

func newSelectorIndex(passes []*policyPass) *selectorIndex {
	x := &selectorIndex{reqs: make([][]indexedRequirement, len(passes))}
	keyOf := map[string]int{}
	for j, p := range passes {
		if p.selector == nil {
			continue
		}
		reqs, selectable := p.selector.Requirements()
		if !selectable {
			continue
		}
		x.reqs[j] = make([]indexedRequirement, 0, len(reqs))
		for _, r := range reqs {
			k, ok := keyOf[r.Key()]
			if !ok {
				k = len(x.keys)
				keyOf[r.Key()] = k
				x.keys = append(x.keys, r.Key())
			}
			x.reqs[j] = append(x.reqs[j], indexedRequirement{key: k, req: r})
		}
	}
	x.values = make([]keyValue, len(x.keys))
	return x
}

// matching appends to buf the indices of the policies whose selector selects the node.
func (x *selectorIndex) matching(n *corev1.Node, buf []int) []int {
	for k, key := range x.keys {
		x.values[k].value, x.values[k].has = n.Labels[key]
	}
	for j, reqs := range x.reqs {
		if reqs == nil {
			continue
		}
		matches := true
		for r := range reqs {
			if !reqs[r].req.Matches(&x.values[reqs[r].key]) {
				matches = false
				break
			}
		}
		if matches {
			buf = append(buf, j)
		}
	}
	return buf
}

// classify returns the index of the policy governing the node, or why none does
// (selectedByNone, selectedBySeveral, excludedByPerson).
func (x *selectorIndex) classify(n *corev1.Node) int32 {
	var buf [2]int
	switch matched := x.matching(n, buf[:0]); {
	case len(matched) == 0:
		return selectedByNone
	case len(matched) > 1:
		return selectedBySeveral
	case excluded(n):
		return excludedByPerson
	default:
		return int32(matched[0])
	}
}

// governor returns the index of the policy governing the node, or -1 when none does (no
// policy or several select it, or a person excluded it), as scope decides.
func (x *selectorIndex) governor(n *corev1.Node) int {
	return int(max(x.classify(n), -1))
}

// conflictMessage names the policies that select a node.
func conflictMessage(passes []*policyPass, matched []int) string {
	names := make([]string, len(matched))
	for i, j := range matched {
		names[i] = passes[j].policy.Name
	}
	slices.Sort(names)
	return fmt.Sprintf("selected by several UpdatePolicies (%s): governed by none", strings.Join(names, ", "))
}

// idle makes d a node the planner does not move.
func idle(d *NodeDecision, reason v1alpha1.Reason, message string) {
	d.Phase, d.Action = v1alpha1.PhaseIdle, v1alpha1.ActionNone
	d.Reason, d.Message = reason, message
}
