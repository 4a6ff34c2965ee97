// Package timeline draws a rollout as the cluster showed it: the nodes by phase over time, the
// nodes unavailable (whoever caused it) against the policy's budget, the starts and soaks of
// its waves, and its maintenance windows shaded — an SVG image made from
// snapshots of the cluster's objects, not from the controller's account of its own work.
//
// A node counts as unavailable as the budgets count it: cordoned, not Ready, or in a phase
// that disrupts it.
//
// The demo writes one at the end of its rollout and the end-to-end scenarios write one when they
// fail; Read takes an image apart again, so a test can check it agrees with the run.
package timeline

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/invariants"
)

// Phases are the phases drawn, from the bottom of the stack to its top; a node without a
// BottlerocketNode, or whose BottlerocketNode has no phase yet, is drawn Idle.
var Phases = [...]v1alpha1.NodePhase{
	v1alpha1.PhaseUpdated, v1alpha1.PhaseFailed, v1alpha1.PhaseStabilizing, v1alpha1.PhaseVerifying,
	v1alpha1.PhaseRebooting, v1alpha1.PhaseDraining, v1alpha1.PhaseStaged, v1alpha1.PhaseStaging,
	v1alpha1.PhasePending, v1alpha1.PhaseIdle,
}

var colours = map[v1alpha1.NodePhase]string{
	v1alpha1.PhaseUpdated: "#31a354", v1alpha1.PhaseFailed: "#cb181d", v1alpha1.PhaseStabilizing: "#fdd0a2",
	v1alpha1.PhaseVerifying: "#fdae6b", v1alpha1.PhaseRebooting: "#e6550d", v1alpha1.PhaseDraining: "#fd8d3c",
	v1alpha1.PhaseStaged: "#6baed6", v1alpha1.PhaseStaging: "#c6dbef", v1alpha1.PhasePending: "#bdbdbd",
	v1alpha1.PhaseIdle: "#e7e7e7",
}

// Recorder follows the cluster for one policy's rollout. Observe it with every snapshot; it
// keeps only the instants at which something drawn changed.
type Recorder struct {
	policy  string
	loc     *time.Location
	samples []sample
	spec    *v1alpha1.UpdatePolicySpec
	target  string
	waves   []*wave
}

// sample is what the picture shows of one instant.
type sample struct {
	at          time.Time
	phases      [len(Phases)]int // by the index of Phases
	unavailable int
	budget      int
}

// wave is what was seen of one wave of a rollout.
type wave struct {
	target    string // the policy's status.targetVersion then
	name      string
	started   time.Time // its first node seen disrupted
	completed time.Time // its status.waves[].completionTime
}

// NewRecorder follows the rollout of the named policy; times are labelled in loc (nil: UTC).
func NewRecorder(policy string, loc *time.Location) *Recorder {
	if loc == nil {
		loc = time.UTC
	}
	return &Recorder{policy: policy, loc: loc}
}

// Observe records the cluster at s.Now. The picture starts with the first snapshot that holds
// the policy (nodes joining the cluster before are no part of its rollout). Every node of the
// snapshot is drawn, governed by the policy or not; the budget, waves and windows are the
// policy's.
func (r *Recorder) Observe(s invariants.Snapshot) {
	if len(r.samples) == 0 && !slices.ContainsFunc(s.Policies, func(p v1alpha1.UpdatePolicy) bool { return p.Name == r.policy }) {
		return
	}
	at := s.Now
	if n := len(r.samples); n > 0 && at.Before(r.samples[n-1].at) {
		at = r.samples[n-1].at // snapshots judged at an earlier phase start do not go back in time
	}
	var now sample
	now.at = at
	for i := range s.Policies {
		if p := &s.Policies[i]; p.Name == r.policy {
			r.spec, r.target = p.Spec.DeepCopy(), p.Status.TargetVersion
			now.budget = int(p.Status.MaxUnavailable)
			for _, ws := range p.Status.Waves {
				if w := r.wave(ws.Name); ws.CompletionTime != nil && w.completed.IsZero() {
					w.completed = ws.CompletionTime.Time
				}
			}
		}
	}
	for _, n := range s.Nodes {
		phase := v1alpha1.PhaseIdle
		if n.BRN != nil && n.BRN.Status.Phase != "" {
			phase = n.BRN.Status.Phase
		}
		now.phases[phaseIndex(phase)]++
		if n.Unavailable() {
			now.unavailable++
		}
		if n.BRN != nil && n.BRN.Status.Wave != "" && phase.Unavailable() {
			if w := r.wave(n.BRN.Status.Wave); w.started.IsZero() {
				w.started = at
			}
		}
	}
	if n := len(r.samples); n > 0 && r.samples[n-1].sameAs(now) {
		return
	}
	r.samples = append(r.samples, now)
}

// sameAs reports whether s and t draw the same.
func (s sample) sameAs(t sample) bool {
	return s.phases == t.phases && s.unavailable == t.unavailable && s.budget == t.budget
}

// Finish records that the cluster was last seen as before at t: the picture ends there.
func (r *Recorder) Finish(t time.Time) {
	if n := len(r.samples); n > 0 && t.After(r.samples[n-1].at) {
		last := r.samples[n-1]
		last.at = t
		r.samples = append(r.samples, last)
	}
}

// wave returns the named wave of the rollout to the policy's current target.
func (r *Recorder) wave(name string) *wave {
	for _, w := range r.waves {
		if w.target == r.target && w.name == name {
			return w
		}
	}
	w := &wave{target: r.target, name: name}
	r.waves = append(r.waves, w)
	return w
}

func phaseIndex(p v1alpha1.NodePhase) int {
	for i, q := range Phases {
		if q == p {
			return i
		}
	}
	return len(Phases) - 1 // a phase this package does not know is drawn Idle
}

// soak returns the soak time of the named wave of the policy.
func (r *Recorder) soak(name string) time.Duration {
	if r.spec == nil {
		return 0
	}
	for _, w := range r.spec.Waves {
		if w.Name == name && w.SoakTime != nil {
			return w.SoakTime.Duration
		}
	}
	return 0
}

// windows returns the intervals in [from, to] in which the policy's maintenance windows were
// open; none when the policy sets none (it is always open) or they do not parse.
func (r *Recorder) windows(from, to time.Time) [][2]time.Time {
	if r.spec == nil || len(r.spec.MaintenanceWindows) == 0 {
		return nil
	}
	ws, err := v1alpha1.ParseWindows(r.spec.MaintenanceWindows)
	if err != nil {
		return nil
	}
	var out [][2]time.Time
	for t, steps := from, 0; t.Before(to) && steps < 10000; steps++ {
		open, change, _ := ws.State(t)
		if change.IsZero() {
			change = to
		}
		if open {
			out = append(out, [2]time.Time{t, minTime(change, to)})
		}
		t = change
	}
	return out
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// WriteFile writes the picture to path.
func (r *Recorder) WriteFile(path string) (err error) {
	f, err := createFile(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("writing %s: %w", path, cerr)
		}
	}()
	w := bufio.NewWriter(f)
	if err := r.Render(w); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// ErrNothingObserved is returned by Render before any snapshot was observed.
var ErrNothingObserved = errors.New("timeline: nothing observed")

// Render writes the picture as SVG.
func (r *Recorder) Render(w io.Writer) error {
	if len(r.samples) == 0 {
		return ErrNothingObserved
	}
	return newCanvas(r).draw(w)
}
