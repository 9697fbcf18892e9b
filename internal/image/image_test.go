package image

import (
	"archive/tar"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The image is built from the real binary, written as make image writes it, loaded
// back from the OCI layout and the tarball, and its binary run.
func TestImageRunsTheBinaryAsNonRootFromScratch(t *testing.T) {
	dir := t.TempDir()
	binary := filepath.Join(dir, "latchkey")
	build := exec.Command("go", "build", "-trimpath", "-o", binary, "../../cmd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	img, err := Build(Options{Binary: binary, Source: "https://github.com/latchkey-dev/latchkey", Revision: "0123abc", Version: "v0.0.0-test"})
	if err != nil {
		t.Fatal(err)
	}
	layoutDir, tarPath := filepath.Join(dir, "oci"), filepath.Join(dir, "latchkey.tar")
	if err := Write(img, layoutDir, tarPath, "ghcr.io/latchkey-dev/latchkey:test"); err != nil {
		t.Fatal(err)
	}

	index, err := layout.ImageIndexFromPath(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := index.IndexManifest()
	if err != nil || len(manifest.Manifests) != 1 {
		t.Fatalf("the layout holds %v images (%v), want 1", manifest, err)
	}
	loaded, err := index.Image(manifest.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tarball.ImageFromPath(tarPath, nil); err != nil {
		t.Fatalf("the tarball does not load: %v", err)
	}
	cfg, err := loaded.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", cfg.Config.User)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/latchkey"}) {
		t.Errorf("entrypoint %v", cfg.Config.Entrypoint)
	}
	for label, want := range map[string]string{
		"org.opencontainers.image.source":   "https://github.com/latchkey-dev/latchkey",
		"org.opencontainers.image.revision": "0123abc",
		"org.opencontainers.image.version":  "v0.0.0-test",
	} {
		if got := cfg.Config.Labels[label]; got != want {
			t.Errorf("label %s = %q, want %q", label, got, want)
		}
	}
	if cfg.OS != "linux" {
		t.Errorf("os %q", cfg.OS)
	}

	// The filesystem holds the binary and nothing else: no shell, no package manager.
	var files []string
	extracted := filepath.Join(dir, "extracted-latchkey")
	tr := tar.NewReader(mutate.Extract(loaded))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, h.Name)
		if h.Name == "latchkey" {
			f, err := os.OpenFile(extracted, os.O_CREATE|os.O_WRONLY, 0o755)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
	}
	if !slices.Equal(files, []string{"latchkey"}) {
		t.Fatalf("the image holds %v, want only latchkey", files)
	}
	if slices.ContainsFunc(files, func(f string) bool { return strings.HasSuffix(f, "sh") }) {
		t.Fatal("the image holds a shell")
	}
	out, err := exec.Command(extracted, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "usage: latchkey <command>") {
		t.Fatalf("the image's binary does not run --help: %v\n%s", err, out)
	}
}
