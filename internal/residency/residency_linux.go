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
// and read-only data; never a writable one, whose private copies would be lost) and returns
// how many bytes of address space it advised.
func ReleaseExecutable() (int64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("finding this process's executable: %w", err)
	}
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("reading this process's mappings: %w", err)
	}
	defer func() { _ = maps.Close() }()
	var released int64
	lines := bufio.NewScanner(maps)
	for lines.Scan() {
		// address perms offset dev inode path
		f := strings.Fields(lines.Text())
		if len(f) < 6 || f[5] != exe || f[1][0] != 'r' || f[1][1] != '-' || f[1][3] != 'p' {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			return released, fmt.Errorf("reading the mapping %q", lines.Text())
		}
		// madvise through the raw call: the range is an address the process does not hold as a
		// Go slice.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_DONTNEED); errno != 0 {
			return released, fmt.Errorf("releasing the mapping %s of %s: %w", f[0], exe, errno)
		}
		released += int64(end - start)
	}
	if err := lines.Err(); err != nil {
		return released, fmt.Errorf("reading this process's mappings: %w", err)
	}
	return released, nil
}
