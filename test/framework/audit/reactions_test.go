package audit

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// The identities of the e2e's cluster (test/framework/deploy).
var who = Identities{
	Controller: "system:serviceaccount:bottlerocket-update-operator:bottlerocket-update-controller",
	Agent:      "system:serviceaccount:bottlerocket-update-operator:bottlerocket-update-agent",
	NodeExtra:  "authentication.kubernetes.io/node-name",
}

const (
	kwok      = "kwok"
	admin     = "kubernetes-admin"
	scheduler = "system:kube-scheduler"
)

// req is one request of a hand-written audit log, written out by line in the shape the e2e's
// API server (kube-apiserver 1.37.2) gives its audit events; e.g. kwok removing an evicted pod:
//
//	{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"a649c276-6468-4157-9e52-6a31ab9d7164",
//	"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/pods/web-998dcf77d-xl9j6","verb":"delete",
//	"user":{"username":"kwok","groups":["system:masters","system:authenticated"],"extra":{...}},"sourceIPs":["127.0.0.1"],
//	"userAgent":"kwok/v0.8.0 (linux/amd64)","objectRef":{"resource":"pods","namespace":"shop","name":"web-998dcf77d-xl9j6",
//	"apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestObject":{"kind":"DeleteOptions",
//	"apiVersion":"meta.k8s.io/__internal","gracePeriodSeconds":0},"requestReceivedTimestamp":"2026-12-02T15:59:23.345164Z",
//	"stageTimestamp":"2026-12-02T15:59:23.384265Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}
type req struct {
	ms                          int    // completed this many milliseconds after the log's start
	user, node                  string // node: the agent's, for a token bound to its pod
	verb, resource, sub, ns, nm string
	code                        int
	body                        string // the request's body, recorded at Request level
	took                        int    // milliseconds from its receipt to its completion; 5 unless set
}

var start = time.Date(2026, 12, 2, 15, 59, 20, 0, time.UTC)

func (r req) line() string {
	done := start.Add(time.Duration(r.ms) * time.Millisecond)
	user := map[string]any{"username": r.user, "groups": []string{"system:authenticated"}}
	if r.node != "" {
		user["extra"] = map[string][]string{who.NodeExtra: {r.node}}
	}
	ref := map[string]any{"resource": r.resource, "name": r.nm, "apiVersion": "v1"}
	uri := "/api/v1/"
	if r.resource == "bottlerocketnodes" {
		ref["apiGroup"], ref["apiVersion"] = group, "v1alpha1"
		uri = "/apis/" + group + "/v1alpha1/"
	}
	if r.ns != "" {
		ref["namespace"] = r.ns
		uri += "namespaces/" + r.ns + "/"
	}
	uri += r.resource + "/" + r.nm
	if r.sub != "" {
		ref["subresource"] = r.sub
		uri += "/" + r.sub
	}
	ev := map[string]any{
		"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": fmt.Sprintf("id-%d", r.ms),
		"stage": "ResponseComplete", "requestURI": uri, "verb": r.verb, "user": user, "sourceIPs": []string{"127.0.0.1"},
		"userAgent": "e2e.test/v0.0.0 (linux/amd64) kubernetes/$Format", "objectRef": ref,
		"responseStatus":           map[string]any{"metadata": map[string]any{}, "code": r.code},
		"requestReceivedTimestamp": done.Add(-time.Duration(cmp.Or(r.took, 5)) * time.Millisecond).Format(time.RFC3339Nano),
		"stageTimestamp":           done.Format(time.RFC3339Nano),
	}
	if r.body != "" {
		ev["level"], ev["requestObject"] = "Request", json.RawMessage(r.body)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return string(b) + "\n"
}

// Requests of the hand-written log, by whom.

// report is a node's agent applying its whole status.agent, as it does.
func report(node string, ms, code int, a v1alpha1.AgentStatus) req {
	body, err := json.Marshal(map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "BottlerocketNode",
		"metadata": map[string]any{"name": node}, "status": map[string]any{"agent": a},
	})
	if err != nil {
		panic(err)
	}
	return req{ms: ms, user: who.Agent, node: node, verb: "patch", resource: "bottlerocketnodes", sub: "status", nm: node, code: code, body: string(body)}
}

