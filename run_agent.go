package main

import (
	"fmt"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/bottlerocket-ops/update-operator/agent"
	"github.com/bottlerocket-ops/update-operator/agent/hostapi"
)

// runAgent runs the per-node agent until the process is signalled.
func runAgent(o options) error {
	if o.nodeName == "" {
		return fmt.Errorf("the agent needs its node's name: set NODE_NAME or -node-name")
	}
	refresh, err := time.ParseDuration(o.agentRefreshInterval)
	if err != nil || refresh <= 0 {
		return fmt.Errorf("invalid -refresh-interval %q: want a positive duration such as 30m", o.agentRefreshInterval)
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme,
		Cache:                  agent.CacheOptions(o.nodeName),
		Metrics:                metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress: o.probeAddr,
	})
	if err != nil {
		return fmt.Errorf("creating the agent manager: %w", err)
	}
	a := &agent.Agent{
		Client:          mgr.GetClient(),
		Host:            hostapi.New(o.apiSocket),
		NodeName:        o.nodeName,
		BootIDFile:      o.bootIDFile,
		Clock:           clock.RealClock{},
		RefreshInterval: refresh,
	}
	if err := a.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the agent: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding the readiness check: %w", err)
	}
	return mgr.Start(ctrl.SetupSignalHandler())
}
