package audit

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
}

var start = time.Date(2026, 12, 2, 15, 59, 20, 0, time.UTC)

func (r req) line() string {
	done := start.Add(time.Duration(r.ms) * time.Millisecond)
	user := map[string]any{"username": r.user, "groups": []string{"system:authenticated"}}
	if r.node != "" {
		user["extra"] = map[string][]string{who.NodeExtra: {r.node}}
	}
	ref := map[string]any{"resource": r.resource, "name": r.nm, "apiVersion": "v1"}
	uri := "/api/v1/" + r.resource + "/" + r.nm
	if r.ns != "" {
		ref["namespace"] = r.ns
		uri = "/api/v1/namespaces/" + r.ns + "/" + r.resource + "/" + r.nm
	}
	if r.sub != "" {
		ref["subresource"] = r.sub
		uri += "/" + r.sub
	}
	ev := map[string]any{
		"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": fmt.Sprintf("id-%d", r.ms),
		"stage": "ResponseComplete", "requestURI": uri, "verb": r.verb, "user": user, "sourceIPs": []string{"127.0.0.1"},
		"userAgent": "e2e.test/v0.0.0 (linux/amd64) kubernetes/$Format", "objectRef": ref,
		"responseStatus":           map[string]any{"metadata": map[string]any{}, "code": r.code},
		"requestReceivedTimestamp": done.Add(-5 * time.Millisecond).Format(time.RFC3339Nano),
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
func agentOf(node string, ms, code int) req {
	return req{ms: ms, user: who.Agent, node: node, verb: "patch", resource: "bottlerocketnodes", sub: "status", nm: node, code: code}
}

func controllerWrites(resource, sub, node string, ms, code int) req {
	return req{ms: ms, user: who.Controller, verb: "patch", resource: resource, sub: sub, nm: node, code: code}
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

// Each piece of evidence about a node is answered by the controller's first successful write
// for that node after it (its BottlerocketNode, spec or status, or its Node): not a write
// before it, to another node, refused, or by anybody else.
func TestReactionsPairEvidenceWithTheControllersNextWrite(t *testing.T) {
	const a, b = "ip-10-0-0-1", "ip-10-0-0-2"
	rotated := []req{
		// The agent's report: answered 30 ms later; the write to b before does not answer it.
		agentOf(a, 0, 200),
		controllerWrites("bottlerocketnodes", "status", b, 10, 200),
		controllerWrites("bottlerocketnodes", "", a, 30, 200),
		// A write before the report does not answer it, nor a second write after the first.
		controllerWrites("bottlerocketnodes", "status", a, 90, 200),
		agentOf(a, 100, 200),
		controllerWrites("bottlerocketnodes", "status", a, 150, 200),
		controllerWrites("bottlerocketnodes", "status", a, 160, 200),
		// a's agent writing b's report is refused: no evidence.
		agentOf(a, 170, 403),
	}
	current := []req{
		// kwok makes a new Node Ready: not known to have been otherwise, no evidence.
		nodeStatus(kwok, a, "True", 180),
		// A reboot: NotReady, then Ready again, answered by a write to the Node 70 ms later.
		nodeStatus(admin, a, "False", 200),
		controllerWrites("bottlerocketnodes", "status", a, 250, 200),
		nodeStatus(admin, a, "True", 300),
		controllerWrites("nodes", "", a, 370, 200),
		// kwok's heartbeat (Ready stays True) and a write without the condition: no evidence.
		nodeStatus(kwok, a, "True", 400),
		nodeStatus(admin, a, "", 410),
		// A drain: p1 and p2 evicted (p2 refused at first), the agent's pod d left alone.
		bind("p1", a, 420), bind("p2", a, 430), bind("d", a, 440), bind("q", b, 450),
		evict("p1", 500, 201), evict("p2", 505, 429),
		remove("p1", 0, 520), // gone, but p2 is not: not the last
		controllerWrites("bottlerocketnodes", "status", a, 540, 200),
		evict("p2", 600, 201),
		remove("p2", 30, 610), // a grace period only marks it terminating
		remove("p2", 0, 620),  // the last: d is not the drain's
		remove("p2", 0, 625),  // kwok deletes twice: gone already
		controllerWrites("bottlerocketnodes", "", a, 700, 200),
		// A refused write does not answer; the next one does.
		agentOf(a, 900, 200),
		controllerWrites("bottlerocketnodes", "status", a, 910, 409),
		controllerWrites("bottlerocketnodes", "status", a, 960, 200),
		// b's report, and nothing after it: unanswered.
		agentOf(b, 1000, 200),
		controllerWrites("bottlerocketnodes", "status", a, 1010, 200),
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
	want := []Reaction{
		{Evidence: AgentReport, Times: ms(30, 50, 60), Unanswered: 1},
		{Evidence: NodeReady, Times: ms(70)},
		{Evidence: LastPodGone, Times: ms(80)},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("reactions:\n got %v\nwant %v", got, want)
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

// A Node's status write recorded without its body cannot say whether the Node turned Ready:
// the log's policy is wrong, and the reader says so rather than count nothing.
func TestReactionsNeedTheNodeStatusBodies(t *testing.T) {
	r := nodeStatus(admin, "ip-10-0-0-1", "True", 0)
	r.body = ""
	_, err := ReadReactions(writeLog(t, nil, []req{r}), who)
	if err == nil || !strings.Contains(err.Error(), "Request level") {
		t.Errorf("error %v, want one saying the Node's status writes must be recorded at Request level", err)
	}
}
