package main

import (
	"fmt"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
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
	mgr, err := agent.NewManager(ctrl.GetConfigOrDie(), &agent.Agent{
		Host:            hostapi.New(o.apiSocket),
		NodeName:        o.nodeName,
		BootIDFile:      o.bootIDFile,
		Clock:           clock.RealClock{},
		RefreshInterval: refresh,
	}, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress: o.probeAddr,
	})
	if err != nil {
		return err
	}
	return serve(mgr)
}
