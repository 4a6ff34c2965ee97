package residency

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// rssFile reads the file-backed part of this process's resident set, in KiB.
func rssFile(t *testing.T) int {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kib, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return kib
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

func TestReleaseExecutableShrinksTheResidentSet(t *testing.T) {
	before := rssFile(t)
	released, err := ReleaseExecutable()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	t.Logf("file-backed resident set %d KiB → %d KiB (%d KiB of address space advised)", before, after, released/1024)
	if released == 0 {
		t.Fatal("no read-only mapping of the executable was found")
	}
	// What stays: the writable data segment's pages (file-backed until written), and the pages
	// mapped back by what ran between the two readings.
	if after > before*3/4 {
		t.Errorf("the file-backed resident set went from %d KiB to %d KiB: the executable's pages were not released", before, after)
	}
	// What runs next maps its pages back: the process goes on.
	if _, err := os.ReadFile("/proc/self/status"); err != nil {
		t.Fatal(err)
	}
}
