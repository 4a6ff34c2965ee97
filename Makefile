# Bottlerocket update operator — developer entry points. `make help` lists them.

IMG ?= bottlerocket-update-operator:dev
CONTROLLER_TOOLS_VERSION ?= v0.23.0
LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
# golangci-lint is pinned in hack/lint/go.mod (its own module) and built from the Go module
# proxy once into a cache outside the repository, shared by every checkout of the project.
GOLANGCI_LINT_VERSION = $(shell sed -n 's#^\(require\)\{0,1\}[[:space:]]*github.com/golangci/golangci-lint/v2 \(v[^[:space:]]*\).*#\2#p' hack/lint/go.mod)
TOOLS_CACHE = $${BRUPOP_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/bottlerocket-update-operator}/tools
GOLANGCI_LINT = $(TOOLS_CACHE)/golangci-lint-$(GOLANGCI_LINT_VERSION)
# helm is pinned in hack/helm/go.mod (its own module) and built the same way, stamped as helm's
# own build stamps it (its version, and the Kubernetes version of its client libraries as the
# default cluster version of `helm template`); the chart's tests find it through HELM.
HELM_VERSION = $(shell sed -n 's#^\(require\)\{0,1\}[[:space:]]*helm.sh/helm/v3 \(v[^[:space:]]*\).*#\2#p' hack/helm/go.mod)
HELM = $(TOOLS_CACHE)/helm-$(HELM_VERSION)
# promtool is pinned in hack/promtool/go.mod (its own module) and built the same way, stamped with
# the Prometheus release its module version stands for (module v0.316.0 is Prometheus 3.16.0);
# the alert rules' and dashboard's tests find it through PROMTOOL.
PROMTOOL_VERSION = $(shell sed -n 's#^\(require\)\{0,1\}[[:space:]]*github.com/prometheus/prometheus \(v[^[:space:]]*\).*#\2#p' hack/promtool/go.mod)
PROMTOOL = $(TOOLS_CACHE)/promtool-$(PROMTOOL_VERSION)
# krew, kubectl's plugin manager, is pinned in hack/krew/go.mod; the plugin's release test
# installs the plugin with it (found through KREW).
KREW_VERSION = $(shell sed -n 's#^\(require\)\{0,1\}[[:space:]]*sigs.k8s.io/krew \(v[^[:space:]]*\).*#\2#p' hack/krew/go.mod)
KREW = $(TOOLS_CACHE)/krew-$(KREW_VERSION)
KUBECTL ?= kubectl
GO_TEST_FLAGS ?= -race
BINARY := bottlerocket-update-operator
# Stamped into the binary (-version, the build_info metric) and the image's labels.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILDINFO := github.com/bottlerocket-ops/update-operator/internal/buildinfo
LDFLAGS := -s -w -X $(BUILDINFO).Version=$(VERSION) -X $(BUILDINFO).Commit=$(COMMIT)

# The control-plane binaries (etcd, kube-apiserver) are built from the Go module proxy once and
# cached outside the repository; hack/controlplane.sh prints their directory.
KUBEBUILDER_ASSETS_CMD = $(CURDIR)/hack/controlplane.sh

.PHONY: all
all: build

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ { printf "  %-18s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Demo

.PHONY: demo
demo: ## Show a rollout through a simulated Bottlerocket fleet on a local cluster (NODES=20, DEMO_FLAGS=-keep).
	@echo "==> The first run on a fresh machine takes about 13 minutes on 2 cores: Go modules, this demo, and etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok built from source (then cached). Later runs reach the rollout in under a minute."
	go run ./hack/demo -nodes $(or $(NODES),20) $(DEMO_FLAGS)

##@ Local cluster

.PHONY: cluster-up
cluster-up: ## Run a whole local cluster (etcd, apiserver, KCM, scheduler, kwok) with NODES Bottlerocket nodes until Ctrl-C.
	@hack/controlplane.sh --all >/dev/null
	go run ./hack/cluster up -nodes $(or $(NODES),20) -dir .cluster

.PHONY: cluster-down
cluster-down: ## Stop a local cluster left behind in .cluster.
	go run ./hack/cluster down -dir .cluster

.PHONY: test-cluster
test-cluster: ## Run the local-cluster tests (builds the five binaries once).
	@hack/controlplane.sh --all >/dev/null
	go test ./test/framework/localcluster/ -count=1 -v

.PHONY: test-realnode
test-realnode: ## Run a real node (containerd, runc, the kubelet) in a local cluster and check it leaves nothing behind; installs them once (root).
	@hack/realnode-deps.sh >/dev/null
	go test ./test/framework/realnode/ -count=1 -v -timeout 10m

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and the two RBAC roles from markers.
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=controller-role paths=./controllers/... output:rbac:artifacts:config=config/rbac/controller
	$(CONTROLLER_GEN) rbac:roleName=agent-role paths=./agent/... output:rbac:artifacts:config=config/rbac/agent

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code from markers.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: fmt
fmt: ## Run gofmt on the module.
	gofmt -l -w $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './bin/*')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: ## Run golangci-lint (.golangci.yml) on the module; builds the pinned version once.
	@lint="$$($(MAKE) --no-print-directory -s golangci-lint)" && "$$lint" run ./...

