package planner

import (
	"time"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// etaWave is what is left of one wave for the estimate.
type etaWave struct {
	windows v1alpha1.Windows
	waiting int         // nodes still to be disrupted
	busy    []time.Time // when each node disrupted now is expected back
	done    time.Time   // when the wave's last finished node finished (zero: none yet)
	limit   int         // the wave's own maxUnavailable
	soak    time.Duration
}

// etaInput is what the estimate of a rollout's completion reads.
type etaInput struct {
	now     time.Time
	budget  int           // the policy's maxUnavailable
	perNode time.Duration // how long a disruption is expected to last
	pause   time.Duration // pauseBetweenNodes: a slot rests this long after its node
	fit     bool          // finishWithinWindow: a disruption starts only if it ends in the window
	cooling []time.Time   // slots resting after a node updated before now, until these times
	waves   []etaWave
	// started, when set, hears of each waiting node's expected start and return, in order.
	started func(wave int, start, back time.Time)
}

// estimateCompletion plays the rest of the rollout forward: the waves in order, each starting
// once the one before has finished and soaked; a node starts when a slot of the policy's
// budget (and of its wave's) is free, and in an open window of its wave. It returns when the
// last node is expected back, zero when some node never starts (no budget, or no window opens
// again). Per-zone budgets are not modelled: the estimate assumes the zones do not hold the
// policy's budget back.
func estimateCompletion(in etaInput) time.Time {
	slots := &timeHeap{}
	for _, t := range in.cooling {
		slots.push(t)
	}
	for _, w := range in.waves {
		for _, t := range w.busy {
			slots.push(t.Add(in.pause))
		}
	}
	start, end := in.now, time.Time{}
	for k, w := range in.waves {
		waveEnd := w.done
		// A wave's own limit binds only if it is smaller than the nodes it has left: most
		// waves ("the rest", 100%) never wait on it, and need no heap of every node's return.
		var waveSlots *timeHeap
		if w.limit < len(w.busy)+w.waiting {
			waveSlots = &timeHeap{}
		}
		for _, t := range w.busy {
			waveEnd = laterOf(waveEnd, t)
			waveSlots.push(t)
		}
		windows := windowCursor{windows: w.windows}
		for range w.waiting {
			if in.budget <= 0 || w.limit <= 0 {
				return time.Time{}
			}
			t := laterOf(start, takeSlot(slots, in.budget))
			t = laterOf(t, takeSlot(waveSlots, w.limit))
			if t = windows.startAt(t, in.perNode, in.fit); t.IsZero() {
				return time.Time{}
			}
			back := t.Add(in.perNode)
			if in.started != nil {
				in.started(k, t, back)
			}
			slots.push(back.Add(in.pause))
			waveSlots.push(back)
			waveEnd, start = laterOf(waveEnd, back), t
		}
		end = laterOf(end, waveEnd)
		if !waveEnd.IsZero() {
			start = laterOf(start, waveEnd.Add(w.soak))
		}
	}
	return end
}

// takeSlot waits for one of limit slots: when all are busy, it frees the first to come free
// and returns when that is (zero when a slot is free already, or slots is nil: no limit).
func takeSlot(slots *timeHeap, limit int) time.Time {
	var t time.Time
	for slots != nil && len(*slots) >= limit && len(*slots) > 0 {
		t = laterOf(t, slots.pop())
	}
	return t
}

// windowCursor answers, for times that do not go back, when a disruption may start; it asks
// the schedule again only once a time passes the last change it reported.
type windowCursor struct {
	windows v1alpha1.Windows
	known   bool
	from    time.Time // the state below holds from here ...
	change  time.Time // ... until here (zero: for ever)
	open    bool
	next    time.Time // when closed: the next opening (zero: never)
}

// startAt returns the first time at or after t at which a disruption lasting d may start:
// in an open window and, with fit, ending before that window's state changes. Zero: never.
func (c *windowCursor) startAt(t time.Time, d time.Duration, fit bool) time.Time {
	for range 1000 { // each step moves to the next opening or closing: a bound of ~500 windows
		if !c.known || t.Before(c.from) || (!c.change.IsZero() && !t.Before(c.change)) {
			c.known, c.from = true, t
			c.open, c.change, c.next = c.windows.State(t)
		}
		switch {
		case !c.open && c.next.IsZero():
			return time.Time{}
		case !c.open:
			t = c.next
		case fit && !c.change.IsZero() && t.Add(d).After(c.change):
			t = c.change
		default:
			return t
		}
	}
	return time.Time{}
}

// timeHeap is a min-heap of times (typed: container/heap would box every time it holds). A
// nil heap stands for slots without a limit: it keeps nothing.
type timeHeap []time.Time

func (h *timeHeap) push(t time.Time) {
	if h == nil { // a limit that never binds
		return
	}
	*h = append(*h, t)
	s := *h
	for j := len(s) - 1; j > 0; {
		parent := (j - 1) / 2
		if !s[j].Before(s[parent]) {
			break
		}
		s[j], s[parent] = s[parent], s[j]
		j = parent
	}
}

func (h *timeHeap) pop() time.Time {
	s := *h
	top, n := s[0], len(s)-1
	s[0] = s[n]
	s = s[:n]
	for j := 0; ; {
		least := j
		for _, c := range [2]int{2*j + 1, 2*j + 2} {
			if c < n && s[c].Before(s[least]) {
				least = c
			}
		}
		if least == j {
			break
		}
		s[j], s[least] = s[least], s[j]
		j = least
	}
	*h = s
	return top
}

// expectedDisruption is how long a node's disruption (Draining to Updated) is expected to
// last: the mean of those observed in this rollout, else the policy's deadlines (drain
// timeout, ready timeout and stableFor).
func (pp *policyPass) expectedDisruption() time.Duration {
	var sum time.Duration
	n := 0
	for _, i := range pp.members {
		brn := pp.in.Nodes[i].BRN
		if brn == nil || pp.target == "" || brn.Status.RolloutTarget != pp.target {
			continue
		}
		st := &brn.Status
		if st.DrainStartTime != nil && st.UpdatedTime != nil && st.UpdatedTime.After(st.DrainStartTime.Time) {
			sum += st.UpdatedTime.Sub(st.DrainStartTime.Time)
			n++
		}
	}
	if n == 0 {
		h := &pp.spec.Health
		return durationOr(pp.spec.Drain.Timeout, DefaultDrainTimeout) + durationOr(h.ReadyTimeout, DefaultReadyTimeout) + durationOr(h.StableFor, DefaultStableFor)
	}
	return sum / time.Duration(n)
}

// estimate gathers what is left of the rollout from this pass's decisions and estimates when
// it completes, rounded up to the minute (so that the status does not change on every pass).
func (pp *policyPass) estimate(out []NodeDecision) time.Time {
	eta := estimateCompletion(pp.etaInput(out, nil))
	if rounded := eta.Truncate(time.Minute); !rounded.Equal(eta) {
		eta = rounded.Add(time.Minute)
	}
	return eta
}

// etaInput gathers what is left of the rollout from this pass's decisions; busy, when set,
// hears of each node disrupted now and when it is expected back.
func (pp *policyPass) etaInput(out []NodeDecision, busy func(i int, back time.Time)) etaInput {
	now, pause := pp.in.Now, pp.spec.PauseBetweenNodesOrDefault()
	in := etaInput{
		now: now, budget: pp.maxUnavailable, perNode: pp.perNode, pause: pause,
		fit: pp.spec.FinishWithinWindow, waves: make([]etaWave, len(pp.waves)),
	}
	for k := range pp.waves {
		w := &pp.waves[k]
		in.waves[k] = etaWave{windows: w.windows, done: w.completion, limit: w.limit}
		if w.spec != nil {
			in.waves[k].soak = w.spec.SoakTimeOrDefault()
		}
	}
	for k, i := range pp.members {
		w, d := &in.waves[pp.waveOf[k]], &out[i]
		switch {
		case d.Phase.Unavailable():
			back := now.Add(pp.perNode)
			if st := &pp.in.Nodes[i].BRN.Status; st.DrainStartTime != nil && d.From.Unavailable() {
				back = laterOf(now, st.DrainStartTime.Add(pp.perNode))
			}
			w.busy = append(w.busy, back)
			if busy != nil {
				busy(i, back)
			}
		case d.Phase == v1alpha1.PhasePending || d.Phase == v1alpha1.PhaseStaging || d.Phase == v1alpha1.PhaseStaged:
			w.waiting++
		case d.Phase == v1alpha1.PhaseUpdated && pause > 0:
			if st := &pp.in.Nodes[i].BRN.Status; st.UpdatedTime != nil && now.Before(st.UpdatedTime.Add(pause)) {
				in.cooling = append(in.cooling, st.UpdatedTime.Add(pause))
			}
		}
	}
	return in
}
