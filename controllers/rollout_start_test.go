package controllers_test

import (
	"context"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// startRecord is every version of a fleet's BottlerocketNodes' intent and of its policy's
// status a watch delivered: the instants between two reads that polling would miss.
type startRecord struct {
	mu      sync.Mutex
	actions map[string][]v1alpha1.NodeAction // each node's intents, repeats folded
	// readyOn lists the targets the policy said Ready=True for, at the generation watched.
	readyOn []string
}

// recordStart watches the fleet from now on; policy's statuses count from generation on.
func (f *fleet) recordStart(policy string, generation int64) *startRecord {
	rec := &startRecord{actions: map[string][]v1alpha1.NodeAction{}}
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, list := range []client.ObjectList{&v1alpha1.BottlerocketNodeList{}, &v1alpha1.UpdatePolicyList{}} {
		w, err := wc.Watch(ctx, list)
		Expect(err).NotTo(HaveOccurred())
		wg.Go(func() {
			defer w.Stop()
			for ev := range w.ResultChan() {
				if ev.Type == watch.Added || ev.Type == watch.Modified {
					rec.observe(ev.Object, f.group+"-", policy, generation)
				}
			}
		})
	}
	DeferCleanup(func() { cancel(); wg.Wait() })
	return rec
}

func (r *startRecord) observe(obj any, prefix, policy string, generation int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch o := obj.(type) {
	case *v1alpha1.BottlerocketNode:
		if len(o.Name) < len(prefix) || o.Name[:len(prefix)] != prefix {
			return
		}
		if a := r.actions[o.Name]; len(a) == 0 || a[len(a)-1] != o.Spec.Action {
			r.actions[o.Name] = append(a, o.Spec.Action)
		}
	case *v1alpha1.UpdatePolicy:
		if o.Name == policy && o.Status.ObservedGeneration >= generation &&
			apimeta.IsStatusConditionTrue(o.Status.Conditions, v1alpha1.ConditionReady) {
			r.readyOn = append(r.readyOn, o.Status.TargetVersion)
		}
	}
}

// withdrawn returns the nodes whose Stage intent was withdrawn (None) before they rebooted.
func (r *startRecord) withdrawn() map[string][]v1alpha1.NodeAction {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]v1alpha1.NodeAction{}
	for n, actions := range r.actions {
		staged := false
		for _, a := range actions {
			switch {
			case a == v1alpha1.ActionStage:
				staged = true
			case a == v1alpha1.ActionReboot:
				staged = false
			case staged && a == v1alpha1.ActionNone:
				out[n] = actions
			}
		}
	}
	return out
}

// policyLag is the controller's cache as a slow watch makes it for one policy: from the first
// version at generation `from` or later, the policy is served as that version was, so that
// the controller's own status writes after the spec change reach it late.
type policyLag struct {
	cache.Cache
	name string

	mu   sync.Mutex
	from int64
	held *v1alpha1.UpdatePolicy
}

func (l *policyLag) newCache(cfg *rest.Config, opts cache.Options) (cache.Cache, error) {
	c, err := cache.New(cfg, opts)
	l.Cache = c
	return l, err
}

// holdFrom starts serving the policy as it is at generation from (0: stop).
func (l *policyLag) holdFrom(from int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.from, l.held = from, nil
}

func (l *policyLag) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := l.Cache.List(ctx, list, opts...); err != nil {
		return err
	}
	policies, ok := list.(*v1alpha1.UpdatePolicyList)
	if !ok {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range policies.Items {
		p := &policies.Items[i]
		switch {
		case p.Name != l.name || l.from == 0 || p.Generation < l.from:
		case l.held == nil:
			l.held = p.DeepCopy()
		default:
			l.held.DeepCopyInto(p)
		}
	}
	return nil
}

var _ = Describe("The start of a rollout", func() {
	It("is decided once: no intent is withdrawn and given again, and the policy is not Ready for a version no host runs", func() {
		lag := &policyLag{}
		f := newFleetWith(func(o *ctrl.Options) { o.NewCache = lag.newCache })
		p := f.addPolicy("p", rolloutSpec(func(s *v1alpha1.UpdatePolicySpec) { s.Version = fromVersion }))
		lag.name = p.Name
		nodes := f.addBottlerocketNodes("a", "b", "c")
		for _, n := range nodes {
			agentReady(n)
		}
		expectStatus(p.Name, func(g Gomega, pol *v1alpha1.UpdatePolicy) {
			g.Expect(apimeta.IsStatusConditionTrue(pol.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue(), "every node runs the pin")
		})

		By("a new target takes over: the pin moves to latest, which the hosts are offered; the controller's status writes reach its cache late")
		gen := p.Generation + 1
		lag.holdFrom(gen)
		DeferCleanup(func() { lag.holdFrom(0) })
		Eventually(func(g Gomega) {
			cur := getPolicy(g, p.Name)
			orig := cur.DeepCopy()
			cur.Spec.Version = v1alpha1.VersionLatest
			g.Expect(k8s.Patch(context.Background(), cur, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))).To(Succeed())
			gen = cur.Generation
		}).Should(Succeed())
		rec := f.recordStart(p.Name, gen)
		first := staging(nodes)
		agentStaged(first)
		expectNode(first, v1alpha1.PhaseRebooting, intent(v1alpha1.ActionReboot))
		expectStatus(p.Name, func(g Gomega, pol *v1alpha1.UpdatePolicy) {
			g.Expect(pol.Status.ObservedGeneration).To(BeNumerically(">=", gen))
			g.Expect(pol.Status.TargetVersion).To(Equal(toVersion))
		})

		Expect(rec.withdrawn()).To(BeEmpty(), "intents given, withdrawn and given again")
		rec.mu.Lock()
		defer rec.mu.Unlock()
		Expect(rec.actions[first]).To(ContainElements(v1alpha1.ActionStage, v1alpha1.ActionReboot), "the watch recorded the start")
		Expect(rec.readyOn).To(BeEmpty(), "the policy said Ready for these targets while no host ran %s", toVersion)
	})
})
