package controllers

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers/internal/planner"
	"github.com/bottlerocket-ops/update-operator/internal/kubeutil"
)

// fleetEntry is one node as a pass reads it: its Node and BottlerocketNode (the cache's own
// objects: never changed in place), and what a pass derives of its Node, derived once per
// change of the Node rather than once per pass.
type fleetEntry struct {
	name string
	node *corev1.Node               // nil: the Node is gone (or not seen yet)
	brn  *v1alpha1.BottlerocketNode // nil: not created yet
	// supported: the Node runs a Bottlerocket with the update API the agent drives.
	supported bool
	// schedulable: the Node is Ready and not cordoned: it could take evicted pods.
	schedulable bool
}

// setNode records n (nil: gone) and derives what a pass reads of it.
func (e *fleetEntry) setNode(n *corev1.Node) {
	e.node, e.supported, e.schedulable = n, false, false
	if n == nil {
		return
	}
	version, bottlerocket := bottlerocketVersion(n)
	e.supported = bottlerocket && v1alpha1.CompareVersions(version, minSupportedVersion) >= 0
	e.schedulable = !kubeutil.NodeUnavailable(n)
}

// fleetIndex keeps every Node with its BottlerocketNode, paired by name, from the cache's
// events: a pass reads them in name order without listing, copying, sorting or pairing
// 15,000 objects each time (which, with the deep copies gone, was most of a pass).
type fleetIndex struct {
	mu     sync.Mutex
	byName map[string]*fleetEntry
	sorted []*fleetEntry // nil once a name comes or goes, until the next snapshot sorts again
}

func newFleetIndex() *fleetIndex {
	return &fleetIndex{byName: map[string]*fleetEntry{}}
}

// put records a Node or BottlerocketNode as the cache now holds it.
func (x *fleetIndex) put(obj client.Object) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.byName[obj.GetName()]
	if e == nil {
		e = &fleetEntry{name: obj.GetName()}
		x.byName[e.name], x.sorted = e, nil
	}
	switch o := obj.(type) {
	case *corev1.Node:
		e.setNode(o)
	case *v1alpha1.BottlerocketNode:
		e.brn = o
	}
}

// remove forgets a deleted Node or BottlerocketNode.
func (x *fleetIndex) remove(obj client.Object) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.byName[obj.GetName()]
	if e == nil {
		return
	}
	switch obj.(type) {
	case *corev1.Node:
		e.setNode(nil)
	case *v1alpha1.BottlerocketNode:
		e.brn = nil
	}
	if e.node == nil && e.brn == nil {
		delete(x.byName, e.name)
		x.sorted = nil
	}
}

// snapshot returns every entry, in name order, as the index holds them now.
func (x *fleetIndex) snapshot() []fleetEntry {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.sorted == nil {
		x.sorted = slices.SortedFunc(maps.Values(x.byName), byEntryName)
	}
	out := make([]fleetEntry, len(x.sorted))
	for i, e := range x.sorted {
		out[i] = *e
	}
	return out
}

func byEntryName(a, b *fleetEntry) int { return strings.Compare(a.name, b.name) }

// fleetHandler keeps the index and starts a pass on every change of a Node or
// BottlerocketNode that a pass reads. The index is updated before the pass is asked for, so
// that the pass sees the change; and the controller starts its passes only once the handler
// has heard of every object the cache held at its start.
type fleetHandler struct {
	index *fleetIndex
}

var _ handler.EventHandler = fleetHandler{}

func (h fleetHandler) Create(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.index.put(e.Object)
	q.Add(fleetRequest)
}

// Update replans unless the object is a Node whose update changes nothing a pass reads (see
// nodeChanged): a kubelet posts its status again every few minutes with nothing but new
// heartbeat times, and across a fleet of 15,000 such updates each replanning the fleet kept
// the controller busy. The index takes the new object all the same: it is what the cache
// holds, and what a cordon's patch must start from.
func (h fleetHandler) Update(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.index.put(e.ObjectNew)
	a, okA := e.ObjectOld.(*corev1.Node)
	b, okB := e.ObjectNew.(*corev1.Node)
	if !okA || !okB || nodeChanged(a, b) {
		q.Add(fleetRequest)
	}
}

func (h fleetHandler) Delete(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.index.remove(e.Object)
	q.Add(fleetRequest)
}

func (h fleetHandler) Generic(_ context.Context, _ event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	q.Add(fleetRequest)
}

// pairByName builds a pass's entries from lists of Nodes and BottlerocketNodes: for a
// forecast, and for a pass that had to read the BottlerocketNodes from the API server.
func pairByName(nodes []*corev1.Node, brns []*v1alpha1.BottlerocketNode) []fleetEntry {
	byName := make(map[string]*fleetEntry, len(nodes))
	entries := make([]*fleetEntry, 0, len(nodes))
	entry := func(name string) *fleetEntry {
		e := byName[name]
		if e == nil {
			e = &fleetEntry{name: name}
			byName[name] = e
			entries = append(entries, e)
		}
		return e
	}
	for _, n := range nodes {
		entry(n.Name).setNode(n)
	}
	for _, b := range brns {
		entry(b.Name).brn = b
	}
	slices.SortFunc(entries, byEntryName)
	out := make([]fleetEntry, len(entries))
	for i, e := range entries {
		out[i] = *e
	}
	return out
}

// pointers returns a pointer to each item of a list.
func pointers[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

// nodesOf and brnsOf return the Nodes and the BottlerocketNodes of a pass's entries.
func nodesOf(entries []fleetEntry) []*corev1.Node {
	return present(entries, func(e *fleetEntry) *corev1.Node { return e.node })
}

func brnsOf(entries []fleetEntry) []*v1alpha1.BottlerocketNode {
	return present(entries, func(e *fleetEntry) *v1alpha1.BottlerocketNode { return e.brn })
}

// present returns the objects that entries hold, leaving out those they do not.
func present[T any](entries []fleetEntry, object func(*fleetEntry) *T) []*T {
	out := make([]*T, 0, len(entries))
	for i := range entries {
		if o := object(&entries[i]); o != nil {
			out = append(out, o)
		}
	}
	return out
}

// plannerInput is the planner's input from a pass's entries (in name order): every supported
// Bottlerocket Node with its BottlerocketNode, the BottlerocketNodes of Nodes deleted
// mid-update, and how many Nodes (of any OS) could take evicted pods. The controller and
// ForecastRollout build it alike.
func plannerInput(now time.Time, entries []fleetEntry, active []v1alpha1.UpdatePolicy, controllerNode string) planner.Input {
	// The policies in name order, whichever list they came from (the cache's is in any order):
	// the planner's Memo holds what it found of them in the order given.
	in := planner.Input{Now: now, ControllerNode: controllerNode, Nodes: make([]planner.NodeState, 0, len(entries)),
		Policies: slices.SortedFunc(slices.Values(active), func(a, b v1alpha1.UpdatePolicy) int { return strings.Compare(a.Name, b.Name) })}
	for i := range entries {
		e := &entries[i]
		switch {
		case e.node == nil:
			if e.brn != nil && planner.DeletedMidUpdate(e.brn) {
				in.Deleted = append(in.Deleted, e.brn)
			}
			continue
		case e.schedulable:
			in.SchedulableNodes++
		}
		if e.supported {
			in.Nodes = append(in.Nodes, planner.NodeState{Node: e.node, BRN: e.brn})
		}
	}
	return in
}
