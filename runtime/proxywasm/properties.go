package proxywasm

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Properties: Envoy's attribute paths (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/attributes),
// segments separated by NUL. Values are serialized as Envoy does: strings raw, integers as
// 8-byte little-endian int64, booleans as one byte, timestamps as int64 nanoseconds since
// the epoch, string maps in the Proxy-Wasm map serialization; node values as Node says.
// A path the host does not know is looked up among the values the filter set with
// proxy_set_property (per stream, or per root context outside a stream).

// property appends the value at path to dst; ok is false for an unknown path or an
// absent value.
func (i *instance) property(dst []byte, path []byte) ([]byte, bool) {
	root, rest, _ := bytes.Cut(path, []byte{0})
	field, sub, _ := bytes.Cut(rest, []byte{0})
	s := i.stream()
	str := func(v string) ([]byte, bool) {
		if v == "" {
			return nil, false
		}
		return append(dst, v...), true
	}
	num := func(v int64) ([]byte, bool) { return binary.LittleEndian.AppendUint64(dst, uint64(v)), true }
	switch string(root) {
	case "plugin_name":
		return str(i.p.cfg.Name)
	case "plugin_root_id":
		return append(dst, i.p.cfg.RootID...), true
	case "plugin_vm_id":
		return str(i.p.cfg.VMID)
	case "node":
		return i.nodeProperty(dst, rest)
	case "xds":
		if string(field) == "node" {
			return i.nodeProperty(dst, sub)
		}
		if s == nil || s.info == nil {
			return nil, false
		}
		switch string(field) {
		case "route_name":
			return str(s.info.RouteName)
		case "cluster_name":
			return str(s.info.ClusterName)
		case "route_metadata":
			return routeMetadata(dst, s.info.RouteMetadata, sub)
		case "upstream_host_metadata":
			return routeMetadata(dst, s.info.UpstreamMetadata, sub)
		case "cluster_metadata":
			return routeMetadata(dst, s.info.ClusterMetadata, sub)
		case "listener_metadata":
			return routeMetadata(dst, s.info.ListenerMetadata, sub)
		case "listener_direction":
			return binary.LittleEndian.AppendUint64(dst, uint64(s.info.ListenerDirection)), true
		}
		return nil, false
	}
	if s == nil {
		return nil, false
	}
	info := s.info
	if info == nil {
		info = &StreamInfo{}
	}
	switch string(root) {
	case "route_metadata":
		return routeMetadata(dst, info.RouteMetadata, rest)
	case "cluster_metadata":
		return routeMetadata(dst, info.ClusterMetadata, rest)
	case "listener_metadata":
		return routeMetadata(dst, info.ListenerMetadata, rest)
	case "listener_direction":
		return num(int64(info.ListenerDirection))
	case "route_name":
		return str(info.RouteName)
	case "cluster_name":
		return str(info.ClusterName)
	case "request":
		h := s.reqHeaders
		if h == nil {
			h = &Headers{}
		}
		switch string(field) {
		case "path":
			v, _ := h.get(":path")
			return str(v)
		case "url_path":
			v, _ := h.get(":path")
			v, _, _ = strings.Cut(v, "?")
			return str(v)
		case "query":
			v, _ := h.get(":path")
			_, q, _ := strings.Cut(v, "?")
			return str(q)
		case "host":
			v, ok := h.get(":authority")
			if !ok {
				v, _ = h.get("host")
			}
			return str(v)
		case "scheme":
			v, ok := h.get(":scheme")
			if !ok {
				v = info.Scheme
			}
			return str(v)
		case "method":
			v, _ := h.get(":method")
			return str(v)
		case "useragent":
			v, _ := h.get("user-agent")
			return str(v)
		case "referer":
			v, _ := h.get("referer")
			return str(v)
		case "headers":
			return headersProperty(dst, h, sub)
		case "id":
			if info.ID != "" {
				return str(info.ID)
			}
			v, _ := h.get("x-request-id")
			return str(v)
		case "time":
			if info.Start.IsZero() {
				return nil, false
			}
			return num(info.Start.UnixNano())
		case "protocol":
			return str(info.Protocol)
		case "duration":
			// Envoy serializes durations as nanoseconds; the request is not over yet, so this
			// is its age, as Envoy reports it before the stream completes.
			if info.Start.IsZero() {
				return nil, false
			}
			return num(int64(time.Since(info.Start)))
		case "size":
			if v, ok := h.get("content-length"); ok {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					return num(n)
				}
			}
			if s.reqBody != nil {
				return num(int64(len(s.reqBody.Data)))
			}
			return nil, false
		case "total_size":
			// Envoy's: the headers' size (each as "name: value\r\n") and the body's.
			n := headerBytes(h)
			if v, ok := h.get("content-length"); ok {
				if b, err := strconv.ParseInt(v, 10, 64); err == nil {
					n += b
				}
			} else if s.reqBody != nil {
				n += int64(len(s.reqBody.Data))
			}
			return num(n)
		}
	case "response":
		switch string(field) {
		case "code":
			code := info.ResponseCode
			if code == 0 && s.respHeaders != nil {
				v, _ := s.respHeaders.get(":status")
				code, _ = strconv.Atoi(v)
			}
			if code == 0 {
				return nil, false
			}
			return num(int64(code))
		case "size":
			if info.ResponseSize < 0 {
				return nil, false
			}
			return num(info.ResponseSize)
		case "total_size":
			if info.ResponseSize < 0 || s.respHeaders == nil {
				return nil, false
			}
			return num(headerBytes(s.respHeaders) + headerBytes(s.respTrailers) + info.ResponseSize)
		case "flags":
			if info.ResponseCode == 0 && info.CodeDetails == "" {
				return nil, false // no response yet
			}
			return num(int64(info.ResponseFlags))
		case "code_details":
			return str(info.CodeDetails)
		case "backend_latency":
			if info.BackendLatency <= 0 {
				return nil, false
			}
			return num(int64(info.BackendLatency))
		case "grpc_status":
			// From the trailers, or the headers of a trailers-only response, as Envoy.
			for _, h := range []*Headers{s.respTrailers, s.respHeaders} {
				if h == nil {
					continue
				}
				if v, ok := h.get("grpc-status"); ok {
					if n, err := strconv.ParseInt(v, 10, 64); err == nil {
						return num(n)
					}
				}
			}
			return nil, false
		case "headers":
			if s.respHeaders == nil {
				return nil, false
			}
			return headersProperty(dst, s.respHeaders, sub)
		case "trailers":
			if s.respTrailers == nil {
				return nil, false
			}
			return headersProperty(dst, s.respTrailers, sub)
		}
	case "source":
		return addressProperty(dst, info.SourceAddress, string(field))
	case "destination":
		return addressProperty(dst, info.DestAddress, string(field))
	case "upstream":
		switch string(field) {
		case "request_attempt_count":
			if info.Attempts == 0 {
				return nil, false
			}
			return num(int64(info.Attempts))
		case "local_address":
			if info.UpstreamConn == nil {
				return nil, false
			}
			return append(dst, info.UpstreamConn.LocalAddr().String()...), true
		case "tls_version":
			if tc, ok := info.UpstreamConn.(*tls.Conn); ok {
				return str(TLSVersionName(tc.ConnectionState().Version))
			}
			return nil, false
		case "transport_failure_reason":
			return str(info.UpstreamFailure)
		case "subject_local_certificate", "dns_san_local_certificate", "uri_san_local_certificate":
			if _, ok := info.UpstreamConn.(*tls.Conn); !ok {
				return nil, false
			}
			return certProperty(dst, info.UpstreamLocalCert, string(field))
		case "subject_peer_certificate", "dns_san_peer_certificate", "uri_san_peer_certificate", "sha256_peer_certificate_digest":
			var peer *x509.Certificate
			if tc, ok := info.UpstreamConn.(*tls.Conn); ok {
				if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
					peer = pc[0]
				}
			}
			return certProperty(dst, peer, string(field))
		}
		return addressProperty(dst, info.UpstreamAddress, string(field))
	case "upstream_host_metadata":
		return routeMetadata(dst, info.UpstreamMetadata, rest)
	case "connection":
		switch string(field) {
		case "mtls":
			if info.MTLS {
				return append(dst, 1), true
			}
			return append(dst, 0), true
		case "tls_version":
			return str(info.TLSVersion)
		case "requested_server_name":
			return str(info.ServerName)
		case "termination_details":
			return str(info.Termination)
		case "id":
			if info.ConnectionID == 0 {
				return nil, false
			}
			return num(int64(info.ConnectionID))
		case "subject_local_certificate", "dns_san_local_certificate", "uri_san_local_certificate":
			return certProperty(dst, info.LocalCert, string(field))
		case "subject_peer_certificate", "dns_san_peer_certificate", "uri_san_peer_certificate", "sha256_peer_certificate_digest":
			return certProperty(dst, info.PeerCert, string(field))
		}
	}
	return nil, false
}

