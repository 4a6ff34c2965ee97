package v1alpha1

import (
	"fmt"
	"math"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// Unlimited is the resolved value of a limit that is not set.
const Unlimited = math.MaxInt

// ScaledCount resolves v, a count or a percentage of total rounded up (as a PodDisruptionBudget
// does), to a number of nodes; nil resolves to unset. It fails closed: a negative or malformed
// value resolves to 0 and is returned as an error.
func ScaledCount(v *intstr.IntOrString, total, unset int) (int, error) {
	if v == nil {
		return unset, nil
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(v, total, true)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, fmt.Errorf("%s: must not be negative", v.String())
	}
	return n, nil
}

// MaxUnavailableOf resolves maxUnavailable for a policy governing governed nodes (unset: 1).
func (s *UpdatePolicySpec) MaxUnavailableOf(governed int) (int, error) {
	n, err := ScaledCount(s.MaxUnavailable, governed, 1)
	if err != nil {
		return 0, fmt.Errorf("maxUnavailable %w", err)
	}
	return n, nil
}

// MaxUnavailablePerZoneOf resolves maxUnavailablePerZone for a zone holding zoneNodes of the
// governed nodes (unset: Unlimited).
func (s *UpdatePolicySpec) MaxUnavailablePerZoneOf(zoneNodes int) (int, error) {
	n, err := ScaledCount(s.MaxUnavailablePerZone, zoneNodes, Unlimited)
	if err != nil {
		return 0, fmt.Errorf("maxUnavailablePerZone %w", err)
	}
	return n, nil
}

// StagingMaxConcurrentOf resolves staging.maxConcurrent for governed nodes. Unset, it is the
// resolved maxUnavailable, at least 1.
func (s *UpdatePolicySpec) StagingMaxConcurrentOf(governed int) (int, error) {
	if s.Staging == nil || s.Staging.MaxConcurrent == nil {
		n, err := s.MaxUnavailableOf(governed)
		return max(n, 1), err
	}
	n, err := ScaledCount(s.Staging.MaxConcurrent, governed, 1)
	if err != nil {
		return 0, fmt.Errorf("staging.maxConcurrent %w", err)
	}
	return n, nil
}

// MaxFailedNodesOrDefault is failurePolicy.maxFailedNodes, 1 when unset or below 1.
func (s *UpdatePolicySpec) MaxFailedNodesOrDefault() int {
	return max(int(s.FailurePolicy.MaxFailedNodes), 1)
}

// PauseBetweenNodesOrDefault is pauseBetweenNodes, 0 when unset.
func (s *UpdatePolicySpec) PauseBetweenNodesOrDefault() time.Duration {
	if s.PauseBetweenNodes == nil {
		return 0
	}
	return max(s.PauseBetweenNodes.Duration, 0)
}

// SizeOf resolves a count wave's size for governed nodes (0 for a selector wave).
func (w *Wave) SizeOf(governed int) (int, error) {
	n, err := ScaledCount(w.Nodes, governed, 0)
	if err != nil {
		return 0, fmt.Errorf("wave %s: nodes %w", w.Name, err)
	}
	return n, nil
}

// MaxUnavailableOf resolves the wave's maxUnavailable for a wave of waveNodes nodes (unset:
// Unlimited; the policy's limits apply as well).
func (w *Wave) MaxUnavailableOf(waveNodes int) (int, error) {
	n, err := ScaledCount(w.MaxUnavailable, waveNodes, Unlimited)
	if err != nil {
		return 0, fmt.Errorf("wave %s: maxUnavailable %w", w.Name, err)
	}
	return n, nil
}

// SoakTimeOrDefault is the wave's soakTime, 0 when unset.
func (w *Wave) SoakTimeOrDefault() time.Duration {
	if w.SoakTime == nil {
		return 0
	}
	return max(w.SoakTime.Duration, 0)
}
