package v1alpha1_test

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

func ios(s string) *intstr.IntOrString {
	v := intstr.Parse(s)
	return &v
}

func TestScaledCount(t *testing.T) {
	tests := []struct {
		value   *intstr.IntOrString
		total   int
		want    int
		wantErr bool
	}{
		{nil, 10, 7, false}, // unset
		{ios("3"), 10, 3, false},
		{ios("0"), 10, 0, false},
		{ios("10%"), 10, 1, false},
		{ios("10%"), 11, 2, false}, // 1.1 rounds up
		{ios("10%"), 1, 1, false},
		{ios("1%"), 0, 0, false},
		{ios("100%"), 7, 7, false},
		{ios("33%"), 3, 1, false}, // 0.99 rounds up
		{ios("-1"), 10, 0, true},  // fails closed
		{ios("x%"), 10, 0, true},
		{ios("ten"), 10, 0, true},
	}
	for _, tt := range tests {
		got, err := v1alpha1.ScaledCount(tt.value, tt.total, 7)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ScaledCount(%v, %d) = %d, %v; want %d (error %v)", tt.value, tt.total, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestPolicyBudgets(t *testing.T) {
	var empty v1alpha1.UpdatePolicySpec
	if n, err := empty.MaxUnavailableOf(50); n != 1 || err != nil {
		t.Errorf("default maxUnavailable = %d, %v", n, err)
	}
	if n, _ := empty.MaxUnavailablePerZoneOf(5); n != v1alpha1.Unlimited {
		t.Errorf("default per zone = %d", n)
	}
	if n, _ := empty.StagingMaxConcurrentOf(50); n != 1 {
		t.Errorf("default staging = %d", n)
	}
	if empty.MaxFailedNodesOrDefault() != 1 || empty.PauseBetweenNodesOrDefault() != 0 {
		t.Error("defaults")
	}
	spec := v1alpha1.UpdatePolicySpec{
		MaxUnavailable:        ios("10%"),
		MaxUnavailablePerZone: ios("50%"),
		PauseBetweenNodes:     &metav1.Duration{Duration: 5 * time.Minute},
		FailurePolicy:         v1alpha1.FailurePolicy{MaxFailedNodes: 3},
	}
	if n, _ := spec.MaxUnavailableOf(25); n != 3 {
		t.Errorf("10%% of 25 = %d, want 3", n)
	}
	if n, _ := spec.MaxUnavailablePerZoneOf(3); n != 2 {
		t.Errorf("50%% of 3 = %d, want 2", n)
	}
	if n, _ := spec.StagingMaxConcurrentOf(25); n != 3 {
		t.Errorf("staging follows maxUnavailable: %d", n)
	}
	spec.MaxUnavailable = ios("0")
	if n, _ := spec.StagingMaxConcurrentOf(25); n != 1 {
		t.Errorf("staging is at least 1: %d", n)
	}
	spec.Staging = &v1alpha1.StagingSpec{MaxConcurrent: ios("20%")}
	if n, _ := spec.StagingMaxConcurrentOf(25); n != 5 {
		t.Errorf("staging 20%% of 25 = %d", n)
	}
	spec.MaxUnavailable = ios("-2")
	if n, err := spec.MaxUnavailableOf(25); n != 0 || err == nil {
		t.Errorf("negative budget = %d, %v; want 0 and an error", n, err)
	}
	if spec.MaxFailedNodesOrDefault() != 3 || spec.PauseBetweenNodesOrDefault() != 5*time.Minute {
		t.Error("explicit values")
	}
}

func TestWaveBudgets(t *testing.T) {
	w := v1alpha1.Wave{Name: "w", Nodes: ios("25%"), MaxUnavailable: ios("50%"), SoakTime: &metav1.Duration{Duration: time.Hour}}
	if n, _ := w.SizeOf(10); n != 3 {
		t.Errorf("25%% of 10 = %d", n)
	}
	if n, _ := w.MaxUnavailableOf(3); n != 2 {
		t.Errorf("50%% of 3 = %d", n)
	}
	if w.SoakTimeOrDefault() != time.Hour {
		t.Error("soak")
	}
	var sel v1alpha1.Wave
	if n, _ := sel.SizeOf(10); n != 0 {
		t.Errorf("selector wave size %d", n)
	}
	if n, _ := sel.MaxUnavailableOf(3); n != v1alpha1.Unlimited {
		t.Errorf("unset wave limit %d", n)
	}
	if sel.SoakTimeOrDefault() != 0 {
		t.Error("unset soak")
	}
	bad := v1alpha1.Wave{Name: "bad", Nodes: ios("many")}
	if n, err := bad.SizeOf(10); n != 0 || err == nil {
		t.Errorf("bad size = %d, %v", n, err)
	}
}
