# The same image `make image` builds without Docker (internal/image): FROM scratch,
# one static binary (with Mozilla's root CAs compiled in), run as 65532:65532.
# `latchkey manager`, `latchkey tokenserver` and `latchkey authz` are its commands.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY authz/ authz/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
COPY tokenserver/ tokenserver/
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -o /out/latchkey ./cmd

FROM scratch
ARG VERSION=dev
ARG REVISION=""
LABEL org.opencontainers.image.title="latchkey" \
      org.opencontainers.image.source="https://github.com/latchkey-dev/latchkey" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/latchkey /latchkey
USER 65532:65532
ENTRYPOINT ["/latchkey"]
