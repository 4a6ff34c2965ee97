// Package audit holds what this project's tests and tools share about the API server's audit
// log: the policy they run it with, and a reader of its events.
package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
)

// Policy records, at metadata level, every request that changes something.
const Policy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
`

// Event is the part of an API server audit event that is read here.
type Event struct {
	Verb  string `json:"verb"`
	Stage string `json:"stage"`
	User  struct {
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
}

// Count counts the completed requests of an audit log that match.
func Count(path string, match func(Event) bool) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("opening the audit log: %w", err)
	}
	defer f.Close()
	count := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return 0, fmt.Errorf("decoding the audit log: %w", err)
		}
		if ev.Stage == "ResponseComplete" && match(ev) {
			count++
		}
	}
	return count, sc.Err()
}
