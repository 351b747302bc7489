package proxywasm

import "encoding/binary"

// Header maps, and their serialization: little-endian count, then (key length, value
// length) pairs, then each key and value followed by a NUL.

// headerMap returns the map of type mt in the current context.
func (i *instance) headerMap(mt uint32) (*Headers, status) {
	var h *Headers
	switch mt {
	case mapHTTPRequestHeaders, mapHTTPRequestTrailers, mapHTTPResponseHeaders, mapHTTPResponseTrailers:
		s := i.stream()
		if s == nil {
			return nil, statusNotFound
		}
		switch mt {
		case mapHTTPRequestHeaders:
			h = s.reqHeaders
		case mapHTTPRequestTrailers:
			if s.reqTrailers == nil && s.lastBody[streamRequest] {
				s.reqTrailers = &Headers{} // trailers added to a request without any
			}
			h = s.reqTrailers
		case mapHTTPResponseHeaders:
			h = s.respHeaders
		default:
			if s.respTrailers == nil && s.lastBody[streamResponse] {
				s.respTrailers = &Headers{}
			}
			h = s.respTrailers
		}
	case mapGRPCInitialMetadata, mapHTTPCallResponseHeaders:
		if i.cbMaps[0] == int(mt) {
			h = &i.cbHeaders
		}
	case mapGRPCTrailingMetadata, mapHTTPCallResponseTrailers:
		if i.cbMaps[1] == int(mt) {
			h = &i.cbTrailers
		}
	default:
		return nil, statusBadArgument
	}
	if h == nil {
		return nil, statusNotFound
	}
	return h, statusOK
}

// serializeMap appends the serialization of fields to dst.
func serializeMap(dst []byte, fields []Field) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(fields)))
	for _, f := range fields {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(f.Key)))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(f.Value)))
	}
	for _, f := range fields {
		dst = append(dst, f.Key...)
		dst = append(dst, 0)
		dst = append(dst, f.Value...)
		dst = append(dst, 0)
	}
	return dst
}

func serializedSize(fields []Field) int {
	n := 4
	for _, f := range fields {
		n += 10 + len(f.Key) + len(f.Value)
	}
	return n
}

// parseMap parses a serialized map, appending to dst; keys are lower-cased. An empty input,
// or a single NUL byte, is an empty map.
func parseMap(b []byte, dst []Field) ([]Field, bool) {
	if len(b) == 0 || (len(b) == 1 && b[0] == 0) {
		return dst, true
	}
	if len(b) < 4 {
		return nil, false
	}
	n := uint64(binary.LittleEndian.Uint32(b))
	if 4+8*n > uint64(len(b)) {
		return nil, false
	}
	data := 4 + 8*int(n)
	for k := 0; k < int(n); k++ {
		kl := int(binary.LittleEndian.Uint32(b[4+8*k:]))
		vl := int(binary.LittleEndian.Uint32(b[8+8*k:]))
		if kl < 0 || vl < 0 || data+kl+vl+2 > len(b) || data+kl+vl+2 < data {
			return nil, false
		}
		key := lower(b[data : data+kl])
		data += kl + 1
		val := string(b[data : data+vl])
		data += vl + 1
		dst = append(dst, Field{Key: key, Value: val})
	}
	return dst, true
}

// lower returns b as a lower-case string.
func lower(b []byte) string {
	for k, c := range b {
		if 'A' <= c && c <= 'Z' {
			out := make([]byte, len(b))
			copy(out, b[:k])
			for j := k; j < len(b); j++ {
				c := b[j]
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				out[j] = c
			}
			return string(out)
		}
	}
	return string(b)
}

// equalFold compares a stored (lower-case) key with a key from the guest, ASCII
// case-insensitively, without allocating.
func equalFold(stored string, key []byte) bool {
	if len(stored) != len(key) {
		return false
	}
	for k := 0; k < len(key); k++ {
		c := key[k]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if stored[k] != c {
			return false
		}
	}
	return true
}

func (h *Headers) find(key []byte) int {
	for k := range h.Fields {
		if equalFold(h.Fields[k].Key, key) {
			return k
		}
	}
	return -1
}

// get returns the first value of key (lower case), and whether it is there.
func (h *Headers) get(key string) (string, bool) {
	for _, f := range h.Fields {
		if f.Key == key {
			return f.Value, true
		}
	}
	return "", false
}

// remove drops the fields named key (in any case) from the from-th on, and returns what
// they counted against the host memory budget.
func (h *Headers) remove(key []byte, from int) (freed int64) {
	out := h.Fields[:from]
	for _, f := range h.Fields[from:] {
		if !equalFold(f.Key, key) {
			out = append(out, f)
		} else {
			freed += fieldBytes(len(f.Key), len(f.Value))
		}
	}
	if len(out) != len(h.Fields) {
		h.Modified, h.Rewritten = true, true
	}
	clear(h.Fields[len(out):])
	h.Fields = out
	return freed
}

