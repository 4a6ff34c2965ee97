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