// TLSVersionName is a TLS version as Envoy's tls_version properties name it: "TLSv1.3".
func TLSVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS10:
		return "TLSv1"
	}
	return tls.VersionName(v)
}

// certProperty is a certificate's field as Envoy gives it: the subject as an RFC 2253
// distinguished name, the first DNS or URI subject alternative name, the SHA-256 digest of
// the DER encoding in hex; absent without a certificate, or without such a name.
func certProperty(dst []byte, c *x509.Certificate, field string) ([]byte, bool) {
	if c == nil {
		return nil, false
	}
	var v string
	switch {
	case strings.HasPrefix(field, "subject_"):
		v = c.Subject.String()
	case strings.HasPrefix(field, "dns_san_") && len(c.DNSNames) > 0:
		v = c.DNSNames[0]
	case strings.HasPrefix(field, "uri_san_") && len(c.URIs) > 0:
		v = c.URIs[0].String()
	case field == "sha256_peer_certificate_digest":
		sum := sha256.Sum256(c.Raw)
		v = hex.EncodeToString(sum[:])
	}
	if v == "" {
		return nil, false
	}
	return append(dst, v...), true
}

// headerBytes is the size of a header map as HTTP/1.1 would send it: "name: value\r\n"
// per field.
func headerBytes(h *Headers) int64 {
	if h == nil {
		return 0
	}
	var n int64
	for _, f := range h.Fields {
		n += int64(len(f.Key) + len(f.Value) + 4)
	}
	return n
}

