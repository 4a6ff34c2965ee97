package controllers

import (
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// LeaderElectionID names the lease the controller's replicas elect their leader with.
const LeaderElectionID = "bottlerocket-update-operator.updates.bottlerocket.aws"

// Options configure the controller.
type Options struct {
	// ControllerNode is the node the controller runs on; it is updated last in its wave.
	ControllerNode string
	// OperatorNamespace holds the operator's own pods, which are never evicted.
	OperatorNamespace string
	// Clock is the controller's only source of time; required (main passes the real one).
	Clock clock.Clock
	// PollInterval is how soon nodes being drained or checked are looked at again (default 5s).
	PollInterval time.Duration
}

// Setup registers node discovery and the rollout controller with a manager built with
// CacheOptions.
func Setup(mgr ctrl.Manager, o Options) error {
	if o.Clock == nil {
		return errors.New("the controller needs a clock (controllers.Options.Clock)")
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

// NewManager returns a manager running the controller: its cache strips what decisions do not
// read, pods are never cached (they are read straight from the API server), and node
// discovery and the rollout controller are set up with o. opts gives the rest (scheme,
// metrics and probe addresses, leader election).
func NewManager(cfg *rest.Config, o Options, opts ctrl.Options) (ctrl.Manager, error) {
	opts.Cache = CacheOptions()
	opts.Client = client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Pod{}}}}
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("creating the controller's manager: %w", err)
	}
	return mgr, Setup(mgr, o)
}
