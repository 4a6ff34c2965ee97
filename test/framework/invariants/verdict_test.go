package invariants

import (
	"strconv"
	"testing"
)

func itoa(rv int) string { return strconv.Itoa(rv) }

// withVersions gives every object of s a resource version from rv up, in order, and returns
// the next free one.
func withVersions(s Snapshot, rv int) int {
	for i := range s.Policies {
		s.Policies[i].ResourceVersion = itoa(rv)
		rv++
	}
	for _, n := range s.Nodes {
		n.Node.ResourceVersion = itoa(rv)
		n.BRN.ResourceVersion = itoa(rv + 1)
		rv += 2
	}
	return rv
}

// A torn view: the watcher's Nodes are current but its BottlerocketNodes lag, so a node the
// controller already moved out of Draining still counts next to the node it admitted in its
// place (as after an API server restart, when each kind's watch resumes on its own).
func TestVerdictOnATornViewIsCorrectedByLateVersions(t *testing.T) {
	truth := stagedFleet(3)
	rv := withVersions(truth, 10)
	view := next(truth)
	// The world: n0 was drained and is back (Updated, uncordoned), n1 was admitted after it.
	back := truth.Nodes[0].BRN.DeepCopy()
	back.Status.Phase, back.ResourceVersion = "Updated", itoa(rv)
	admitted := truth.Nodes[1].BRN.DeepCopy()
	admitted.Status.Phase, admitted.ResourceVersion = "Draining", itoa(rv+1)
	cordon := truth.Nodes[1].Node.DeepCopy()
	cordon.Spec.Unschedulable, cordon.ResourceVersion = true, itoa(rv+2)
	// The view: n1's Node is cordoned (its newest revision), the BottlerocketNodes are the old
	// ones, n0 still Draining.
	view.Nodes[1].Node = cordon
	drain(view, 0)

	c := NewChecker()
	s := c.Judge(view)
	if len(s.Violations) == 0 {
		t.Fatal("the torn view shows 2 nodes down under maxUnavailable 1; judged fine")
	}
	s.Correct(admitted)
	if _, v := s.Judge(); len(v) == 0 {
		t.Fatal("n0's return has not arrived yet, still 2 down; judged fine")
	}
	s.Correct(back)
	if _, v := s.Judge(); len(v) != 0 {
		t.Fatalf("corrected to the world at the view's revision (n0 back, n1 down): %v", v)
	}
}

// A view that is not torn stays broken: versions newer than the view are later changes, not
// corrections.
func TestVerdictKeepsABudgetBrokenAtItsRevision(t *testing.T) {
	view := stagedFleet(3)
	drain(view, 0)
	drain(view, 1)
	rv := withVersions(view, 10)
	s := NewChecker().Judge(view)
	if len(s.Violations) == 0 {
		t.Fatal("2 nodes down under maxUnavailable 1: judged fine")
	}
	later := view.Nodes[0].BRN.DeepCopy()
	later.Status.Phase, later.ResourceVersion = "Updated", itoa(rv)
	s.Correct(later)
	if _, v := s.Judge(); len(v) == 0 {
		t.Fatal("a change written after the view erased the violation it showed")
	}
	if s.Revision() != int64(rv-1) {
		t.Fatalf("revision %d, want the view's newest %d", s.Revision(), rv-1)
	}
}

// Judging a verdict again uses the charges from before its instant and leaves the checker's
// own, which have moved on, alone.
func TestVerdictJudgesWithTheChargesOfItsInstant(t *testing.T) {
	view := stagedFleet(3)
	drain(view, 0)
	drain(view, 1)
	withVersions(view, 10)
	c := NewChecker()
	s := c.Judge(view)
	back := next(view)
	back.Nodes[0].BRN.Status.Phase, back.Nodes[1].BRN.Status.Phase = "Updated", "Updated"
	c.Judge(back)
	if _, v := s.Judge(); len(v) == 0 {
		t.Fatal("judged again after the checker saw the nodes back, the verdict lost its violation")
	}
	if len(c.charged) != 0 {
		t.Fatalf("judging an old verdict charged %v on the checker", c.charged)
	}
}
