// Package audit holds what this project's tests and tools share about the API server's audit
// log: the policy they run it with, and a reader of its events.
package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// withoutLeases starts a policy that records no Lease renewal (every node's heartbeat: most of
// the volume, and nothing is checked on them).
const withoutLeases = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  resources:
  - group: coordination.k8s.io
    resources: [leases]
`

// Policy records, at metadata level, every request that changes something, but Lease
// renewals; and with its body each write whose body ReadReactions reads — a BottlerocketNode's
// status (the controller's phase, the agent's report), a Node's status (whether it turned
// Ready), a pod's binding (its node) and deletion (its grace period): bodies of a kilobyte at
// most, a few dozen per node and a few per pod.
var Policy = withoutLeases + `- level: Request
  verbs: [update, patch]
  resources:
  - group: ` + group + `
    resources: [bottlerocketnodes/status]
  - group: ""
    resources: [nodes/status]
- level: Request
  verbs: [create]
  resources:
  - group: ""
    resources: [pods/binding]
- level: Request
  verbs: [delete]
  resources:
  - group: ""
    resources: [pods]
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
`

// group is the API group of the BottlerocketNodes.
var group = v1alpha1.GroupVersion.Group

// Everything records every request at metadata level, reads and watches included, but Lease
// renewals: for measuring the load a client puts on the API server.
const Everything = withoutLeases + `- level: Metadata
`

// Event is the part of an API server audit event that is read here.
type Event struct {
	Verb  string `json:"verb"`
	Stage string `json:"stage"`
	// RequestReceived and StageTimestamp are when the API server received the request and
	// when it completed the stage (for ResponseComplete: sent the response).
	RequestReceived time.Time `json:"requestReceivedTimestamp"`
	StageTimestamp  time.Time `json:"stageTimestamp"`
	User            struct {
		Username string              `json:"username"`
		Extra    map[string][]string `json:"extra"`
	} `json:"user"`
	ObjectRef struct {
		Namespace   string `json:"namespace"`
		Resource    string `json:"resource"`
		Name        string `json:"name"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	// RequestObject is the request's body, for the requests recorded at Request level.
	RequestObject json.RawMessage `json:"requestObject"`
}

// Write reports whether the event is of a request that changes something.
func (ev *Event) Write() bool {
	switch ev.Verb {
	case "create", "update", "patch", "delete", "deletecollection":
		return true
	}
	return false
}

// Count counts the completed requests of an audit log that match, oldest first: the backups
// the API server rotated out (name-timestamp.ext, beside it), then the log itself.
func Count(path string, match func(Event) bool) (int, error) {
	ext := filepath.Ext(path)
	rotated, err := filepath.Glob(strings.TrimSuffix(path, ext) + "-*" + ext)
	if err != nil {
		return 0, fmt.Errorf("finding the rotated audit logs: %w", err)
	}
	sort.Strings(rotated) // their names end in the time of rotation
	count := 0
	for _, file := range append(rotated, path) {
		n, err := countFile(file, match)
		if err != nil {
			return 0, err
		}
		count += n
	}
	return count, nil
}

func countFile(path string, match func(Event) bool) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("opening the audit log: %w", err)
	}
	defer func() { _ = f.Close() }() // opened read-only: closing loses nothing
	count := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return 0, fmt.Errorf("decoding the audit log %s: %w", path, err)
		}
		if ev.Stage == "ResponseComplete" && match(ev) {
			count++
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading the audit log %s: %w", path, err)
	}
	return count, nil
}