// nodeProperty is node.<path>: Config.Node, serialized as Node's doc says.
func (i *instance) nodeProperty(dst, path []byte) ([]byte, bool) {
	n := &i.p.cfg.Node
	id := n.ID
	if id == "" && i.p.host != nil {
		id = i.p.host.NodeID()
	}
	field, rest, _ := bytes.Cut(path, []byte{0})
	switch string(field) {
	case "":
		if len(path) > 0 {
			return nil, false
		}
		whole := map[string]any{}
		if id != "" {
			whole["id"] = id
		}
		if n.Cluster != "" {
			whole["cluster"] = n.Cluster
		}
		if n.Metadata != nil {
			whole["metadata"] = n.Metadata
		}
		return appendJSON(dst, whole)
	case "id":
		if id == "" {
			return nil, false
		}
		return append(dst, id...), true
	case "cluster":
		if n.Cluster == "" {
			return nil, false
		}
		return append(dst, n.Cluster...), true
	case "metadata":
		if n.Metadata == nil {
			return nil, false
		}
		return valueProperty(dst, n.Metadata, rest)
	}
	return nil, false
}

// valueProperty is the value at path (segments separated by NUL: map keys, list indexes)
// in v, a decoded YAML or JSON value: a string as its bytes, nil as absent, anything else
// as JSON.
func valueProperty(dst []byte, v any, path []byte) ([]byte, bool) {
	for len(path) > 0 {
		var seg []byte
		seg, path, _ = bytes.Cut(path, []byte{0})
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[string(seg)]; !ok {
				return nil, false
			}
		case []any:
			k, err := strconv.Atoi(string(seg))
			if err != nil || k < 0 || k >= len(x) {
				return nil, false
			}
			v = x[k]
		default:
			return nil, false
		}
	}
	switch x := v.(type) {
	case nil:
		return nil, false
	case string:
		return append(dst, x...), true
	}
	return appendJSON(dst, v)
}

func appendJSON(dst []byte, v any) ([]byte, bool) {
	b, err := json.Marshal(v)
	if err != nil { // a NaN, say: nothing the filter could read
		return nil, false
	}
	return append(dst, b...), true
}

// headersProperty is a header map, or with a key, that header's value.
func headersProperty(dst []byte, h *Headers, key []byte) ([]byte, bool) {
	if len(key) == 0 {
		return serializeMap(dst, h.Fields), true
	}
	k := h.find(key)
	if k < 0 {
		return nil, false
	}
	return append(dst, h.Fields[k].Value...), true
}

// addressProperty is "ip:port" (address) or the port as an integer (port).
func addressProperty(dst []byte, addr, field string) ([]byte, bool) {
	if addr == "" {
		return nil, false
	}
	switch field {
	case "address":
		return append(dst, addr...), true
	case "port":
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, false
		}
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return nil, false
		}
		return binary.LittleEndian.AppendUint64(dst, uint64(n)), true
	}
	return nil, false
}

func hostGetProperty(i *instance, s []uint64) status {
	path, ok := i.read(u32(s, 0), u32(s, 1))
	if !ok || !i.writable(u32(s, 2), 4) || !i.writable(u32(s, 3), 4) {
		return statusInvalidMemoryAccess
	}
	if v, ok := i.property(i.scratch[:0], path); ok {
		i.scratch = v
		return i.returnBytes(v, u32(s, 2), u32(s, 3))
	}
	// What a filter set: by its path, or as Envoy names it in its filter state.
	if key, ok := bytes.CutPrefix(path, []byte("filter_state\x00wasm.")); ok {
		path = key
	}
	props, mu := i.setProperties()
	if mu != nil {
		// Not held while the value goes to the guest: its allocator runs then, and must
		// not find the lock taken if it calls the host.
		mu.Lock()
	}
	v, ok := (*props)[string(path)]
	if mu != nil {
		mu.Unlock()
	}
	if ok {
		return i.returnBytes(v, u32(s, 2), u32(s, 3))
	}
	return statusNotFound
}

