package audit

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
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

// Evidence is a kind of evidence about a node the controller reacts to.
type Evidence string

// The kinds of evidence, in the order Reactions returns them.
const (
	AgentReport Evidence = "the agent's report"
	NodeReady   Evidence = "the Node turning Ready"
	LastPodGone Evidence = "the last pod gone"
)

var kinds = []Evidence{AgentReport, NodeReady, LastPodGone}

// Reaction is how soon the controller reacted to one kind of evidence.
type Reaction struct {
	Evidence Evidence
	// Times are, in ascending order, the time from each piece of evidence to the controller's
	// next write for its node.
	Times []time.Duration
	// Unanswered counts the pieces of evidence the log has no controller write after.
	Unanswered int
}

// Percentile is the p-th percentile of Times (nearest rank), zero without any.
func (r Reaction) Percentile(p float64) time.Duration {
	if len(r.Times) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(r.Times))))
	return r.Times[min(max(rank, 1), len(r.Times))-1]
}

// ReadReactions measures the controller's reaction times in an audit log and its rotated
// backups (see Reactions).
func ReadReactions(path string, who Identities) ([]Reaction, error) {
	var events []Event
	_, err := Count(path, func(ev Event) bool {
		switch ev.ObjectRef.Resource {
		case "nodes", "bottlerocketnodes", "pods":
			events = append(events, ev)
		}
		return false
	})
	if err != nil {
		return nil, err
	}
	return Reactions(events, who)
}

// Reactions measures the controller's reaction times in the completed requests of an audit
// log, taken in the order the API server completed them: for each piece of evidence about a
// node, the time from the completion of its request to the completion of the controller's next
// successful write for that node (its BottlerocketNode, spec or status, or its Node). Only that
// first write answers it; evidence with none after it is counted as unanswered. The evidence:
//
//   - AgentReport: a successful write by the node's agent to its BottlerocketNode's status.
//   - NodeReady: a successful write to the Node's status that sets its Ready condition True
//     after the log last had it otherwise. The log must hold these writes' bodies (Request
//     level): kwok and the harness send strategic merge patches, in which, as in a whole
//     object, the conditions written are listed by type. A Node whose Ready condition the log
//     has not shown yet (a new one) is not known to have been otherwise.
//   - LastPodGone: the removal of the last pod bound to the node that the controller evicts,
//     whatever the answer (the pods it leaves alone, such as DaemonSets', are not the drain's).
//     The log must hold the bodies of pods' bindings, which name the node, and of their
//     deletions: a pod is removed by a deletion with a grace period of 0 (by its kubelet, here
//     kwok, once its containers stopped); another only marks it terminating.
func Reactions(events []Event, who Identities) ([]Reaction, error) {
	done := slices.Clone(events)
	slices.SortStableFunc(done, func(a, b Event) int { return a.StageTimestamp.Compare(b.StageTimestamp) })
	r := reader{who: who, answers: map[string][]time.Time{}, ready: map[string]bool{}, pods: map[string]*podLife{}}
	for seq := range done {
		if err := r.read(&done[seq], seq); err != nil {
			return nil, err
		}
	}
	r.lastPodsGone()
	return r.reactions(), nil
}

// reader reads a log's events in order.
type reader struct {
	who      Identities
	evidence []sighting
	// answers are the times of the controller's writes for each node, ascending.
	answers map[string][]time.Time
	// ready is the status of each Node's Ready condition the log last showed.
	ready map[string]bool
	// pods are the pods bound to a node now, by namespace/name; lives every pod ever bound,
	// in the order bound.
	pods  map[string]*podLife
	lives []*podLife
}

type sighting struct {
	kind Evidence
	node string
	at   time.Time
}

// podLife is a pod from its binding to a node to its removal, as places in the events' order.
type podLife struct {
	node string
	// gone is 0 while the pod exists: no removal is the first event, as a binding precedes it.
	bound, gone      int
	goneAt           time.Time
	evictedByControl bool
}

func succeeded(ev *Event) bool { return ev.ResponseStatus.Code/100 == 2 }

