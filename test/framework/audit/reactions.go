package audit

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"time"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// Identities say who, in the audit log, are the controller and the agents; they must differ.
type Identities struct {
	// Controller is the user name the controller authenticates as.
	Controller string
	// Agent is the user name the agents authenticate as; each agent's node is in its user's
	// extra, under NodeExtra (a token bound to the agent's pod on that node).
	Agent     string
	NodeExtra string
}

// Evidence is a kind of evidence about a node that a phase transition waits on.
type Evidence string

// The kinds of evidence.
const (
	// Entered is the controller's own write that put the node in the phase it leaves: what
	// the transition waits on may all have been there before it.
	Entered Evidence = "entering the phase"
	// AgentStaged is an agent's report that changed what Staging reads of it: the generation
	// it acted on, its last action, the versions staged and running.
	AgentStaged Evidence = "the agent's report of its staging"
	// LastPodGone is the removal of a pod the controller evicted from the node: the drain
	// ends when none is left, so the latest before its end is the last pod gone.
	LastPodGone Evidence = "the last pod gone"
	// AgentBooted is an agent's report that changed its boot ID or its reboot record.
	AgentBooted Evidence = "the agent's report of a new boot"
	// NodeReady is the Node turning Ready.
	NodeReady Evidence = "the Node turning Ready"
	// AgentRunning is an agent's report that changed the version running.
	AgentRunning Evidence = "the agent's report of the version running"
)

// agentEvidence says, for each kind of evidence in an agent's report, what of the report a
// transition reads (controllers/internal/planner/lifecycle.go): a report that changes none of
// it is no evidence of that kind, such as a periodic report of a node waiting its turn.
var agentEvidence = []struct {
	kind  Evidence
	reads func(*v1alpha1.AgentStatus) any
}{
	{AgentStaged, func(a *v1alpha1.AgentStatus) any {
		return []any{a.ObservedGeneration, a.LastAction, a.StagedVersion, a.CurrentVersion}
	}},
	{AgentBooted, func(a *v1alpha1.AgentStatus) any { return []any{a.BootID, a.RebootRecord} }},
	{AgentRunning, func(a *v1alpha1.AgentStatus) any { return a.CurrentVersion }},
}

// Transition is a change of a node's phase; From is empty for the first phase written.
type Transition struct {
	From, To v1alpha1.NodePhase
}

func (t Transition) String() string { return string(t.From) + "→" + string(t.To) }

// reactive are the transitions the controller makes on evidence about the node, in the
// lifecycle's order, with the evidence each waits on besides Entered (the planner's step of
// the phase left, in controllers/internal/planner/lifecycle.go). Rebooting→Verifying reads
// the agent's report alone, not the Node. The other transitions wait on admission (Pending→
// Staging, Staged→Draining: waves, budgets, windows, pauses) or on time (Stabilizing→Updated:
// health.stableFor), or are failures.
var reactive = []reactiveTransition{
	{Transition{v1alpha1.PhaseStaging, v1alpha1.PhaseStaged}, []Evidence{AgentStaged}},
	{Transition{v1alpha1.PhaseDraining, v1alpha1.PhaseRebooting}, []Evidence{LastPodGone}},
	{Transition{v1alpha1.PhaseRebooting, v1alpha1.PhaseVerifying}, []Evidence{AgentBooted}},
	{Transition{v1alpha1.PhaseVerifying, v1alpha1.PhaseStabilizing}, []Evidence{NodeReady, AgentRunning}},
}

type reactiveTransition struct {
	t        Transition
	evidence []Evidence
}

// Reaction is how soon the controller wrote one kind of transition once it had what the
// transition waits on.
type Reaction struct {
	Transition
	// Evidence is what the transition waits on, besides Entered.
	Evidence []Evidence
	// Times are, in ascending order, the time from the latest evidence before each write of
	// the transition to the write's completion.
	Times []time.Duration
	// Latest counts the writes by the kind of their latest evidence.
	Latest map[Evidence]int
}

// Percentile is the p-th percentile of Times (nearest rank), zero without any.
func (r Reaction) Percentile(p float64) time.Duration {
	if len(r.Times) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(r.Times))))
	return r.Times[min(max(rank, 1), len(r.Times))-1]
}

// Reactions are the controller's reaction times in an audit log.
type Reactions struct {
	// Measured are the transitions made on evidence, in the lifecycle's order, each measured
	// or not.
	Measured []Reaction
	// Unmeasured counts the controller's other phase changes, by transition.
	Unmeasured map[Transition]int
}

// ReadReactions measures the controller's reaction times in an audit log and its rotated
// backups (see ReactionsOf).
func ReadReactions(path string, who Identities) (Reactions, error) {
	var events []Event
	_, err := Count(path, func(ev Event) bool {
		switch ev.ObjectRef.Resource {
		case "nodes", "bottlerocketnodes", "pods":
			events = append(events, ev)
		}
		return false
	})
	if err != nil {
		return Reactions{}, err
	}
	return ReactionsOf(events, who)
}

