package invariants

import (
	"maps"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// Verdict is one instant's budgets judged (see Instant) on a view that may be torn. A watcher
// follows one watch per kind, each with its own delay — seconds apart while the watches resume
// after an API server restart — so its view can hold Nodes newer than BottlerocketNodes. The
// resource versions of one API server are its etcd's revisions, one sequence for every kind: a
// version no newer than the view's newest object but newer than the view's own copy was
// already stored when the view was taken, and corrects it. A verdict judged again once every
// kind's watch has passed Revision is the world's at that revision.
type Verdict struct {
	Peak       int
	Violations []Violation

	view    Snapshot
	charged map[string]string // the charges before the instant
	rev     int64
}

// Judge judges s like Instant and returns the verdict, to correct with late versions.
func (c *Checker) Judge(s Snapshot) *Verdict {
	v := &Verdict{charged: maps.Clone(c.charged), rev: newest(s)}
	v.view = Snapshot{Now: s.Now, Policies: slices.Clone(s.Policies), Nodes: slices.Clone(s.Nodes)}
	v.Peak, v.Violations = c.Instant(s)
	return v
}

// Revision is the newest resource version in the verdict's view.
func (v *Verdict) Revision() int64 { return v.rev }

// Correct replaces the view's copy of obj (a Node, BottlerocketNode or UpdatePolicy) when obj
// is a later version that was already stored at the view's revision.
func (v *Verdict) Correct(obj client.Object) {
	rv := version(obj)
	if rv > v.rev {
		return
	}
	newer := func(old client.Object) bool { return old != nil && old.GetName() == obj.GetName() && version(old) < rv }
	switch o := obj.(type) {
	case *corev1.Node:
		for i := range v.view.Nodes {
			if newer(v.view.Nodes[i].Node) {
				v.view.Nodes[i].Node = o
			}
		}
	case *v1alpha1.BottlerocketNode:
		for i := range v.view.Nodes {
			if b := v.view.Nodes[i].BRN; b != nil && newer(b) {
				v.view.Nodes[i].BRN = o
			}
		}
	case *v1alpha1.UpdatePolicy:
		for i := range v.view.Policies {
			if newer(&v.view.Policies[i]) {
				v.view.Policies[i] = *o
			}
		}
	}
}

// Judge judges the view as corrected so far, with the charges from before its instant.
func (v *Verdict) Judge() (peak int, out []Violation) {
	c := &Checker{charged: maps.Clone(v.charged)}
	return c.Instant(v.view)
}

// newest is the newest resource version of the objects in s.
func newest(s Snapshot) int64 {
	var rv int64
	for i := range s.Policies {
		rv = max(rv, version(&s.Policies[i]))
	}
	for _, n := range s.Nodes {
		rv = max(rv, version(n.Node))
		if n.BRN != nil {
			rv = max(rv, version(n.BRN))
		}
	}
	return rv
}

// version is obj's resource version as a revision (0 if it is not one).
func version(obj client.Object) int64 {
	rv, _ := strconv.ParseInt(obj.GetResourceVersion(), 10, 64)
	return rv
}

// View is the verdict's view as corrected so far.
func (v *Verdict) View() Snapshot { return v.view }
