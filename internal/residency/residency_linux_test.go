package residency

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// executableRSS sums the resident set of this process's read-only mappings of its
// executable, in KiB.
func executableRSS(t *testing.T) int {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	smaps, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = smaps.Close() }()
	total, counting := 0, false
	lines := bufio.NewScanner(smaps)
	for lines.Scan() {
		f := strings.Fields(lines.Text())
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && len(f[1]) == 4:
			counting = len(f) == 6 && f[5] == exe && f[1][1] == '-'
		case counting && len(f) == 3 && f[0] == "Rss:":
			kib, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			total += kib
		}
	}
	if err := lines.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}

func TestReleaseExecutableShrinksTheResidentSet(t *testing.T) {
	dynamic, err := dynamicallyLinked()
	if err != nil {
		t.Fatal(err)
	}
	if dynamic { // a -race or cgo build of this test
		if released, err := ReleaseExecutable(); err != nil || released != 0 {
			t.Fatalf("a binary linked against the C library: released %d bytes (err %v), want none", released, err)
		}
		return
	}
	before := executableRSS(t)
	released, err := ReleaseExecutable()
	if err != nil {
		t.Fatal(err)
	}
	after := executableRSS(t)
	t.Logf("the executable's read-only pages resident: %d KiB → %d KiB (%d KiB of address space advised)", before, after, released/1024)
	if released == 0 {
		t.Fatal("no read-only mapping of the executable was released")
	}
	// What stays: the pages mapped back by what ran between the two readings (in a binary this
	// small, reading /proc maps back a good part of it, 64 KiB around each page it runs), and a
	// segment the dynamic loader wrote (RELRO), which is left alone.
	if after >= before*9/10 {
		t.Errorf("the executable's read-only pages went from %d KiB to %d KiB resident: they were not released", before, after)
	}
}
