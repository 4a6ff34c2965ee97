package controllers

import (
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
)

// Options configure the controller.
type Options struct {
	// ControllerNode is the node the controller runs on; it is updated last in its wave.
	ControllerNode string
	// OperatorNamespace holds the operator's own pods, which are never evicted.
	OperatorNamespace string
	// Clock is the controller's only source of time (default: the real clock).
	Clock clock.Clock
	// PollInterval is how soon nodes being drained or checked are looked at again (default 5s).
	PollInterval time.Duration
}

// Setup registers node discovery and the rollout controller with a manager built with
// CacheOptions.
func Setup(mgr ctrl.Manager, o Options) error {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	kube, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	if err := (&NodeReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up node discovery: %w", err)
	}
	r := &RolloutReconciler{
		Client:            mgr.GetClient(),
		APIReader:         mgr.GetAPIReader(),
		Kube:              kube,
		Clock:             o.Clock,
		Recorder:          mgr.GetEventRecorder(FieldManager),
		ControllerNode:    o.ControllerNode,
		OperatorNamespace: o.OperatorNamespace,
		PollInterval:      o.PollInterval,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the rollout controller: %w", err)
	}
	return nil
}
