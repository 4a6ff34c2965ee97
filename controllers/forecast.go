package controllers

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers/internal/planner"
)

// Forecast is the rest of one policy's rollout as the controller expects it to go.
type Forecast = planner.Forecast

// PolicyReport is the planner's report of a policy in a Forecast.
type PolicyReport = planner.PolicyReport

// ForecastRollout forecasts the named policy's rollout from the cluster's objects as the
// controller would plan it at now, with the same planner (none of its rules is repeated
// here). policies may hold a policy not applied yet (no status): it is planned as if just
// created. controllerNode is the node the controller runs on, which it keeps for last in its
// wave ("" when unknown). False when policies holds no policy of that name.
func ForecastRollout(now time.Time, nodes []corev1.Node, brns []v1alpha1.BottlerocketNode, policies []v1alpha1.UpdatePolicy, policy, controllerNode string) (Forecast, bool) {
	return planner.ComputeForecast(plannerInput(now, pairByName(pointers(nodes), pointers(brns)), policies, controllerNode), policy)
}
