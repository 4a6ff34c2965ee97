//go:build tools

// Package helm pins the helm command in a module of its own: its dependencies never move the
// operator's. The Makefile builds it from here once into a cache outside the repository; the
// chart's tests (test/chart) run it.
package helm

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