// status is the controller's merge patch of a BottlerocketNode's status (under the optimistic
// lock of the object it read), with the phase when it changes it.
func status(node string, phase v1alpha1.NodePhase, ms, code int) req {
	fields := `"message":"m","reason":"r"`
	if phase != "" {
		fields += `,"phase":"` + string(phase) + `","phaseStartTime":"2026-12-02T15:59:20Z"`
	}
	return req{ms: ms, user: who.Controller, verb: "patch", resource: "bottlerocketnodes", sub: "status", nm: node, code: code,
		body: `{"metadata":{"resourceVersion":"4242"},"status":{` + fields + `}}`}
}

// nodeStatus is a strategic merge patch of a Node's status, as the harness and kwok send them,
// with the given Ready status ("" for none).
func nodeStatus(user, node, ready string, ms int) req {
	body := `{"status":{"nodeInfo":{"bootID":"b"}}}`
	if ready != "" {
		body = `{"metadata":{"annotations":{"bottlerocket.aws/simulated-reboot":null}},"status":{"conditions":[` +
			`{"lastHeartbeatTime":"2026-12-02T15:59:20Z","message":"m","reason":"r","status":"False","type":"MemoryPressure"},` +
			`{"lastHeartbeatTime":"2026-12-02T15:59:20Z","message":"m","reason":"r","status":"` + ready + `","type":"Ready"}]}}`
	}
	return req{ms: ms, user: user, verb: "patch", resource: "nodes", sub: "status", nm: node, code: 200, body: body}
}

func bind(pod, node string, ms int) req {
	return req{ms: ms, user: scheduler, verb: "create", resource: "pods", sub: "binding", ns: "shop", nm: pod, code: 201,
		body: `{"kind":"Binding","apiVersion":"v1","metadata":{"name":"` + pod + `","namespace":"shop"},"target":{"kind":"Node","name":"` + node + `"}}`}
}

func evict(pod string, ms, code int) req {
	return req{ms: ms, user: who.Controller, verb: "create", resource: "pods", sub: "eviction", ns: "shop", nm: pod, code: code,
		body: `{"kind":"Eviction","apiVersion":"policy/v1","metadata":{"name":"` + pod + `","namespace":"shop"},"deleteOptions":{}}`}
}

// remove is kwok deleting a pod with the given grace period: 0 removes it, as a kubelet does
// once its containers stopped.
func remove(pod string, grace, ms int) req {
	return req{ms: ms, user: kwok, verb: "delete", resource: "pods", ns: "shop", nm: pod, code: 200,
		body: fmt.Sprintf(`{"kind":"DeleteOptions","apiVersion":"meta.k8s.io/__internal","gracePeriodSeconds":%d}`, grace)}
}

