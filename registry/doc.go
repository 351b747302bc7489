// Package registry is plexus's side of OCI registries: the artifact a filter is pushed
// as, a registry server (Server, for `plexus registry serve`), and the client that
// pushes, pulls and inspects filters.
//
// The server implements the OCI Distribution Specification v1.1
// (https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md) on the
// filesystem; the artifact follows the CNCF Wasm OCI artifact layout
// (https://tag-runtime.cncf.io/wgs/wasm/deliverables/wasm-oci-artifact/).
package registry
