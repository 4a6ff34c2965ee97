//go:build tools

// Package lint pins golangci-lint in a module of its own: its many dependencies never move
// the operator's nor controller-tools' (hack/tools). The Makefile builds it from here once
// into a cache outside the repository.
package lint

import (
	_ "github.com/golangci/golangci-lint/v2/cmd/golangci-lint"
)