// ReactionsOf measures the controller's reaction times in the completed requests of an audit
// log, taken in the order the API server completed them. A phase change is a successful write
// by the controller to a BottlerocketNode's status whose body sets status.phase to another
// phase than its last such write set. For each change of a transition made on evidence (see
// reactive), the reaction time runs from the completion of the latest request of the evidence
// it waits on, or of the change that entered the phase it leaves if that is later, to the
// change's completion. Evidence counts only if it completed before the API server received
// the change: the controller cannot have acted on what came later. The evidence:
//
//   - AgentStaged, AgentBooted, AgentRunning: a successful write by the node's agent to its
//     BottlerocketNode's status (a server-side apply of the whole status.agent) that changed
//     what the transition reads of the agent's previous report (see agentEvidence).
//   - NodeReady: a successful write to the Node's status that sets its Ready condition True
//     after the log last had it otherwise. kwok and the harness send strategic merge patches,
//     in which, as in a whole object, the conditions written are listed by type. A Node whose
//     Ready condition the log has not shown yet (a new one) is not known to have been
//     otherwise.
//   - LastPodGone: the removal of a pod bound to the node that the controller asked to evict,
//     whatever the answer (the pods it leaves alone, such as DaemonSets', are not the drain's).
//     A pod is removed by a deletion with a grace period of 0 (by its kubelet, here kwok, once
//     its containers stopped); another only marks it terminating.
//
// The log must hold the bodies (Request level) of the writes to BottlerocketNodes' and Nodes'
// status, of pods' bindings (which name the node) and of their deletions.
func ReactionsOf(events []Event, who Identities) (Reactions, error) {
	done := slices.Clone(events)
	slices.SortStableFunc(done, func(a, b Event) int { return a.StageTimestamp.Compare(b.StageTimestamp) })
	r := reader{who: who, evidence: map[string][]sighting{}, phase: map[string]v1alpha1.NodePhase{},
		agent: map[string]*v1alpha1.AgentStatus{}, ready: map[string]bool{}, pods: map[string]*boundPod{}}
	for i := range done {
		if err := r.read(&done[i]); err != nil {
			return Reactions{}, err
		}
	}
	return r.reactions(), nil
}

// reader reads a log's events in order.
type reader struct {
	who Identities
	// evidence is what the log showed of each node, by node.
	evidence map[string][]sighting
	// changes are the controller's phase changes, in order; phase is each node's last phase.
	changes []change
	phase   map[string]v1alpha1.NodePhase
	// agent is each node's agent's last report.
	agent map[string]*v1alpha1.AgentStatus
	// ready is the status of each Node's Ready condition the log last showed.
	ready map[string]bool
	// pods are the pods bound to a node now, by namespace/name.
	pods map[string]*boundPod
}

type sighting struct {
	kind Evidence
	at   time.Time
}

// change is a phase change written by the controller: received and completed by the API
// server at these times.
type change struct {
	Transition
	node           string
	received, done time.Time
}

// boundPod is a pod bound to a node, until its removal.
type boundPod struct {
	node string
	// evicted: the controller asked to evict it.
	evicted bool
}

func succeeded(ev *Event) bool { return ev.ResponseStatus.Code/100 == 2 }

func (r *reader) saw(kind Evidence, node string, at time.Time) {
	r.evidence[node] = append(r.evidence[node], sighting{kind, at})
}

func (r *reader) read(ev *Event) error {
	ref := &ev.ObjectRef
	switch ev.User.Username {
	case r.who.Controller:
		return r.byController(ev)
	case r.who.Agent:
		if succeeded(ev) && ref.Resource == "bottlerocketnodes" && ref.Subresource == "status" &&
			slices.Equal(ev.User.Extra[r.who.NodeExtra], []string{ref.Name}) {
			return r.agentReport(ev)
		}
		return nil
	}
	if !succeeded(ev) {
		return nil
	}
	switch ref.Resource + "/" + ref.Subresource {
	case "nodes/status":
		return r.nodeStatus(ev)
	case "pods/binding":
		return r.bound(ev)
	case "pods/":
		if ev.Verb == "delete" {
			return r.deleted(ev)
		}
	}
	return nil
}

// byController reads a request of the controller's: an eviction (asked, whatever the answer),
// or a successful write to a BottlerocketNode's status, which may change its phase.
func (r *reader) byController(ev *Event) error {
	ref := &ev.ObjectRef
	switch {
	case ref.Resource == "pods" && ref.Subresource == "eviction":
		if pod := r.pods[ref.Namespace+"/"+ref.Name]; pod != nil {
			pod.evicted = true
		}
	case succeeded(ev) && ev.Write() && ref.Resource == "bottlerocketnodes" && ref.Subresource == "status":
		var body struct {
			Status struct {
				Phase v1alpha1.NodePhase `json:"phase"`
			} `json:"status"`
		}
		if err := decodeBody(ev, &body); err != nil {
			return err
		}
		node, to := ref.Name, body.Status.Phase
		if to == "" || to == r.phase[node] {
			return nil // a merge patch names the phase only when it changes it
		}
		r.changes = append(r.changes, change{Transition{r.phase[node], to}, node, ev.RequestReceived, ev.StageTimestamp})
		r.phase[node] = to
		r.saw(Entered, node, ev.StageTimestamp)
	}
	return nil
}

