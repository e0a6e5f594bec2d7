# ImageShift container image: the type-erased production build on Node 24, non-root.
#
#   docker build -t imageshift:dev .
#
# Stage 1 installs everything (TypeScript is needed to erase types); stage 2 keeps only
# production dependencies and build/. No init process: the server handles SIGTERM itself
# (docs/webhook.md, "Shutdown"), and Node runs as PID 1 with its own signal handlers.

FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# The `node` devDependency would download a second Node binary; the image already has Node 24.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --ignore-scripts

FROM node:24-bookworm-slim
# OCI annotations (https://github.com/opencontainers/image-spec/blob/main/annotations.md).
LABEL org.opencontainers.image.title="ImageShift" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook operator that redirects container images to other registries by rules held in custom resources." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.base.name="docker.io/library/node:24-bookworm-slim"
ENV NODE_ENV=production \
    # docs/performance.md: a small young generation and a heap cap keep RSS under 120 MB with
    # 10,000 rules at a p99 near 1 ms; the chart sets the same through `nodeOptions`.
    NODE_OPTIONS="--max-semi-space-size=2 --max-old-space-size=96" \
    # docs/performance.md: glibc's malloc otherwise keeps freed 32-128 KiB blocks (V8 compiler
    # zones, TLS buffers) in a fragmented heap; from 32 KiB up they are mapped and unmapped.
    # Measured: peak RSS 12-15 MB lower in every benchmark row, no slower.
    MALLOC_MMAP_THRESHOLD_=32768
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/build ./build
# The image's `node` user (uid 1000); the chart also sets runAsNonRoot and a read-only root
# file system: ImageShift writes nothing to disk in cluster mode.
USER 1000:1000
EXPOSE 8443 8080
ENTRYPOINT ["node", "build/main.js"]
CMD ["serve"]
