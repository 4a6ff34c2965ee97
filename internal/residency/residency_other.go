//go:build !linux

package residency

// ReleaseExecutable does nothing outside Linux.
func ReleaseExecutable() (int64, error) { return 0, nil }
