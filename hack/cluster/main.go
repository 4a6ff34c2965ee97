// Command cluster runs a whole local Kubernetes cluster (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kwok) with simulated Bottlerocket nodes, from the
// binaries hack/controlplane.sh --all caches.
//
//	go run ./hack/cluster up -nodes 20 -dir .cluster   # runs until Ctrl-C
//	go run ./hack/cluster down -dir .cluster           # stops a cluster left behind
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/bottlerocket-ops/update-operator/test/framework/localcluster"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	logger := zap.New(zap.UseDevMode(true))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "up":
		err = up(ctx, logger, args)
	case "down":
		err = down(ctx, args)
	default:
		usage()
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		logger.Error(err, "cluster "+os.Args[1])
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: cluster up [-nodes N] [-version V] [-dir DIR] [-audit] | cluster down [-dir DIR]")
	os.Exit(2)
}

func up(ctx context.Context, logger logr.Logger, args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	dir := fs.String("dir", ".cluster", "state directory")
	nodes := fs.Int("nodes", 20, "simulated Bottlerocket nodes")
	version := fs.String("version", "1.25.0", "Bottlerocket version the nodes run")
	binDir := fs.String("bin-dir", "", "binaries (default: hack/controlplane.sh --all's cache)")
	audit := fs.Bool("audit", false, "write the API server's audit log to DIR/audit.log")
	_ = fs.Parse(args)

	began := time.Now()
	c, err := localcluster.Start(ctx, localcluster.Options{
		Dir: *dir, BinDir: *binDir, AuditLog: *audit, Logger: logger,
	})
	if err != nil {
		return err
	}
	defer c.Stop()
	if *nodes > 0 {
		t := time.Now()
		if _, err := c.AddNodes(ctx, *nodes, *version); err != nil {
			return err
		}
		logger.Info("Nodes added", "count", *nodes, "after", time.Since(t).Round(time.Millisecond))
	}
	logger.Info("Cluster ready; Ctrl-C stops it", "after", time.Since(began).Round(time.Millisecond),
		"pids", c.PIDs())
	fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig)
	select {
	case <-ctx.Done():
		logger.Info("Stopping")
		return nil
	case <-c.Failed():
		return errors.New("a component exited; its log is in " + c.Dir + "/logs")
	}
}

func down(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("down", flag.ExitOnError)
	dir := fs.String("dir", ".cluster", "state directory")
	_ = fs.Parse(args)
	return localcluster.StopDir(ctx, *dir)
}
