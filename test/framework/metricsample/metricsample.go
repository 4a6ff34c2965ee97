// Package metricsample reads counters and gauges back from a Prometheus registry in tests.
package metricsample

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Sum gathers g and returns the sum of the counters or gauges called name whose labels include
// labels, and how many series matched.
func Sum(g prometheus.Gatherer, name string, labels map[string]string) (sum float64, matched int, err error) {
	families, err := g.Gather()
	if err != nil {
		return 0, 0, fmt.Errorf("gathering metrics: %w", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metric
				}
			}
			matched++
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			} else {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum, matched, nil
}
