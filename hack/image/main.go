// Command image is `make image`: it builds Latchkey's image from bin/latchkey with
// internal/image (no Docker daemon, no base image to pull) and writes it under bin/
// as an OCI layout and a loadable tarball.
package main

import (
	"flag"
	"fmt"
	"log"

	"github.com/latchkey-dev/latchkey/internal/image"
)

func main() {
	var o image.Options
	var dir, tarPath, ref string
	flag.StringVar(&o.Binary, "binary", "bin/latchkey", "the static binary to put in the image")
	flag.StringVar(&o.Source, "source", "https://github.com/latchkey-dev/latchkey", "org.opencontainers.image.source")
	flag.StringVar(&o.Revision, "revision", "", "org.opencontainers.image.revision (the git commit)")
	flag.StringVar(&o.Version, "version", "dev", "org.opencontainers.image.version")
	flag.StringVar(&dir, "layout", "bin/image/oci", "directory of the OCI image layout")
	flag.StringVar(&tarPath, "tarball", "bin/image/latchkey.tar", "the image as a tarball (docker load, podman load)")
	flag.StringVar(&ref, "tag", "ghcr.io/latchkey-dev/latchkey:dev", "the tag the tarball carries")
	flag.Parse()
	img, err := image.Build(o)
	if err != nil {
		log.Fatal(err)
	}
	if err := image.Write(img, dir, tarPath, ref); err != nil {
		log.Fatal(err)
	}
	digest, err := img.Digest()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s %s\nlayout: %s\ntarball: %s\n", ref, digest, dir, tarPath)
}
