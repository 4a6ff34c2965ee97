package v1alpha1

import (
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"
)

// ParseVersion reads a Bottlerocket version: semantic ("1.26.1", "1.26.1-rc1", a leading "v"
// allowed) or dotted numeric with fewer fields ("1.26", read as "1.26.0"). Anything else, such
// as "1.26.1a5" or "1.26.01", is an error rather than a guess.
func ParseVersion(s string) (*version.Version, error) {
	if v, err := version.ParseSemantic(s); err == nil {
		return v, nil
	}
	v, err := version.ParseGeneric(s)
	if err != nil {
		return nil, err
	}
	if trimmed := strings.TrimPrefix(strings.TrimSpace(s), "v"); v.String() != trimmed {
		_, err := version.ParseSemantic(s)
		return nil, err
	}
	return v, nil
}

// CompareVersions orders two Bottlerocket versions: -1, 0 or +1. Versions compare as semantic
// versions (a pre-release sorts before its release); a version ParseVersion refuses sorts
// before every valid one, and two refused versions compare as strings, so that the order is
// total and a malformed offer is never taken for the newest.
func CompareVersions(a, b string) int {
	va, errA := ParseVersion(a)
	vb, errB := ParseVersion(b)
	switch {
	case errA != nil && errB != nil:
		return strings.Compare(a, b)
	case errA != nil:
		return -1
	case errB != nil:
		return 1
	case va.LessThan(vb):
		return -1
	case va.GreaterThan(vb):
		return 1
	}
	return 0
}

// releaseVersion is the form of a BottlerocketNode's spec.targetVersion (and of a pinned
// spec.version): three dotted numbers.
var releaseVersion = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)

// maxVersionLength is the longest version the API's version fields accept.
const maxVersionLength = 32

// IsReleaseVersion reports whether s is a release a rollout may target: three dotted numbers
// that ParseVersion reads (no leading zeros), short enough for spec.targetVersion. A
// pre-release, a build, a leading "v" or a malformed version is never a target of "latest".
func IsReleaseVersion(s string) bool {
	if len(s) > maxVersionLength || !releaseVersion.MatchString(s) {
		return false
	}
	_, err := ParseVersion(s)
	return err == nil
}