.PHONY: golangci-lint
golangci-lint: ## Build (once) the pinned golangci-lint into the tools cache and print its path.
	@lint="$(GOLANGCI_LINT)"; \
	if [ ! -x "$$lint" ]; then \
	  echo "==> building golangci-lint $(GOLANGCI_LINT_VERSION) into $$lint (first time only)" >&2; \
	  mkdir -p "$$(dirname "$$lint")" && \
	  go -C hack/lint build -trimpath -o "$$lint.tmp$$$$" github.com/golangci/golangci-lint/v2/cmd/golangci-lint && \
	  mv "$$lint.tmp$$$$" "$$lint" || exit 1; \
	fi; \
	echo "$$lint"

.PHONY: helm
helm: ## Build (once) the pinned helm into the tools cache and print its path.
	@helm="$(HELM)"; \
	if [ ! -x "$$helm" ]; then \
	  echo "==> building helm $(HELM_VERSION) into $$helm (first time only)" >&2; \
	  mkdir -p "$$(dirname "$$helm")" && \
	  k8s_minor="$$(go -C hack/helm list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)" && \
	  CGO_ENABLED=0 go -C hack/helm build -trimpath -o "$$helm.tmp$$$$" \
	    -ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$$k8s_minor -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$$k8s_minor" \
	    helm.sh/helm/v3/cmd/helm && \
	  mv "$$helm.tmp$$$$" "$$helm" || exit 1; \
	fi; \
	echo "$$helm"

.PHONY: promtool
promtool: ## Build (once) the pinned promtool into the tools cache and print its path (without service discovery, which checking rules and metrics does not use).
	@promtool="$(PROMTOOL)"; \
	if [ ! -x "$$promtool" ]; then \
	  echo "==> building promtool $(PROMTOOL_VERSION) into $$promtool (first time only)" >&2; \
	  mkdir -p "$$(dirname "$$promtool")" && \
	  release="$$(echo $(PROMTOOL_VERSION) | sed -n 's#^v0\.\([0-9]\)\([0-9][0-9]\)\.\([0-9]*\)$$#\1.\2.\3#p' | sed 's#\.0\([0-9]\)\.#.\1.#')" && \
	  CGO_ENABLED=0 go -C hack/promtool build -trimpath -tags remove_all_sd -o "$$promtool.tmp$$$$" \
	    -ldflags="-s -w -X github.com/prometheus/common/version.Version=$$release" \
	    github.com/prometheus/prometheus/cmd/promtool && \
	  mv "$$promtool.tmp$$$$" "$$promtool" || exit 1; \
	fi; \
	echo "$$promtool"

.PHONY: krew
krew: ## Build (once) the pinned krew into the tools cache and print its path.
	@krew="$(KREW)"; \
	if [ ! -x "$$krew" ]; then \
	  echo "==> building krew $(KREW_VERSION) into $$krew (first time only)" >&2; \
	  mkdir -p "$$(dirname "$$krew")" && \
	  CGO_ENABLED=0 go -C hack/krew build -trimpath -o "$$krew.tmp$$$$" \
	    -ldflags="-s -w -X sigs.k8s.io/krew/internal/version.gitTag=$(KREW_VERSION)" sigs.k8s.io/krew/cmd/krew && \
	  mv "$$krew.tmp$$$$" "$$krew" || exit 1; \
	fi; \
	echo "$$krew"

.PHONY: verify
verify: manifests generate build-installer ## Regenerate everything and fail if anything generated, formatted or linted is stale.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed on:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...
	@git diff --exit-code -- config api dist charts || { echo "generated files are stale: run 'make manifests generate build-installer' and commit"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- config/crd/bases config/rbac api dist charts)" || { echo "untracked generated files:"; git status --porcelain --untracked-files=all -- config/crd/bases config/rbac api dist charts; exit 1; }
	$(MAKE) --no-print-directory lint

.PHONY: controlplane
controlplane: ## Build (once) and print the cached etcd + kube-apiserver directory.
	@$(KUBEBUILDER_ASSETS_CMD)

