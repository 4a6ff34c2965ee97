package controllers

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/resourceversion"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// The optimistic lock on a write protects only the object written, but an admission depends
// on every other node of the policy: a pass that sees one of our writes and not yet another
// (a watch delivers them in its own time) could admit a node into a slot that our unseen
// write already took. So the controller remembers the resourceVersion of each
// BottlerocketNode it wrote, and plans only from a view that holds all of them: it waits a
// little for the cache to catch up (the watch events of those writes bring it back), and after
// cacheCatchUpTries waits reads the BottlerocketNodes from the API server instead.
const (
	// cacheCatchUpWait is how soon a pass deferred for a lagging cache is tried again.
	cacheCatchUpWait = 100 * time.Millisecond
	// cacheCatchUpTries bounds the passes deferred in a row before reading the API server.
	cacheCatchUpTries = 5
)

// expectations remembers the controller's last write of each BottlerocketNode and
// UpdatePolicy.
type expectations struct {
	mu sync.Mutex
	// written maps an object (its kind and name) to the resourceVersion our last write
	// returned.
	written map[expectKey]string
	// deferred counts the passes deferred in a row for a lagging cache.
	deferred int
}

type expectKey struct {
	policy bool // an UpdatePolicy; else a BottlerocketNode
	name   string
}

// wrote records a write of a BottlerocketNode or an UpdatePolicy, as the API server answered it.
func (e *expectations) wrote(obj client.Object) {
	_, policy := obj.(*v1alpha1.UpdatePolicy)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.written == nil {
		e.written = map[expectKey]string{}
	}
	e.written[expectKey{policy, obj.GetName()}] = obj.GetResourceVersion()
}

// behind reports how many of our writes the view lacks, and forgets those it holds. An
// object missing from the view is forgotten (a node without a BottlerocketNode is not
// planned; a policy gone governs nothing). A resourceVersion that cannot be compared counts
// as missing.
func (e *expectations) behind(brns []*v1alpha1.BottlerocketNode, policies []v1alpha1.UpdatePolicy) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.written) == 0 {
		return 0
	}
	seen := make(map[expectKey]string, len(brns)+len(policies))
	for _, brn := range brns {
		seen[expectKey{false, brn.Name}] = brn.ResourceVersion
	}
	for i := range policies {
		seen[expectKey{true, policies[i].Name}] = policies[i].ResourceVersion
	}
	missing := 0
	for name, rv := range e.written {
		have, ok := seen[name]
		if !ok {
			delete(e.written, name)
			continue
		}
		if cmp, err := resourceversion.CompareResourceVersion(have, rv); err == nil && cmp >= 0 {
			delete(e.written, name)
			continue
		}
		missing++
	}
	return missing
}

// wait reports whether a pass that found the cache behind should be tried again later (true,
// at most cacheCatchUpTries times in a row) rather than read the API server now.
func (e *expectations) wait() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.deferred++
	if e.deferred > cacheCatchUpTries {
		e.deferred = 0
		return false
	}
	return true
}

// caughtUp records a pass planned from a view that holds all our writes.
func (e *expectations) caughtUp() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.deferred = 0
}
