# syntax=docker/dockerfile:1
#
# delta-exporter: one static binary on distroless, running as nonroot.
#
#   docker build \
#     --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg BRANCH=$(git rev-parse --abbrev-ref HEAD) \
#     --build-arg BUILD_DATE=$(date -u +%Y%m%d-%H:%M:%S) \
#     -t delta-exporter .
#
# The image runs `serve` by default; `capture` and `report` are the same
# binary with another first argument. There is no HEALTHCHECK: distroless
# has no shell or HTTP client. Probe GET /-/healthy and /-/ready on the
# serve port (9464) from the orchestrator, as deploy/kubernetes does.
#
# Base images are pinned by version; pin them by digest as well
# (image:tag@sha256:...) where your registry policy asks for it. The Go
# version must match the go directive of go.mod (a test checks it).

FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG REVISION=unknown
ARG BRANCH=unknown
ARG BUILD_USER=docker
ARG BUILD_DATE=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -o /out/delta-exporter \
      -ldflags="-s -w -X github.com/prometheus/common/version.Version=${VERSION} -X github.com/prometheus/common/version.Revision=${REVISION} -X github.com/prometheus/common/version.Branch=${BRANCH} -X github.com/prometheus/common/version.BuildUser=${BUILD_USER} -X github.com/prometheus/common/version.BuildDate=${BUILD_DATE}" \
      ./cmd/delta-exporter

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/delta-exporter /bin/delta-exporter
# 65532 is distroless's nonroot user.
USER 65532:65532
# serve keeps its state file in --data.dir (default ./data): nonroot's home
# is writable. Mount a volume there, or pass --data.dir, to keep it across
# container restarts as long as the snapshots are kept.
WORKDIR /home/nonroot
# 9464: serve (/metrics, /-/healthy, /-/ready); 11434: capture (proxy).
EXPOSE 9464 11434
ENTRYPOINT ["/bin/delta-exporter"]
CMD ["serve", "--snapshots.dir=/snapshots", "--web.listen-address=:9464"]