// setProperties is where proxy_set_property keeps values for the effective context: the
// request's filter state, shared by its filters (with its lock), or the stream's own, or
// the root context's. A value in the map is never changed in place (a set replaces it), so
// one read under the lock may be used after it.
func (i *instance) setProperties() (props *map[string][]byte, mu *sync.Mutex) {
	st := i.stream()
	switch {
	case st == nil:
		return &i.props, nil
	case st.info != nil && st.info.State != nil:
		return &st.info.State.m, &st.info.State.mu
	}
	return &st.props, nil
}

func hostSetProperty(i *instance, s []uint64) status {
	path, ok1 := i.read(u32(s, 0), u32(s, 1))
	val, ok2 := i.read(u32(s, 2), u32(s, 3))
	if !ok1 || !ok2 {
		return statusInvalidMemoryAccess
	}
	props, mu := i.setProperties()
	acct := &i.rProps
	if i.stream() != nil {
		acct = &i.sProps // the setter's, until its stream ends
	}
	if mu != nil {
		mu.Lock()
		defer mu.Unlock()
	}
	if i.p.readonlySet(path, *props) {
		return statusBadArgument // a readonly declared property is set once (declare_property)
	}
	delta := int64(len(path)+len(val)) + HostEntryBytes
	if old, ok := (*props)[string(path)]; ok {
		delta = int64(len(val)) - int64(len(old))
	}
	if !i.adjust(acct, delta) {
		return statusBadArgument
	}
	if *props == nil {
		*props = map[string][]byte{}
	}
	(*props)[string(path)] = bytes.Clone(val)
	return statusOK
}

// routeMetadata appends the route (or cluster, or listener) metadata at path (segments separated by NUL) as Envoy
// serializes it: with no path, the envoy.config.core.v3.Metadata message (protobuf,
// filter_metadata in field 1, namespaces in order); filter_metadata NS is that
// namespace's google.protobuf.Struct; a key in it and further keys of nested structs
// reach a value: a string raw, a number as an 8-byte little-endian double, a boolean as
// one byte, a struct or list as its protobuf message, null as nothing.
func routeMetadata(dst []byte, md map[string]*structpb.Struct, path []byte) ([]byte, bool) {
	if len(md) == 0 {
		return nil, false
	}
	if len(path) == 0 {
		names := make([]string, 0, len(md))
		for ns := range md {
			names = append(names, ns)
		}
		slices.Sort(names)
		for _, ns := range names {
			st, err := proto.MarshalOptions{Deterministic: true}.Marshal(md[ns])
			if err != nil {
				return nil, false
			}
			var entry []byte
			entry = protowire.AppendTag(entry, 1, protowire.BytesType)
			entry = protowire.AppendString(entry, ns)
			entry = protowire.AppendTag(entry, 2, protowire.BytesType)
			entry = protowire.AppendBytes(entry, st)
			dst = protowire.AppendTag(dst, 1, protowire.BytesType)
			dst = protowire.AppendBytes(dst, entry)
		}
		return dst, true
	}
	seg, rest, _ := bytes.Cut(path, []byte{0})
	if string(seg) != "filter_metadata" || len(rest) == 0 {
		return nil, false
	}
	seg, rest, _ = bytes.Cut(rest, []byte{0})
	st := md[string(seg)]
	if st == nil {
		return nil, false
	}
	v := structpb.NewStructValue(st)
	for len(rest) > 0 {
		seg, rest, _ = bytes.Cut(rest, []byte{0})
		s := v.GetStructValue()
		if s == nil {
			return nil, false
		}
		if v = s.Fields[string(seg)]; v == nil {
			return nil, false
		}
	}
	switch k := v.Kind.(type) {
	case *structpb.Value_StringValue:
		return append(dst, k.StringValue...), true
	case *structpb.Value_NumberValue:
		return binary.LittleEndian.AppendUint64(dst, math.Float64bits(k.NumberValue)), true
	case *structpb.Value_BoolValue:
		if k.BoolValue {
			return append(dst, 1), true
		}
		return append(dst, 0), true
	case *structpb.Value_NullValue:
		return dst, true
	case *structpb.Value_StructValue:
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(k.StructValue)
		return append(dst, b...), err == nil
	case *structpb.Value_ListValue:
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(k.ListValue)
		return append(dst, b...), err == nil
	}
	return nil, false
}
