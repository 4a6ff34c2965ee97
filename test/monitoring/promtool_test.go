package monitoring_test

import (
	"path/filepath"

	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// promDir is config/prometheus.
var promDir = filepath.Join(testenv.RepoRoot(), "config", "prometheus")
