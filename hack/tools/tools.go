//go:build tools

// Package tools pins the build tools of the project in a module of their own, so that their
// dependencies never move the operator's.
package tools

import (
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
)
