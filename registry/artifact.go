package registry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of the filter artifact. plexus pushes the CNCF Wasm OCI artifact layout;
// it pulls that and the layouts other tools push Proxy-Wasm modules in.
const (
	// The CNCF layout: this config, one layer of MediaTypeWasm.
	MediaTypeWasmConfig = "application/vnd.wasm.config.v0+json"
	MediaTypeWasm       = "application/wasm"

	// Istio's and Solo's "oci" variant (the layer holds the module itself).
	MediaTypeIstioConfig = "application/vnd.module.wasm.config.v1+json"
	MediaTypeIstioLayer  = "application/vnd.module.wasm.content.layer.v1+wasm"
	// wasm-to-oci's, and ORAS users': a config of any type, a layer of the module.
	MediaTypeWasmToOCI = "application/vnd.wasm.content.layer.v1+wasm"
	// Istio's "compat" variant: an image whose one layer is a tar.gz holding plugin.wasm.
	mediaTypeOCITarGzip    = "application/vnd.oci.image.layer.v1.tar+gzip"
	mediaTypeDockerTarGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// Annotations plexus writes on a filter's manifest (and reads back in inspect).
const (
	AnnotationDescription  = ocispec.AnnotationDescription // "org.opencontainers.image.description"
	AnnotationCreated      = ocispec.AnnotationCreated
	AnnotationABI          = "dev.plexus.filter.abi"           // "proxy-wasm/0.2.1"
	AnnotationConfigSchema = "dev.plexus.filter.config-schema" // the JSON Schema of the filter's config
)

// MaxModuleSize bounds a module pulled or pushed (64 MiB): Go-built filters are a few MiB.
const MaxModuleSize = 64 << 20

// ErrNotWasm is a module that does not begin with the Wasm binary magic and version 1.
var ErrNotWasm = errors.New("registry: not a WebAssembly module")

// ErrNotFilter is a manifest that is not a filter's: an index, or no one Wasm layer, or
// one too large.
var ErrNotFilter = errors.New("registry: not a filter's manifest")

// CheckWasm checks that b is a WebAssembly binary module (magic "\0asm", version 1) no
// larger than MaxModuleSize.
func CheckWasm(b []byte) error {
	if len(b) > MaxModuleSize {
		return fmt.Errorf("registry: module is %d bytes, more than the %d allowed", len(b), MaxModuleSize)
	}
	if len(b) < 8 || !bytes.Equal(b[:8], []byte("\x00asm\x01\x00\x00\x00")) {
		return ErrNotWasm
	}
	return nil
}

// Meta is what a filter's artifact says of it besides its bytes.
type Meta struct {
	Description  string // annotation org.opencontainers.image.description
	ABI          string // annotation dev.plexus.filter.abi, "proxy-wasm/0.2.1" by default
	ConfigSchema []byte // annotation dev.plexus.filter.config-schema: a JSON Schema, or nil
	Created      time.Time
}

// wasmConfig is the CNCF layout's config blob.
type wasmConfig struct {
	Created      string          `json:"created,omitempty"`
	Architecture string          `json:"architecture"`
	OS           string          `json:"os"`
	LayerDigests []digest.Digest `json:"layerDigests"`
}

// Artifact is a filter packed as the CNCF Wasm OCI artifact: its manifest, config and
// layer, each with its descriptor, ready to push.
type Artifact struct {
	Manifest, Config, Layer             []byte
	ManifestDesc, ConfigDesc, LayerDesc ocispec.Descriptor
}

// Pack makes the artifact of a module: config application/vnd.wasm.config.v0+json, one
// layer application/wasm, and the annotations of m on the manifest.
func Pack(wasm []byte, m Meta) (*Artifact, error) {
	if err := CheckWasm(wasm); err != nil {
		return nil, err
	}
	if m.ABI == "" {
		m.ABI = "proxy-wasm/0.2.1"
	}
	if m.Created.IsZero() {
		m.Created = time.Now().UTC()
	}
	created := m.Created.UTC().Format(time.RFC3339)
	a := &Artifact{Layer: wasm}
	a.LayerDesc = ocispec.Descriptor{MediaType: MediaTypeWasm, Digest: digest.FromBytes(wasm), Size: int64(len(wasm))}
	cfg, err := json.Marshal(wasmConfig{Created: created, Architecture: "wasm", OS: "wasip1", LayerDigests: []digest.Digest{a.LayerDesc.Digest}})
	if err != nil {
		return nil, err
	}
	a.Config = cfg
	a.ConfigDesc = ocispec.Descriptor{MediaType: MediaTypeWasmConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	ann := map[string]string{AnnotationCreated: created, AnnotationABI: m.ABI}
	if m.Description != "" {
		ann[AnnotationDescription] = m.Description
	}
	if len(m.ConfigSchema) > 0 {
		if !json.Valid(m.ConfigSchema) {
			return nil, errors.New("registry: the config schema is not JSON")
		}
		ann[AnnotationConfigSchema] = string(m.ConfigSchema)
	}
	man := ocispec.Manifest{
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      a.ConfigDesc,
		Layers:      []ocispec.Descriptor{a.LayerDesc},
		Annotations: ann,
	}
	man.SchemaVersion = 2
	if a.Manifest, err = json.Marshal(man); err != nil {
		return nil, err
	}
	a.ManifestDesc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(a.Manifest), Size: int64(len(a.Manifest))}
	return a, nil
}

// ParseManifest reads an image manifest (OCI or Docker) and finds the layer that holds
// the module, in any of the layouts plexus pulls. compat reports Istio's compat variant:
// the layer is a tar.gz to take plugin.wasm out of (Unpack).
func ParseManifest(b []byte) (m ocispec.Manifest, layer ocispec.Descriptor, compat bool, err error) {
	if err := json.Unmarshal(b, &m); err != nil {
		return m, layer, false, fmt.Errorf("registry: manifest is not JSON: %w", err)
	}
	switch m.MediaType {
	case ocispec.MediaTypeImageIndex, dockerManifestList:
		return m, layer, false, fmt.Errorf("%w: the reference names an index (%s)", ErrNotFilter, m.MediaType)
	}
	var found []ocispec.Descriptor
	for _, l := range m.Layers {
		switch l.MediaType {
		case MediaTypeWasm, MediaTypeIstioLayer, MediaTypeWasmToOCI, mediaTypeOCITarGzip, mediaTypeDockerTarGzip:
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		types := make([]string, len(m.Layers))
		for i, l := range m.Layers {
			types[i] = l.MediaType
		}
		return m, layer, false, fmt.Errorf("%w: want one Wasm layer (%s, %s, %s, or a tar.gz holding plugin.wasm), the manifest has %d of its %d layers %v",
			ErrNotFilter, MediaTypeWasm, MediaTypeIstioLayer, MediaTypeWasmToOCI, len(found), len(m.Layers), types)
	}
	layer = found[0]
	if layer.Size > MaxModuleSize {
		return m, layer, false, fmt.Errorf("%w: the module layer is %d bytes, more than the %d allowed", ErrNotFilter, layer.Size, MaxModuleSize)
	}
	return m, layer, layer.MediaType == mediaTypeOCITarGzip || layer.MediaType == mediaTypeDockerTarGzip, nil
}

// dockerManifestList is Docker's index.
const dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"

// Unpack takes the module out of an Istio compat layer: a tar.gz holding plugin.wasm (or
// else its one .wasm file), bounded by MaxModuleSize however well it compresses.
func Unpack(layer []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(layer))
	if err != nil {
		return nil, fmt.Errorf("registry: compat layer is not gzip: %w", err)
	}
	tr := tar.NewReader(zr)
	var only []byte
	wasms := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("registry: compat layer: %w", err)
		}
		if h.Typeflag != tar.TypeReg || path.Ext(h.Name) != ".wasm" {
			continue
		}
		if h.Size > MaxModuleSize {
			return nil, fmt.Errorf("registry: %s in the compat layer is %d bytes, more than the %d allowed", h.Name, h.Size, MaxModuleSize)
		}
		b, err := io.ReadAll(io.LimitReader(tr, MaxModuleSize+1))
		if err != nil {
			return nil, fmt.Errorf("registry: compat layer: %w", err)
		}
		if path.Base(h.Name) == "plugin.wasm" {
			return b, nil
		}
		only, wasms = b, wasms+1
	}
	if wasms != 1 {
		return nil, fmt.Errorf("registry: compat layer holds no plugin.wasm and %d other .wasm files; want plugin.wasm", wasms)
	}
	return only, nil
}
