# One image, one static binary: `latchkey manager` and `latchkey tokenserver`.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
COPY tokenserver/ tokenserver/
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/latchkey ./cmd

# distroless static, non-root (uid 65532): no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/latchkey /latchkey
USER 65532:65532
ENTRYPOINT ["/latchkey"]
