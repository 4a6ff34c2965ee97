package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
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
