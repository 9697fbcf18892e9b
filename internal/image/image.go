// Package image builds Latchkey's container image without a Docker daemon or a
// base image: one layer holding the static binary, FROM scratch, run as
// 65532:65532 (distroless's nonroot), with OCI labels. It is the shape the
// Dockerfile produces, built from this machine's own files
// (github.com/google/go-containerregistry).
package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Where things are in the image.
const (
	BinaryPath = "/latchkey"
	User       = "65532:65532"
)

// Options describe one build.
type Options struct {
	// Binary is the static latchkey binary (CGO_ENABLED=0) to put in the image.
	Binary string
	// Source, Revision and Version become the org.opencontainers.image labels.
	Source, Revision, Version string
	// Created is the image's creation time; the zero time keeps builds reproducible.
	Created time.Time
}

// Build assembles the image.
func Build(o Options) (v1.Image, error) {
	binary, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: BinaryPath[1:], Mode: 0o555, Size: int64(len(binary)),
		Typeflag: tar.TypeReg, ModTime: o.Created, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(binary); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Created = v1.Time{Time: o.Created}
	cfg.Config.Entrypoint = []string{BinaryPath}
	cfg.Config.User = User
	cfg.Config.WorkingDir = "/"
	cfg.Config.Labels = map[string]string{
		"org.opencontainers.image.title":    "latchkey",
		"org.opencontainers.image.source":   o.Source,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.licenses": "Apache-2.0",
	}
	return mutate.ConfigFile(img, cfg)
}

// Write stores img as an OCI image layout in dir (replacing it) and as a tarball
// that `docker load` and `podman load` accept, tagged ref.
func Write(img v1.Image, dir, tarPath, ref string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag.TagStr()})); err != nil {
		return fmt.Errorf("writing the OCI layout: %w", err)
	}
	return tarball.WriteToFile(tarPath, tag, img)
}
