package controllers_test

import (
	"context"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// laggingCache is the controller's cache as a slow watch makes it: while withholding, a
// BottlerocketNode of the test's fleet that the API server holds in a disrupted phase is
// served as it was last seen before it got there. The controller's own write that disrupts a
// node reaches it late, while its other writes arrive at once: the order in which a real watch
// may deliver them.
type laggingCache struct {
	cache.Cache
	prefix string

	mu       sync.Mutex
	withhold bool
	before   map[string]*v1alpha1.BottlerocketNode // last copy seen in no disrupted phase
}

func newLaggingCache(prefix string) *laggingCache {
	return &laggingCache{prefix: prefix, before: map[string]*v1alpha1.BottlerocketNode{}}
}

// newCache builds the real cache and wraps it.
func (l *laggingCache) newCache(cfg *rest.Config, opts cache.Options) (cache.Cache, error) {
	c, err := cache.New(cfg, opts)
	l.Cache = c
	return l, err
}

func (l *laggingCache) setWithholding(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.withhold = on
}

func (l *laggingCache) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := l.Cache.List(ctx, list, opts...); err != nil {
		return err
	}
	brns, ok := list.(*v1alpha1.BottlerocketNodeList)
	if !ok {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range brns.Items {
		b := &brns.Items[i]
		if !strings.HasPrefix(b.Name, l.prefix) {
			continue
		}
		old, seen := l.before[b.Name]
		switch {
		case !b.Status.Phase.Unavailable():
			l.before[b.Name] = b.DeepCopy()
		case l.withhold && seen:
			old.DeepCopyInto(b)
		}
	}
	return nil
}

var _ = Describe("Admissions", func() {
	It("are decided from a view that includes the controller's own last writes, however late the cache delivers them", func() {
		lag := newLaggingCache("")
		f := newFleetWith(func(o *ctrl.Options) { o.NewCache = lag.newCache })
		lag.prefix = f.group + "-"
		m := f.watchFleet()
		// Staging is allowed outside the window; draining is not: both nodes stage, one reports
		// staged, and the other reports it while the controller is away, so that its first pass
		// in the window moves one node to Staged and admits the other to Draining.
		window := epoch.Add(time.Hour)
		f.addPolicy("p", rolloutSpec(func(s *v1alpha1.UpdatePolicySpec) {
			s.Staging = &v1alpha1.StagingSpec{MaxConcurrent: ptr.To(intstr.FromInt32(2))}
			s.MaintenanceWindows = []v1alpha1.MaintenanceWindow{{Schedule: "0 11 * * *", Duration: metav1.Duration{Duration: time.Hour}, TimeZone: "UTC"}}
		}))
		nodes := f.addBottlerocketNodes("a", "b")
		a, b := nodes[0], nodes[1]
		for _, n := range nodes {
			agentReady(n)
			expectNode(n, v1alpha1.PhaseStaging, intent(v1alpha1.ActionStage))
		}
		agentStaged(b)
		expectNode(b, v1alpha1.PhaseStaged, reason(v1alpha1.ReasonOutsideWindow))

		f.stopController()
		agentStaged(a)
		f.clock.SetTime(window)
		lag.setWithholding(true)
		f.startController()

		By("the pass that admits one node to Draining moves the other to Staged; the admission reaches the cache late")
		expectNode(a, v1alpha1.PhaseStaged, reason(v1alpha1.ReasonBudgetExhausted))
		expectNode(b, v1alpha1.PhaseRebooting, intent(v1alpha1.ActionReboot), cordonedByUs(true))
		m.settled(v1alpha1.PhaseStaged, a)
		maxUnavailable, phases, _ := m.report()
		Expect(phases[a]).NotTo(ContainElement(v1alpha1.PhaseDraining), "%s was admitted while %s was disrupted", a, b)
		Expect(maxUnavailable).To(Equal(1), "never more nodes unavailable than maxUnavailable")

		By("once the cache catches up, the rollout goes on as usual")
		lag.setWithholding(false)
		setReady(b, false)
		agentRebooted(b, toVersion)
		setReady(b, true)
		f.stabilize(b)
		expectNode(a, v1alpha1.PhaseRebooting, intent(v1alpha1.ActionReboot))
		maxUnavailable, _, _ = m.report()
		Expect(maxUnavailable).To(Equal(1), "never more nodes unavailable than maxUnavailable")
	})
})
