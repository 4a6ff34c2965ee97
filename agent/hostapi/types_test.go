package hostapi

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func readFixtures(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob("testdata/*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

func TestDecodeStatusFixtures(t *testing.T) {
	fx := readFixtures(t)
	ts := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for name, check := range map[string]func(*testing.T, *UpdateStatus){
		"reference.json": func(t *testing.T, s *UpdateStatus) {
			if s.ChosenVersion() != "1.26.1" || s.ActivePartition.Image.Version != "1.25.2" || !s.ActivePartition.NextToBoot ||
				s.StagedVersion() != "1.26.1" || len(s.AvailableUpdates) != 3 || !s.MostRecentCommand.Timestamp.Equal(ts("2026-11-23T19:00:00Z")) {
				t.Errorf("decoded %+v", s)
			}
		},
		"ready.json": func(t *testing.T, s *UpdateStatus) {
			c := s.MostRecentCommand
			if s.State != StateReady || c.Type != CommandActivate || c.Status != CommandSuccess || !c.Timestamp.Equal(ts("2026-11-23T19:04:31.482913057Z")) ||
				!s.StagingPartition.NextToBoot || s.ActivePartition.NextToBoot {
				t.Errorf("decoded %+v", s)
			}
		},
		"idle-nulls.json": func(t *testing.T, s *UpdateStatus) {
			if s.State != StateIdle || s.ChosenUpdate != nil || s.ActivePartition != nil || s.StagingPartition != nil ||
				s.MostRecentCommand != nil || s.ChosenVersion() != "" || s.StagedVersion() != "" {
				t.Errorf("decoded %+v", s)
			}
		},
		"prepare-failed.json": func(t *testing.T, s *UpdateStatus) {
			e := failedError(s.MostRecentCommand)
			if e.Command != CommandPrepare || e.ExitStatus != 1 || e.Stderr == "" || s.StagedVersion() != "" ||
				!s.MostRecentCommand.Timestamp.Equal(ts("2026-11-23T19:02:00.5Z")) {
				t.Errorf("decoded %+v, error %+v", s, e)
			}
		},
		"command-nulls.json": func(t *testing.T, s *UpdateStatus) {
			c := s.MostRecentCommand
			if c.Status.Final() || c.ExitStatus != nil || c.Stderr != nil || failedError(c).ExitStatus != -1 {
				t.Errorf("decoded %+v", c)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := DecodeStatus(fx[name])
			if err != nil {
				t.Fatal(err)
			}
			check(t, s)
		})
	}
}

func TestDecodeStatusRejects(t *testing.T) {
	for _, in := range []string{"", "  ", "null", "[]", `"Idle"`, `{"update_state": 3}`, `{"most_recent_command":{"timestamp":"yesterday"}}`, `{`} {
		if s, err := DecodeStatus([]byte(in)); err == nil {
			t.Errorf("DecodeStatus(%q) = %+v, want an error", in, s)
		}
	}
}

// FuzzDecodeStatus checks that no document makes the decoder panic, and that
// what it accepts survives a round trip through the wire format.
func FuzzDecodeStatus(f *testing.F) {
	for _, b := range readFixtures(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"update_state":"Available","most_recent_command":{"cmd_type":"refresh","cmd_status":"Success","timestamp":"2026-11-23T19:00:00.000000001Z","exit_status":null,"stderr":null}}`))
	f.Add([]byte(`{"chosen_update":{},"active_partition":{"image":null},"available_updates":null}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := DecodeStatus(data)
		if err != nil {
			return
		}
		_, _ = s.ChosenVersion(), s.StagedVersion()
		if c := s.MostRecentCommand; c != nil && c.Status == CommandFailed {
			_ = failedError(c).Error()
		}
		b, err := json.Marshal(s)
		if err != nil {
			return // e.g. a timestamp whose year does not fit RFC 3339
		}
		again, err := DecodeStatus(b)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", b, err)
		}
		if again.State != s.State || again.ChosenVersion() != s.ChosenVersion() || again.StagedVersion() != s.StagedVersion() {
			t.Fatalf("round trip changed %+v into %+v", s, again)
		}
	})
}
