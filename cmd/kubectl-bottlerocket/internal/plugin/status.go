package plugin

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"time"

	"k8s.io/cli-runtime/pkg/printers"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// examples is how many node names a group of held nodes shows.
const examples = 3

// Summary is what `status` prints about one policy.
type Summary struct {
	Policy   string
	Target   string
	Progress string
	Phase    string
	// Unavailable and Budget: governed nodes consuming the disruption budget, and
	// maxUnavailable resolved over the governed nodes.
	Unavailable int
	Budget      string
	// Wave is the current wave and its progress, "-" without a rollout.
	Wave string
	// Window says when disruption may start: "always", "open until …", or the next opening.
	Window string
	// ETA is status.estimatedCompletionTime for a person, "-" without one.
	ETA string
	// Held groups the nodes held back by reason, largest group first.
	Held []Group
}

// Group is the nodes held back for one reason.
type Group struct {
	Reason v1alpha1.Reason
	Nodes  []string
}

// Summarise derives a policy's summary from it and the BottlerocketNodes, at now; the ETA is
// shown in loc.
func Summarise(p *v1alpha1.UpdatePolicy, nodes []v1alpha1.BottlerocketNode, now time.Time, loc *time.Location) Summary {
	st := &p.Status
	s := Summary{
		Policy: p.Name, Target: dash(st.TargetVersion), Progress: dash(st.Progress), Phase: dash(string(st.Phase)),
		Unavailable: int(st.Unavailable), Wave: "-",
	}
	if budget, err := p.Spec.MaxUnavailableOf(int(st.Nodes.Total)); err != nil {
		s.Budget = "invalid"
	} else {
		s.Budget = fmt.Sprint(budget)
	}
	wave := ""
	if w := currentWave(st.Waves); w != nil {
		wave = w.Name
		s.Wave = fmt.Sprintf("%s %d/%d", w.Name, w.Updated, w.Nodes)
	}
	s.Window = windowsAt(&p.Spec, wave, now).describe(now)
	s.ETA = "-"
	if eta := st.EstimatedCompletionTime; eta != nil {
		s.ETA = at(eta.Time, now, loc, "")
	}
	s.Held = held(p.Name, nodes)
	return s
}

// currentWave is the first wave of the rollout not yet complete (nil: none, or all complete).
func currentWave(waves []v1alpha1.WaveStatus) *v1alpha1.WaveStatus {
	for i := range waves {
		if waves[i].CompletionTime == nil {
			return &waves[i]
		}
	}
	return nil
}

// isHeld reports whether a governed node is held back: it waits with a reason, failed, or a
// drain is refused.
func isHeld(n *v1alpha1.BottlerocketNode) bool {
	st := &n.Status
	switch st.Phase {
	case v1alpha1.PhasePending, v1alpha1.PhaseStaged, v1alpha1.PhaseFailed:
		return st.Reason != "" && st.Reason != v1alpha1.ReasonUpToDate
	case v1alpha1.PhaseDraining:
		switch st.Reason {
		case v1alpha1.ReasonEvictionBlocked, v1alpha1.ReasonMultiplePDBs, v1alpha1.ReasonDrainRefused, v1alpha1.ReasonNoCapacity:
			return true
		}
	}
	return false
}

// held groups the policy's held nodes by reason (Failed nodes under "Failed: <reason>").
func held(policy string, nodes []v1alpha1.BottlerocketNode) []Group {
	by := map[v1alpha1.Reason][]string{}
	for i := range nodes {
		n := &nodes[i]
		if n.Spec.Policy != policy || !isHeld(n) {
			continue
		}
		r := n.Status.Reason
		if n.Status.Phase == v1alpha1.PhaseFailed {
			r = "Failed: " + r
		}
		by[r] = append(by[r], n.Name)
	}
	groups := make([]Group, 0, len(by))
	for r, ns := range by {
		sort.Strings(ns)
		groups = append(groups, Group{Reason: r, Nodes: ns})
	}
	sort.Slice(groups, func(i, j int) bool {
		if len(groups[i].Nodes) != len(groups[j].Nodes) {
			return len(groups[i].Nodes) > len(groups[j].Nodes)
		}
		return groups[i].Reason < groups[j].Reason
	})
	return groups
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// PrintSummaries writes the policies' table and, under it, each policy's held nodes.
func PrintSummaries(out io.Writer, sums []Summary) error {
	var b bytes.Buffer // writes to a buffer do not fail; out is written once, below
	w := printers.GetNewTabWriter(&b)
	_, _ = fmt.Fprintln(w, "POLICY\tTARGET\tPROGRESS\tPHASE\tUNAVAILABLE\tWAVE\tNEXT WINDOW\tETA")
	for _, s := range sums {
		_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d/%s\t%s\t%s\t%s\n", s.Policy, s.Target, s.Progress, s.Phase, s.Unavailable, s.Budget, s.Wave, s.Window, s.ETA)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing the table: %w", err)
	}
	for _, s := range sums {
		if len(s.Held) == 0 {
			continue
		}
		_, _ = fmt.Fprintf(&b, "\n%s: held back\n", s.Policy)
		w = printers.GetNewTabWriter(&b)
		_, _ = fmt.Fprintln(w, "  REASON\tNODES\tEXAMPLES")
		for _, g := range s.Held {
			_, _ = fmt.Fprintf(w, "  %s\t%d\t%s\n", g.Reason, len(g.Nodes), list(g.Nodes, examples))
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("writing the table: %w", err)
		}
	}
	if _, err := b.WriteTo(out); err != nil {
		return fmt.Errorf("writing the status: %w", err)
	}
	return nil
}

// PrintExplanation writes what `why` says about a node, as kubectl describe lays it out.
func PrintExplanation(out io.Writer, e Explanation, now time.Time, loc *time.Location) error {
	var b bytes.Buffer // writes to a buffer do not fail; out is written once, below
	w := printers.GetNewTabWriter(&b)
	since := "-"
	if !e.Since.IsZero() {
		since = when(e.Since, now, loc, "") + " (" + short(now.Sub(e.Since)) + ")"
	}
	rows := [][2]string{
		{"Node", e.Node}, {"Policy", dash(e.Policy)}, {"Target", dash(e.Target)}, {"Wave", dash(e.Wave)},
		{"Phase", dash(string(e.Phase))}, {"Since", since}, {"Reason", dash(string(e.Reason))},
		{"Message", dash(e.Message)}, {"Unblocks", e.Unblock},
	}
	for _, r := range rows {
		_, _ = fmt.Fprintf(w, "%s:\t%s\n", r[0], r[1])
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing the explanation: %w", err)
	}
	if _, err := b.WriteTo(out); err != nil {
		return fmt.Errorf("writing the explanation: %w", err)
	}
	return nil
}
