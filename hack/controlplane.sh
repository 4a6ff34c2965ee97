#!/usr/bin/env bash
# Builds the Kubernetes control-plane binaries this project tests against from the Go
# module proxy, once, and caches them outside the repository keyed by version.
#
#   hack/controlplane.sh            build etcd + kube-apiserver (envtest), print their directory
#   hack/controlplane.sh --all      also kube-controller-manager, kube-scheduler and kwok
#   hack/controlplane.sh --kubelet  also the kubelet, for the local cluster's real nodes
#                                   (combines with --all; hack/realnode-deps.sh passes both)
#
# The directory printed on the last line of stdout is what KUBEBUILDER_ASSETS wants.
# Progress goes to stderr. A second run with everything cached is a no-op.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.7.3}"
KWOK_VERSION="${KWOK_VERSION:-0.8.0}"
CACHE_ROOT="${BRUPOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bottlerocket-update-operator}"
BIN_DIR="${CACHE_ROOT}/controlplane/k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"

want=(etcd kube-apiserver)
for arg in "$@"; do
  case "${arg}" in
    --all) want+=(kube-controller-manager kube-scheduler kwok) ;;
    --kubelet) want+=(kubelet) ;;
    *) echo "usage: $0 [--all] [--kubelet]" >&2; exit 2 ;;
  esac
done

log() { printf '[controlplane] %s\n' "$*" >&2; }

missing=()
for b in "${want[@]}"; do
  [[ -x "${BIN_DIR}/${b}" ]] || missing+=("$b")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "${BIN_DIR}"
  exit 0
fi

mkdir -p "${BIN_DIR}"
work="$(mktemp -d "${CACHE_ROOT}/build.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
export CGO_ENABLED=0 GOFLAGS=-mod=mod
build_flags=(-trimpath -ldflags=-s\ -w)

log "building ${missing[*]} into ${BIN_DIR}"
log "first time only: about 5 minutes for etcd + kube-apiserver on 2 cores, ~9 with --all, ~2 more for the kubelet"

# Kubernetes: a wrapper module that requires k8s.io/kubernetes and replaces each staging
# module (which kubernetes' own go.mod points at ./staging/src/...) by its published release.
build_k8s() {
  local dir="${work}/k8s" staging_version="v0.${K8S_VERSION#*.}"
  mkdir -p "${dir}" && cd "${dir}"
  go mod init brupop.local/k8s >/dev/null 2>&1
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  local staged
  staged="$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9./-]*\) => ./staging/src/.*#\1#p' "${gomod}")"
  for m in ${staged}; do
    go mod edit -replace="${m}=${m}@${staging_version}"
  done
  go mod edit -require="k8s.io/kubernetes@v${K8S_VERSION}"
  # The kubelet reports its version in the Node's status, which kubectl and the API server's
  # version skew checks parse: a module build leaves it "v0.0.0-master+$Format:%H$", so stamp it
  # as upstream's hack/lib/version.sh (kube::version::ldflags) does.
  local stamp="k8s.io/component-base/version" major="${K8S_VERSION%%.*}" minor
  minor="${K8S_VERSION#*.}" && minor="${minor%%.*}"
  local kubelet_ldflags="-s -w -X ${stamp}.gitVersion=v${K8S_VERSION} -X ${stamp}.gitMajor=${major}"
  kubelet_ldflags+=" -X ${stamp}.gitMinor=${minor} -X ${stamp}.gitTreeState=clean"
  for b in "$@"; do
    local flags=("${build_flags[@]}")
    [[ "${b}" != kubelet ]] || flags=(-trimpath "-ldflags=${kubelet_ldflags}")
    log "go build k8s.io/kubernetes/cmd/${b} (v${K8S_VERSION})"
    go build "${flags[@]}" -o "${BIN_DIR}/${b}.tmp" "k8s.io/kubernetes/cmd/${b}"
    mv "${BIN_DIR}/${b}.tmp" "${BIN_DIR}/${b}"
  done
}

build_module_main() { # name module version package
  local name="$1" module="$2" version="$3" pkg="$4" dir="${work}/$1"
  mkdir -p "${dir}" && cd "${dir}"
  go mod init "brupop.local/${name}" >/dev/null 2>&1
  go mod edit -require="${module}@${version}"
  log "go build ${pkg} (${version})"
  go build "${build_flags[@]}" -o "${BIN_DIR}/${name}.tmp" "${pkg}"
  mv "${BIN_DIR}/${name}.tmp" "${BIN_DIR}/${name}"
}

k8s_bins=()
for b in "${missing[@]}"; do
  case "$b" in
    etcd) build_module_main etcd go.etcd.io/etcd/server/v3 "v${ETCD_VERSION}" go.etcd.io/etcd/server/v3 ;;
    kwok) build_module_main kwok sigs.k8s.io/kwok "v${KWOK_VERSION}" sigs.k8s.io/kwok/cmd/kwok ;;
    *) k8s_bins+=("$b") ;;
  esac
done
[[ ${#k8s_bins[@]} -eq 0 ]] || build_k8s "${k8s_bins[@]}"

log "done: $(du -sh "${BIN_DIR}" | cut -f1) in ${BIN_DIR}"
echo "${BIN_DIR}"
