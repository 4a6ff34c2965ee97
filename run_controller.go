package main

import (
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/bottlerocket-ops/update-operator/controllers"
)

// runController runs the cluster-wide controller until the process is signalled.
func runController(o options) error {
	mgr, err := controllers.NewManager(ctrl.GetConfigOrDie(), controllers.Options{
		ControllerNode:    os.Getenv("NODE_NAME"),
		OperatorNamespace: o.operatorNamespace,
	}, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:  o.probeAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        controllers.LeaderElectionID,
		LeaderElectionNamespace: o.leaderElectionNS,
	})
	if err != nil {
		return err
	}
	return serve(mgr)
}