// writeLog writes the requests as an audit log, the first rotated ones into a backup, and
// returns the log's path.
func writeLog(t *testing.T, rotated, current []req) string {
	t.Helper()
	dir := t.TempDir()
	for name, reqs := range map[string][]req{"audit-2026-12-02T15-59-21.000.log": rotated, "audit.log": current} {
		var b strings.Builder
		for _, r := range reqs {
			b.WriteString(r.line())
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "audit.log")
}

// The agents' reports along an update from 1.19.0 to 1.20.0.
var (
	idle   = v1alpha1.AgentStatus{ObservedGeneration: 1, CurrentVersion: "1.19.0", BootID: "boot-1", UpdateState: v1alpha1.HostStateAvailable}
	acked  = with(idle, func(a *v1alpha1.AgentStatus) { a.ObservedGeneration = 2 })
	staged = with(acked, func(a *v1alpha1.AgentStatus) {
		a.StagedVersion, a.UpdateState = "1.20.0", v1alpha1.HostStateStaged
		a.LastAction = &v1alpha1.AgentAction{Action: v1alpha1.ActionStage, TargetVersion: "1.20.0", Result: v1alpha1.ActionSucceeded,
			Time: metav1.NewTime(start)}
	})
	booted = with(staged, func(a *v1alpha1.AgentStatus) {
		a.ObservedGeneration, a.CurrentVersion, a.BootID, a.UpdateState = 3, "1.20.0", "boot-2", v1alpha1.HostStateIdle
		a.RebootRecord = &v1alpha1.RebootRecord{BootID: "boot-1", FromVersion: "1.19.0", ToVersion: "1.20.0"}
	})
)

func with(a v1alpha1.AgentStatus, change func(*v1alpha1.AgentStatus)) v1alpha1.AgentStatus {
	a = *a.DeepCopy()
	change(&a)
	return a
}

// Each phase change the controller writes on evidence is timed from the latest evidence of
// what it waits on, or from entering the phase it leaves if that is later: evidence of the
// node's own, that changed what the transition reads, and that completed before the API server
// received the change. The other changes are counted, not timed.
func TestReactionsTimeEachTransitionFromItsLatestEvidence(t *testing.T) {
	const a, b = "ip-10-0-0-1", "ip-10-0-0-2"
	rotated := []req{
		report(a, 0, 200, idle), report(b, 5, 200, idle),
		status(a, v1alpha1.PhasePending, 10, 200), status(b, v1alpha1.PhasePending, 12, 200),
		nodeStatus(kwok, a, "True", 20), // a new Node Ready: not known to have been otherwise
		bind("p1", a, 50), bind("p2", a, 55), bind("d", a, 60), bind("q", b, 65),
		status(a, v1alpha1.PhaseStaging, 100, 200), status(b, v1alpha1.PhaseStaging, 110, 200),
		report(a, 150, 200, acked), report(b, 160, 200, acked),
	}
	refreshed := with(staged, func(a *v1alpha1.AgentStatus) { a.UpdateState, a.RefreshRequest = v1alpha1.HostStateReady, "r1" })
	current := []req{
		// Staging→Staged: a's report of the target staged, 50 ms before the change; not its
		// periodic report after it, which changes nothing the transition reads, nor a refused
		// change, nor a report completed while the change was in flight.
		report(a, 300, 200, staged),
		report(a, 315, 200, refreshed),
		status(a, v1alpha1.PhaseStaged, 325, 409),
		report(b, 330, 200, staged),
		report(b, 335, 422, booted),                                             // refused: no evidence
		func() req { r := report(b, 337, 200, booted); r.node = a; return r }(), // a's agent, were it let through: no evidence of b's
		report(a, 340, 200, with(refreshed, func(a *v1alpha1.AgentStatus) { a.LastAction.Message = "done" })),
		func() req { r := status(a, v1alpha1.PhaseStaged, 350, 200); r.took = 20; return r }(),
		status(b, v1alpha1.PhaseStaged, 360, 200), // 30 ms after b's report
		// Draining→Rebooting: a's last evicted pod gone, 80 ms before. p2 is refused at first,
		// then only marked terminating; d, which the drain leaves alone, goes after it.
		status(a, v1alpha1.PhaseDraining, 1000, 200),
		evict("p1", 1010, 201), evict("p2", 1020, 429),
		remove("p1", 0, 1050),
		evict("p2", 1100, 201),
		remove("p2", 30, 1110),
		status(a, "", 1150, 200), // no phase: no change
		remove("p2", 0, 1200),
		remove("p2", 0, 1205), // kwok deletes twice: gone already
		remove("d", 0, 1250),
		status(a, v1alpha1.PhaseRebooting, 1280, 200),
		// b has nothing to evict (q is not the drain's): 40 ms from entering Draining.
		status(b, v1alpha1.PhaseDraining, 1300, 200),
		status(b, v1alpha1.PhaseRebooting, 1340, 200),
		// Rebooting→Verifying: the agent's report of the new boot, 70 ms before for a; the Node
		// turning Ready after it is not what the transition waits on.
		nodeStatus(admin, b, "False", 1360),
		nodeStatus(admin, a, "False", 1400),
		report(b, 1400, 200, booted),
		status(b, v1alpha1.PhaseVerifying, 1450, 200),
		report(a, 1500, 200, booted),
		nodeStatus(admin, b, "True", 1500),
		nodeStatus(admin, a, "True", 1550),
		status(a, v1alpha1.PhaseVerifying, 1570, 200),
		// Verifying→Stabilizing: b's Node turning Ready, 60 ms before (not b's periodic report
		// after it); a had all it waits on when it entered Verifying, 130 ms before (kwok's
		// heartbeat keeping it Ready, and a write without the condition, are no evidence).
		report(b, 1530, 200, with(booted, func(a *v1alpha1.AgentStatus) { a.RefreshRequest = "r2" })),
		status(b, v1alpha1.PhaseStabilizing, 1560, 200),
		nodeStatus(kwok, a, "True", 1600),
		nodeStatus(admin, a, "", 1610),
		status(a, v1alpha1.PhaseStabilizing, 1700, 200),
		// Stabilizing→Updated waits on health.stableFor: not timed.
		status(a, v1alpha1.PhaseUpdated, 2800, 200), status(b, v1alpha1.PhaseUpdated, 2900, 200),
	}
	got, err := ReadReactions(writeLog(t, rotated, current), who)
	if err != nil {
		t.Fatal(err)
	}
	ms := func(ms ...int) []time.Duration {
		var d []time.Duration
		for _, m := range ms {
			d = append(d, time.Duration(m)*time.Millisecond)
		}
		return d
	}
	want := Reactions{
		Measured: []Reaction{
			{Transition{v1alpha1.PhaseStaging, v1alpha1.PhaseStaged}, []Evidence{AgentStaged}, ms(30, 50),
				map[Evidence]int{AgentStaged: 2}},
			{Transition{v1alpha1.PhaseDraining, v1alpha1.PhaseRebooting}, []Evidence{LastPodGone}, ms(40, 80),
				map[Evidence]int{Entered: 1, LastPodGone: 1}},
			{Transition{v1alpha1.PhaseRebooting, v1alpha1.PhaseVerifying}, []Evidence{AgentBooted}, ms(50, 70),
				map[Evidence]int{AgentBooted: 2}},
			{Transition{v1alpha1.PhaseVerifying, v1alpha1.PhaseStabilizing}, []Evidence{NodeReady, AgentRunning}, ms(60, 130),
				map[Evidence]int{NodeReady: 1, Entered: 1}},
		},
		Unmeasured: map[Transition]int{
			{"", v1alpha1.PhasePending}: 2, {v1alpha1.PhasePending, v1alpha1.PhaseStaging}: 2,
			{v1alpha1.PhaseStaged, v1alpha1.PhaseDraining}: 2, {v1alpha1.PhaseStabilizing, v1alpha1.PhaseUpdated}: 2,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("reactions:\n got %+v\nwant %+v", got, want)
	}
}

// Percentiles are of the nearest rank: with 100 times of 1..100 ms, p50 is 50 ms and p99 99 ms.
func TestReactionPercentiles(t *testing.T) {
	var r Reaction
	for i := range 100 {
		r.Times = append(r.Times, time.Duration(i+1)*time.Millisecond)
	}
	if p50, p99, top := r.Percentile(50), r.Percentile(99), r.Percentile(100); p50 != 50*time.Millisecond || p99 != 99*time.Millisecond || top != 100*time.Millisecond {
		t.Errorf("p50 %s, p99 %s, p100 %s; want 50ms, 99ms, 100ms", p50, p99, top)
	}
	three := Reaction{Times: []time.Duration{30 * time.Millisecond, 50 * time.Millisecond, 60 * time.Millisecond}}
	if p50, p99 := three.Percentile(50), three.Percentile(99); p50 != 50*time.Millisecond || p99 != 60*time.Millisecond {
		t.Errorf("of 30, 50, 60 ms: p50 %s, p99 %s; want 50ms, 60ms", p50, p99)
	}
	if got := (Reaction{}).Percentile(99); got != 0 {
		t.Errorf("p99 of nothing: %s, want 0", got)
	}
}

// A write the reader needs the body of, recorded without it, cannot say what it changed: the
// log's policy is wrong, and the reader says so rather than count nothing.
func TestReactionsNeedTheBodies(t *testing.T) {
	for name, r := range map[string]req{
		"a Node's status":                   nodeStatus(admin, "ip-10-0-0-1", "True", 0),
		"the controller's BottlerocketNode": status("ip-10-0-0-1", v1alpha1.PhaseStaging, 0, 200),
		"the agent's report":                report("ip-10-0-0-1", 0, 200, idle),
		"a pod's binding":                   bind("p1", "ip-10-0-0-1", 0),
	} {
		r.body = ""
		_, err := ReadReactions(writeLog(t, nil, []req{r}), who)
		if err == nil || !strings.Contains(err.Error(), "Request level") {
			t.Errorf("%s: error %v, want one saying its writes must be recorded at Request level", name, err)
		}
	}
}
