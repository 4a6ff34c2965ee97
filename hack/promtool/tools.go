//go:build tools

// Package promtool pins Prometheus' promtool in a module of its own: its dependencies never move
// the operator's. The Makefile builds it from here once into a cache outside the repository; the
// alert rules' and dashboard's tests (config/prometheus, config/grafana) run it.
package promtool

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