func (r *reader) read(ev *Event, seq int) error {
	ref := &ev.ObjectRef
	switch ev.User.Username {
	case r.who.Controller:
		r.byController(ev)
		return nil
	case r.who.Agent:
		if succeeded(ev) && ref.Resource == "bottlerocketnodes" && ref.Subresource == "status" &&
			slices.Equal(ev.User.Extra[r.who.NodeExtra], []string{ref.Name}) {
			r.evidence = append(r.evidence, sighting{AgentReport, ref.Name, ev.StageTimestamp})
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
		return r.bound(ev, seq)
	case "pods/":
		if ev.Verb == "delete" {
			return r.deleted(ev, seq)
		}
	}
	return nil
}

// byController reads a request of the controller's: an eviction (asked, whatever the answer),
// or a write answering the evidence about a node.
func (r *reader) byController(ev *Event) {
	ref := &ev.ObjectRef
	switch {
	case ref.Resource == "pods" && ref.Subresource == "eviction":
		if life := r.pods[ref.Namespace+"/"+ref.Name]; life != nil {
			life.evictedByControl = true
		}
	case succeeded(ev) && ev.Write() && (ref.Resource == "nodes" || ref.Resource == "bottlerocketnodes"):
		r.answers[ref.Name] = append(r.answers[ref.Name], ev.StageTimestamp)
	}
}

// nodeStatus reads a write to a Node's status for its Ready condition.
func (r *reader) nodeStatus(ev *Event) error {
	node := ev.ObjectRef.Name
	if len(ev.RequestObject) == 0 {
		return fmt.Errorf("the %s of Node %s's status at %s is recorded without its body: record Nodes' status writes at Request level",
			ev.Verb, node, ev.StageTimestamp.Format(time.RFC3339Nano))
	}
	var body struct {
		Status struct {
			Conditions []struct {
				Type   string `json:"type"`
				Status string `json:"status"`
			} `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal(ev.RequestObject, &body); err != nil {
		return fmt.Errorf("reading the Ready condition in the %s of Node %s's status at %s: %w",
			ev.Verb, node, ev.StageTimestamp.Format(time.RFC3339Nano), err)
	}
	for _, c := range body.Status.Conditions {
		if c.Type != "Ready" {
			continue
		}
		ready := c.Status == "True"
		if was, known := r.ready[node]; known && !was && ready {
			r.evidence = append(r.evidence, sighting{NodeReady, node, ev.StageTimestamp})
		}
		r.ready[node] = ready
	}
	return nil
}

// bound reads a pod's binding to a node.
func (r *reader) bound(ev *Event, seq int) error {
	var body struct {
		Target struct {
			Name string `json:"name"`
		} `json:"target"`
	}
	pod, at := ev.ObjectRef.Namespace+"/"+ev.ObjectRef.Name, ev.StageTimestamp.Format(time.RFC3339Nano)
	if len(ev.RequestObject) == 0 {
		return fmt.Errorf("the binding of pod %s at %s is recorded without its body: record pods' bindings at Request level", pod, at)
	}
	if err := json.Unmarshal(ev.RequestObject, &body); err != nil {
		return fmt.Errorf("reading the node in the binding of pod %s at %s: %w", pod, at, err)
	}
	if body.Target.Name == "" {
		return fmt.Errorf("the binding of pod %s at %s names no node", pod, at)
	}
	life := &podLife{node: body.Target.Name, bound: seq}
	r.pods[pod] = life
	r.lives = append(r.lives, life)
	return nil
}

// deleted reads a pod's deletion: with a grace period of 0 it removes the pod.
func (r *reader) deleted(ev *Event, seq int) error {
	var opts struct {
		GracePeriodSeconds *int64 `json:"gracePeriodSeconds"`
	}
	if len(ev.RequestObject) > 0 {
		if err := json.Unmarshal(ev.RequestObject, &opts); err != nil {
			return fmt.Errorf("reading the deletion of pod %s/%s at %s: %w",
				ev.ObjectRef.Namespace, ev.ObjectRef.Name, ev.StageTimestamp.Format(time.RFC3339Nano), err)
		}
	}
	key := ev.ObjectRef.Namespace + "/" + ev.ObjectRef.Name
	if life := r.pods[key]; life != nil && opts.GracePeriodSeconds != nil && *opts.GracePeriodSeconds == 0 {
		life.gone, life.goneAt = seq, ev.StageTimestamp
		delete(r.pods, key)
	}
	return nil
}

// lastPodsGone adds the evidence of each removal of a pod the controller evicts that leaves
// its node none of them.
func (r *reader) lastPodsGone() {
	drained := map[string][]*podLife{}
	for _, l := range r.lives {
		if l.evictedByControl {
			drained[l.node] = append(drained[l.node], l)
		}
	}
	for node, lives := range drained {
		for _, l := range lives {
			if l.gone == 0 {
				continue
			}
			left := slices.ContainsFunc(lives, func(o *podLife) bool {
				return o.bound < l.gone && (o.gone == 0 || o.gone > l.gone)
			})
			if !left {
				r.evidence = append(r.evidence, sighting{LastPodGone, node, l.goneAt})
			}
		}
	}
}

// reactions pairs each piece of evidence with the controller's first write for its node after it.
func (r *reader) reactions() []Reaction {
	out := make([]Reaction, len(kinds))
	for i, k := range kinds {
		out[i].Evidence = k
	}
	for _, s := range r.evidence {
		re := &out[slices.Index(kinds, s.kind)]
		answers := r.answers[s.node]
		next := sort.Search(len(answers), func(i int) bool { return answers[i].After(s.at) })
		if next == len(answers) {
			re.Unanswered++
			continue
		}
		re.Times = append(re.Times, answers[next].Sub(s.at))
	}
	for i := range out {
		slices.Sort(out[i].Times)
	}
	return out
}
