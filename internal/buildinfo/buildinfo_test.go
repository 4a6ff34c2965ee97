package buildinfo

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestCollectorExportsTheStampedBuild sets the stamped values as -ldflags -X would and reads
// the metric as Prometheus would scrape it.
func TestCollectorExportsTheStampedBuild(t *testing.T) {
	oldV, oldC := Version, Commit
	t.Cleanup(func() { Version, Commit = oldV, oldC })
	Version, Commit = "v1.2.3", "0123abcd"
	want := `# HELP bottlerocket_update_operator_build_info The build of the operator binary: always 1, labelled with its version and commit.
# TYPE bottlerocket_update_operator_build_info gauge
bottlerocket_update_operator_build_info{commit="0123abcd",version="v1.2.3"} 1
`
	if err := testutil.CollectAndCompare(Collector(), strings.NewReader(want), MetricName); err != nil {
		t.Error(err)
	}
	if s := String(); !strings.Contains(s, "v1.2.3") || !strings.Contains(s, "0123abcd") {
		t.Errorf("String() = %q, want the version and the commit", s)
	}
}
