package v1alpha1

import "testing"

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.26.1", "1.26.1", 0},
		{"v1.26.1", "1.26.1", 0},
		{"1.26", "1.26.0", 0},
		{"1.26.0", "1.26.1", -1},
		{"1.9.0", "1.10.0", -1},
		{"1.20.10", "1.20.9", 1},
		{"2.0.0", "1.99.99", 1},
		// A pre-release comes before its release, and before the next patch.
		{"1.26.0-rc1", "1.26.0", -1},
		{"1.26.0-rc1", "1.26.1", -1},
		{"1.26.1-rc1", "1.26.1-rc2", -1},
		// Malformed versions are never read as something else ("1.26.1a5" is not 1.26.15,
		// nor 1.26.1): they sort before every valid version.
		{"1.26.1a5", "1.26.1", -1},
		{"1.26.1a5", "1.26.15", -1},
		{"1.26.01", "0.0.1", -1},
		{"", "0.0.0", -1},
		{"garbage", "garbage", 0},
	} {
		if got := CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := CompareVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestIsReleaseVersion(t *testing.T) {
	for s, want := range map[string]bool{
		"1.26.1": true, "0.0.0": true, "10.200.3000": true,
		"v1.26.1": false, "1.26": false, "1.26.1-rc1": false, "1.26.1+build": false,
		"1.26.01": false, "1.26.1a5": false, "": false, "latest": false,
		"1.2.123456789012345678901234567890": false, // longer than spec.targetVersion allows
	} {
		if got := IsReleaseVersion(s); got != want {
			t.Errorf("IsReleaseVersion(%q) = %v, want %v", s, got, want)
		}
	}
}
