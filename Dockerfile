# syntax=docker/dockerfile:1
# The one image of both components (-controller / -agent): a static binary on distroless.
#   docker build -t bottlerocket-update-operator:dev .      (make docker-build IMG=...)
# Without Docker, `make image` builds the same layout (the binary as /bottlerocket-update-operator,
# user 65532:65532, no shell) for linux/amd64 and linux/arm64 as an OCI tarball (hack/image).

FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
ARG TARGETOS=linux
ARG TARGETARCH
# Stamped into the binary (-version, the build_info metric); make docker-build passes them.
ARG VERSION=dev
ARG COMMIT=unknown
WORKDIR /src
# Dependencies first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
# The sources (.dockerignore leaves out tests, docs, manifests and build output).
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w -X github.com/bottlerocket-ops/update-operator/internal/buildinfo.Version=${VERSION} -X github.com/bottlerocket-ops/update-operator/internal/buildinfo.Commit=${COMMIT}" \
    -o /out/bottlerocket-update-operator .

# Static (no libc), no shell, runs as 65532:65532. The agent's DaemonSet overrides the user
# to root for the host API socket; the controller keeps nonroot.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /out/bottlerocket-update-operator /bottlerocket-update-operator
USER 65532:65532
ENTRYPOINT ["/bottlerocket-update-operator"]