// mapAccount is what a change to the map of type mt is charged to: the stream's maps to
// the stream, a callout's to the callback.
func (i *instance) mapAccount(mt uint32) *account {
	switch mt {
	case mapHTTPRequestHeaders, mapHTTPRequestTrailers, mapHTTPResponseHeaders, mapHTTPResponseTrailers:
		return &i.sHeaders
	}
	return &i.cbAcct
}

func hostGetHeaderMapSize(i *instance, s []uint64) status {
	h, st := i.headerMap(u32(s, 0))
	if st != statusOK {
		return st
	}
	if !i.putU32(u32(s, 1), uint32(serializedSize(h.Fields))) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

func hostGetHeaderMapPairs(i *instance, s []uint64) status {
	h, st := i.headerMap(u32(s, 0))
	if st != statusOK {
		return st
	}
	i.scratch = serializeMap(i.scratch[:0], h.Fields)
	return i.returnBytes(i.scratch, u32(s, 1), u32(s, 2))
}

func hostSetHeaderMapPairs(i *instance, s []uint64) status {
	b, ok := i.read(u32(s, 1), u32(s, 2))
	if !ok {
		return statusInvalidMemoryAccess
	}
	h, st := i.headerMap(u32(s, 0))
	if st != statusOK {
		return st
	}
	fields, ok := parseMap(b, nil)
	if !ok {
		return statusBadArgument
	}
	if !i.adjust(i.mapAccount(u32(s, 0)), fieldsBytes(fields)-fieldsBytes(h.Fields)) {
		return statusBadArgument
	}
	h.Fields = fields
	h.Modified, h.Rewritten = true, true
	return statusOK
}

func hostGetHeaderMapValue(i *instance, s []uint64) status {
	key, ok := i.read(u32(s, 1), u32(s, 2))
	if !ok {
		return statusInvalidMemoryAccess
	}
	h, st := i.headerMap(u32(s, 0))
	if st != statusOK {
		return st
	}
	k := h.find(key)
	if k < 0 {
		if i.p.abi == ABI010 { // 0.1.0 hosts answered an absent key with an empty value
			return i.returnString("", u32(s, 3), u32(s, 4))
		}
		return statusNotFound
	}
	// Several values under one key: the first, as Envoy does.
	return i.returnString(h.Fields[k].Value, u32(s, 3), u32(s, 4))
}

func hostAddHeaderMapValue(i *instance, s []uint64) status {
	key, ok1 := i.read(u32(s, 1), u32(s, 2))
	val, ok2 := i.read(u32(s, 3), u32(s, 4))
	if !ok1 || !ok2 {
		return statusInvalidMemoryAccess
	}
	h, st := i.headerMap(u32(s, 0))
	if st != statusOK {
		return st
	}
	if !i.adjust(i.mapAccount(u32(s, 0)), fieldBytes(len(key), len(val))) {
		return statusBadArgument
	}
	h.Fields = append(h.Fields, Field{Key: lower(key), Value: string(val)})
	h.Modified = true
	return statusOK
}

// hostReplaceHeaderMapValue sets the first value of the key, removes any other, and adds
// the key if it is absent.
func hostReplaceHeaderMapValue(i *instance, s []uint64) status {
	key, ok1 := i.read(u32(s, 1), u32(s, 2))
	val, ok2 := i.read(u32(s, 3), u32(s, 4))
	if !ok1 || !ok2 {
		return statusInvalidMemoryAccess
	}
	h, st := i.headerMap(u32(s, 0))
	if st != statusOK {
		return st
	}
	acct := i.mapAccount(u32(s, 0))
	k := h.find(key)
	if k < 0 {
		if !i.adjust(acct, fieldBytes(len(key), len(val))) {
			return statusBadArgument
		}
		h.Modified = true
		h.Fields = append(h.Fields, Field{Key: lower(key), Value: string(val)})
		return statusOK
	}
	if !i.adjust(acct, int64(len(val))-int64(len(h.Fields[k].Value))) {
		return statusBadArgument
	}
	h.Modified, h.Rewritten = true, true
	h.Fields[k].Value = string(val)
	i.adjust(acct, -h.remove(key, k+1))
	return statusOK
}

func hostRemoveHeaderMapValue(i *instance, s []uint64) status {
	key, ok := i.read(u32(s, 1), u32(s, 2))
	if !ok {
		return statusInvalidMemoryAccess
	}
	h, st := i.headerMap(u32(s, 0))
	if st != statusOK {
		return st
	}
	i.adjust(i.mapAccount(u32(s, 0)), -h.remove(key, 0))
	return statusOK
}
