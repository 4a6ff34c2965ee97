package stack

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/bottlerocket-ops/update-operator/controllers"
	"github.com/bottlerocket-ops/update-operator/test/framework/deploy"
)

// StartController starts a replica of the controller: on a local cluster as the installed
// Deployment's replica would (its service account, leader election on short leases, started
// again whenever it exits); with Light as the admin, without leader election, started again
// whenever it exits. After StopController it is a new replica, which waits for the killed one's
// lease to expire. One replica runs at a time.
func (s *Stack) StartController() error {
	s.ctrlMu.Lock()
	defer s.ctrlMu.Unlock()
	if s.ctrlCancel != nil {
		return errors.New("starting the controller: a replica runs already")
	}
	ctx, cancel := context.WithCancel(s.ctx)
	opts := ctrl.Options{Scheme: s.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}}
	var done <-chan struct{}
	var err error
	if s.Install != nil {
		done, err = s.Install.RunController(ctx, s.opts.Controller, opts)
	} else {
		done = s.runAdminController(ctx, opts)
	}
	if err != nil {
		cancel()
		return fmt.Errorf("starting the controller: %w", err)
	}
	s.ctrlCancel, s.ctrlDone = cancel, done
	return nil
}

// StopController kills the running replica (its lease, if any, is not released: a crash) and
// waits until it is gone; without one it does nothing.
func (s *Stack) StopController() {
	s.ctrlMu.Lock()
	cancel, done := s.ctrlCancel, s.ctrlDone
	s.ctrlCancel, s.ctrlDone = nil, nil
	s.ctrlMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// runAdminController runs the controller as the admin until ctx ends, started again whenever
// it exits; the channel is closed once it is gone.
func (s *Stack) runAdminController(ctx context.Context, opts ctrl.Options) <-chan struct{} {
	opts.Controller.SkipNameValidation = ptr.To(true) // every start registers the same controllers here
	return deploy.KeepRunning(ctx, s.log.WithName("controller"), func() (ctrl.Manager, error) {
		return controllers.NewManager(s.Config, s.opts.Controller, opts)
	})
}
