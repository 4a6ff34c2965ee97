// Package buildinfo holds what the binary was built from, stamped at build time:
//
//	go build -ldflags "-X github.com/bottlerocket-ops/update-operator/internal/buildinfo.Version=v1.2.3
//	  -X github.com/bottlerocket-ops/update-operator/internal/buildinfo.Commit=$(git rev-parse HEAD)"
//
// (make build and make image do it), and exports it as a Prometheus metric.
package buildinfo

import (
	"fmt"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// Version and Commit are set with -ldflags -X; an unstamped build says "dev" and "unknown".
var (
	Version = "dev"
	Commit  = "unknown"
)

// MetricName is the name of the gauge Collector exports.
const MetricName = "bottlerocket_update_operator_build_info"

// String is what -version prints.
func String() string {
	return fmt.Sprintf("bottlerocket-update-operator %s (commit %s, %s %s/%s)", Version, Commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// Collector returns a gauge of value 1 labelled with the version and commit, so that dashboards
// and alerts can tell which build each replica and agent runs.
func Collector() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: MetricName,
		Help: "The build of the operator binary: always 1, labelled with its version and commit.",
	}, []string{"version", "commit"})
	g.WithLabelValues(Version, Commit).Set(1)
	return g
}