// agentReport reads an agent's report of its own node for what changed in it.
func (r *reader) agentReport(ev *Event) error {
	var body struct {
		Status struct {
			Agent *v1alpha1.AgentStatus `json:"agent"`
		} `json:"status"`
	}
	if err := decodeBody(ev, &body); err != nil {
		return err
	}
	node, report := ev.ObjectRef.Name, body.Status.Agent
	if report == nil {
		report = &v1alpha1.AgentStatus{}
	}
	previous := r.agent[node]
	if previous == nil {
		previous = &v1alpha1.AgentStatus{}
	}
	for _, e := range agentEvidence {
		if !reflect.DeepEqual(e.reads(previous), e.reads(report)) {
			r.saw(e.kind, node, ev.StageTimestamp)
		}
	}
	r.agent[node] = report
	return nil
}

// decodeBody decodes a request's body, which the log must hold.
func decodeBody(ev *Event, into any) error {
	ref, at := &ev.ObjectRef, ev.StageTimestamp.Format(time.RFC3339Nano)
	what := fmt.Sprintf("the %s of %s/%s %s at %s", ev.Verb, ref.Resource, ref.Subresource, ref.Name, at)
	if len(ev.RequestObject) == 0 {
		return fmt.Errorf("%s is recorded without its body: record %s/%s writes at Request level", what, ref.Resource, ref.Subresource)
	}
	if err := json.Unmarshal(ev.RequestObject, into); err != nil {
		return fmt.Errorf("reading %s: %w", what, err)
	}
	return nil
}

// nodeStatus reads a write to a Node's status for its Ready condition.
func (r *reader) nodeStatus(ev *Event) error {
	var body struct {
		Status struct {
			Conditions []struct {
				Type   string `json:"type"`
				Status string `json:"status"`
			} `json:"conditions"`
		} `json:"status"`
	}
	if err := decodeBody(ev, &body); err != nil {
		return err
	}
	node := ev.ObjectRef.Name
	for _, c := range body.Status.Conditions {
		if c.Type != "Ready" {
			continue
		}
		ready := c.Status == "True"
		if was, known := r.ready[node]; known && !was && ready {
			r.saw(NodeReady, node, ev.StageTimestamp)
		}
		r.ready[node] = ready
	}
	return nil
}

// bound reads a pod's binding to a node.
func (r *reader) bound(ev *Event) error {
	var body struct {
		Target struct {
			Name string `json:"name"`
		} `json:"target"`
	}
	if err := decodeBody(ev, &body); err != nil {
		return err
	}
	if body.Target.Name == "" {
		return fmt.Errorf("the binding of pod %s/%s at %s names no node",
			ev.ObjectRef.Namespace, ev.ObjectRef.Name, ev.StageTimestamp.Format(time.RFC3339Nano))
	}
	r.pods[ev.ObjectRef.Namespace+"/"+ev.ObjectRef.Name] = &boundPod{node: body.Target.Name}
	return nil
}

// deleted reads a pod's deletion: with a grace period of 0 it removes the pod.
func (r *reader) deleted(ev *Event) error {
	var opts struct {
		GracePeriodSeconds *int64 `json:"gracePeriodSeconds"`
	}
	if len(ev.RequestObject) > 0 { // a deletion without options has a grace period
		if err := decodeBody(ev, &opts); err != nil {
			return err
		}
	}
	key := ev.ObjectRef.Namespace + "/" + ev.ObjectRef.Name
	if pod := r.pods[key]; pod != nil && opts.GracePeriodSeconds != nil && *opts.GracePeriodSeconds == 0 {
		if pod.evicted {
			r.saw(LastPodGone, pod.node, ev.StageTimestamp)
		}
		delete(r.pods, key)
	}
	return nil
}

// reactions measures each phase change of a transition made on evidence, and counts the others.
func (r *reader) reactions() Reactions {
	out := Reactions{Measured: make([]Reaction, len(reactive)), Unmeasured: map[Transition]int{}}
	for i, re := range reactive {
		out.Measured[i] = Reaction{Transition: re.t, Evidence: re.evidence, Latest: map[Evidence]int{}}
	}
	for _, c := range r.changes {
		i := slices.IndexFunc(reactive, func(re reactiveTransition) bool { return re.t == c.Transition })
		if i < 0 {
			out.Unmeasured[c.Transition]++
			continue
		}
		m := &out.Measured[i]
		latest := r.latest(c, append([]Evidence{Entered}, m.Evidence...))
		m.Times = append(m.Times, c.done.Sub(latest.at))
		m.Latest[latest.kind]++
	}
	for i := range out.Measured {
		slices.Sort(out.Measured[i].Times)
	}
	return out
}

// latest returns the node's latest evidence of these kinds that completed before the API
// server received the change. There is one: the change that entered the phase it leaves.
func (r *reader) latest(c change, kinds []Evidence) sighting {
	var last sighting
	for _, s := range r.evidence[c.node] {
		if slices.Contains(kinds, s.kind) && !s.at.After(c.received) && !s.at.Before(last.at) {
			last = s
		}
	}
	return last
}
