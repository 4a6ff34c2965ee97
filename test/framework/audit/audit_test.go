package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// An audit log the API server rotated is read whole: its backups, oldest first, then the log.
func TestCountReadsRotatedBackups(t *testing.T) {
	dir := t.TempDir()
	event := func(name, stage string) string {
		return fmt.Sprintf(`{"verb":"patch","stage":%q,"objectRef":{"resource":"pods","name":%q}}`+"\n", stage, name)
	}
	files := map[string]string{
		"audit-2026-11-23T23-56-09.667.log": event("a", "ResponseStarted") + event("a", "ResponseComplete"),
		"audit-2026-11-24T00-27-19.961.log": event("b", "ResponseComplete"),
		"audit.log":                         event("c", "ResponseComplete"),
		"other.log":                         event("x", "ResponseComplete"),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var order []string
	n, err := Count(filepath.Join(dir, "audit.log"), func(ev Event) bool {
		order = append(order, ev.ObjectRef.Name)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(order); n != 3 || got != "[a b c]" {
		t.Errorf("Count = %d over %s, want 3 over [a b c] (completed requests, oldest first)", n, got)
	}
}

// An event says when the API server received the request and whether it changed something,
// as the audit log records it (audit.k8s.io/v1 Event: requestReceivedTimestamp, verb).
func TestEventTimesAndWrites(t *testing.T) {
	dir := t.TempDir()
	log := `{"verb":"list","stage":"ResponseComplete","requestReceivedTimestamp":"2026-12-02T10:00:00.123456Z","stageTimestamp":"2026-12-02T10:00:00.125000Z"}
{"verb":"patch","stage":"ResponseComplete","requestReceivedTimestamp":"2026-12-02T10:00:01.000000Z","stageTimestamp":"2026-12-02T10:00:01.004000Z"}
`
	path := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	var events []Event
	if _, err := Count(path, func(ev Event) bool { events = append(events, ev); return true }); err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 || events[0].Write() || !events[1].Write() {
		t.Fatalf("events %+v: want a read, then a write", events)
	}
	if took := events[0].StageTimestamp.Sub(events[0].RequestReceived); took != 1544*time.Microsecond {
		t.Errorf("the list took %s, want 1.544ms", took)
	}
}
