#!/usr/bin/env bash
# Installs what the local cluster's real nodes (test/framework/realnode) need on this machine:
# containerd, runc and the CNI plugins from Debian's packages, and the kubelet built from the Go
# module proxy and cached beside the other control-plane binaries (hack/controlplane.sh).
#
#   hack/realnode-deps.sh     install what is missing, print the binaries' directory
#
# Needs root to install packages (a real node needs root anyway). The directory printed on the
# last line of stdout holds the kubelet; progress goes to stderr. A second run is a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."

# containerd: the container runtime the kubelet talks CRI to (and ctr, which imports images);
# runc: what containerd runs containers with; containernetworking-plugins: the bridge,
# host-local and loopback CNI plugins the pods' network uses (/usr/lib/cni).
packages=(containerd runc containernetworking-plugins)

log() { printf '[realnode-deps] %s\n' "$*" >&2; }

missing=()
for p in "${packages[@]}"; do
  [[ "$(dpkg-query -W -f='${Status}' "${p}" 2>/dev/null || true)" == "install ok installed" ]] || missing+=("${p}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ "${EUID}" -ne 0 ]]; then
    log "${missing[*]} not installed, and installing them needs root: sudo $0"
    exit 1
  fi
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

hack/controlplane.sh --all --kubelet