.PHONY: test
test: manifests generate fmt vet ## Run all tests against a real API server (envtest); builds helm, promtool and krew once for the chart's, alert rules' and plugin release's tests.
	HELM="$$($(MAKE) --no-print-directory -s helm)" PROMTOOL="$$($(MAKE) --no-print-directory -s promtool)" KREW="$$($(MAKE) --no-print-directory -s krew)" KUBEBUILDER_ASSETS="$$($(KUBEBUILDER_ASSETS_CMD))" go test $(GO_TEST_FLAGS) ./... -timeout 30m

.PHONY: test-e2e
test-e2e: ## Rollout scenarios on a local cluster with a simulated fleet, watched by an independent invariant checker.
	@hack/controlplane.sh --all >/dev/null
	go test -tags e2e ./test/e2e/ -count=1 -v -timeout 20m

.PHONY: bench
bench: ## Run the benchmarks and print their figures (docs/performance.md; about 25 min).
	go test -run '^$$' -bench . -benchmem $$(go list ./... | grep -v /test/bench)
	KUBEBUILDER_ASSETS="$$($(KUBEBUILDER_ASSETS_CMD))" go test -run '^$$' -bench AgentIdleRSS -benchtime 60x ./test/bench
	KUBEBUILDER_ASSETS="$$($(KUBEBUILDER_ASSETS_CMD))" go test -run '^$$' -bench Controller -benchtime 1x -timeout 90m ./test/bench

##@ Build

.PHONY: build
build: ## Build the static operator binary into bin/ (VERSION and COMMIT stamped in).
	CGO_ENABLED=0 go build -trimpath -ldflags='$(LDFLAGS)' -o $(LOCALBIN)/$(BINARY) .

.PHONY: plugin
plugin: ## Build the kubectl plugin into bin/kubectl-bottlerocket (copy it onto PATH: kubectl bottlerocket ...).
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o $(LOCALBIN)/kubectl-bottlerocket ./cmd/kubectl-bottlerocket

.PHONY: plugin-release
plugin-release: ## Build the plugin's release into bin/plugin-release: an archive per platform and the krew manifest (VERSION must be vX.Y.Z).
	go run ./hack/pluginrelease -version $(VERSION) -commit $(COMMIT) -epoch $$(git log -1 --format=%ct 2>/dev/null || echo 0) \
	  -out $(LOCALBIN)/plugin-release

.PHONY: image
image: ## Build the OCI image (linux/amd64 + linux/arm64) without Docker into bin/image/ (VERSION, COMMIT stamped).
	go run ./hack/image -version $(VERSION) -commit $(COMMIT) -epoch $$(git log -1 --format=%ct 2>/dev/null || echo 0) \
	  -out $(LOCALBIN)/image/$(BINARY).oci.tar

.PHONY: run
run: manifests generate fmt vet ## Run the controller against the current kubeconfig.
	go run . -controller

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMG) .

##@ Deployment

.PHONY: install
install: manifests ## Install the CRDs into the cluster of the current kubeconfig.
	$(KUBECTL) apply --server-side -k config/crd

.PHONY: uninstall
uninstall: manifests ## Remove the CRDs from the cluster of the current kubeconfig.
	$(KUBECTL) delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: manifests ## Deploy the operator (image $(IMG)) to the cluster of the current kubeconfig.
	$(KUBECTL) kustomize config/default | sed 's|image: bottlerocket-update-operator:latest|image: $(IMG)|' | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: ## Remove the operator cleanly: UpdatePolicies first, wait for the nodes' release (TIMEOUT=600 s), then the rest.
	KUBECTL=$(KUBECTL) hack/uninstall.sh

# The image written into dist/install.yaml; the committed file keeps the placeholder.
INSTALLER_IMG ?= bottlerocket-update-operator:latest

.PHONY: build-installer
build-installer: manifests ## Render config/default into dist/install.yaml (image $(INSTALLER_IMG)) and the Helm chart from it.
	@mkdir -p dist
	$(KUBECTL) kustomize config/default | sed 's|image: bottlerocket-update-operator:latest|image: $(INSTALLER_IMG)|' > dist/install.yaml
	go run ./hack/chartgen

.PHONY: get-nodes-status
get-nodes-status: ## Print the fleet's update state.
	@$(KUBECTL) get updatepolicies.updates.bottlerocket.aws -o wide
	@$(KUBECTL) get bottlerocketnodes.updates.bottlerocket.aws -o wide

$(CONTROLLER_GEN):
	go -C hack/tools build -o $(CONTROLLER_GEN) sigs.k8s.io/controller-tools/cmd/controller-gen
