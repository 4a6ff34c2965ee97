package residency

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ReleaseExecutable drops this process's mappings of its executable's read-only segments (code
// and read-only data) that hold only the file's own pages, and returns how many bytes of
// address space it advised. A mapping with pages of the process's own is left alone: a
// writable segment, or a read-only one the dynamic loader wrote before protecting it (the
// relocated GOT, RELRO), whose contents would go back to the file's. A binary linked against
// the C library (a cgo build; the operator's image is static) is left alone altogether: its
// loader's writes are not all visible in the mappings.
func ReleaseExecutable() (int64, error) {
	if dynamic, err := dynamicallyLinked(); err != nil || dynamic {
		return 0, err
	}
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("finding this process's executable: %w", err)
	}
	ranges, err := fileOnlyMappings(exe)
	if err != nil {
		return 0, err
	}
	var released int64
	for _, r := range ranges {
		// madvise through the raw call: the range is an address the process does not hold as
		// a Go slice.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(r.start), uintptr(r.end-r.start), unix.MADV_DONTNEED); errno != 0 {
			return released, fmt.Errorf("releasing the mapping %x-%x of %s: %w", r.start, r.end, exe, errno)
		}
		released += int64(r.end - r.start)
	}
	return released, nil
}

type addressRange struct{ start, end uint64 }

// fileOnlyMappings returns the read-only private mappings of exe that hold no page of the
// process's own (smaps' Anonymous is 0).
func fileOnlyMappings(exe string) ([]addressRange, error) {
	smaps, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, fmt.Errorf("reading this process's mappings: %w", err)
	}
	defer func() { _ = smaps.Close() }()
	var (
		out       []addressRange
		current   addressRange
		candidate bool
	)
	lines := bufio.NewScanner(smaps)
	for lines.Scan() {
		f := strings.Fields(lines.Text())
		if len(f) >= 5 && strings.Contains(f[0], "-") && len(f[1]) == 4 { // address perms offset dev inode [path]
			if candidate {
				out = append(out, current)
			}
			if current, err = parseRange(f[0]); err != nil {
				return nil, err
			}
			candidate = readOnlyPrivate(f, exe)
			continue
		}
		if len(f) >= 2 && f[0] == "Anonymous:" && f[1] != "0" {
			candidate = false
		}
	}
	if err := lines.Err(); err != nil {
		return nil, fmt.Errorf("reading this process's mappings: %w", err)
	}
	if candidate {
		out = append(out, current)
	}
	return out, nil
}

// readOnlyPrivate reports whether a mapping's header fields name a read-only private mapping
// of exe.
func readOnlyPrivate(f []string, exe string) bool {
	return len(f) == 6 && f[5] == exe && f[1][0] == 'r' && f[1][1] == '-' && f[1][3] == 'p'
}

// parseRange reads a mapping's "start-end" (hexadecimal).
func parseRange(s string) (addressRange, error) {
	lo, hi, _ := strings.Cut(s, "-")
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || end <= start {
		return addressRange{}, fmt.Errorf("reading the mapping address %q", s)
	}
	return addressRange{start, end}, nil
}

// dynamicallyLinked reports whether the process maps a shared library.
func dynamicallyLinked() (bool, error) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return false, fmt.Errorf("reading this process's mappings: %w", err)
	}
	for _, line := range strings.Split(string(maps), "\n") {
		if f := strings.Fields(line); len(f) == 6 && (strings.HasSuffix(f[5], ".so") || strings.Contains(f[5], ".so.")) {
			return true, nil
		}
	}
	return false, nil
}
