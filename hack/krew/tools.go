//go:build tools

// Package krew pins krew, kubectl's plugin manager, in a module of its own: its dependencies
// never move the operator's. The Makefile builds it from here once into a cache outside the
// repository; the plugin's release test (test/plugin) installs the plugin with it.
package krew

import (
	_ "sigs.k8s.io/krew/cmd/krew"
)
