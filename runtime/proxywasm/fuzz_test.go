package proxywasm

import (
	"context"
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero/api"
)

// FuzzParseMap: a header map from a guest, whatever its bytes, is parsed or refused, never
// read out of bounds; what is parsed serializes back to what the guest could have sent.
func FuzzParseMap(f *testing.F) {
	f.Add(serializeMap(nil, []Field{{"a", "1"}, {":path", "/"}}))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fields, ok := parseMap(b, nil)
		if !ok {
			return
		}
		again, ok := parseMap(serializeMap(nil, fields), nil)
		if !ok || !slices.Equal(again, fields) {
			t.Fatalf("%q parsed as %v, which serializes to something that parses as %v", b, fields, again)
		}
	})
}

// FuzzHostCalls: every host function, called from a guest with arguments chosen by the
// fuzzer (pointers and lengths anywhere in or out of its memory), answers with a status
// and never takes the host down; the guest is not trapped for passing bad arguments.
func FuzzHostCalls(f *testing.F) {
	r := newRuntime(f)
	p := loadWAT(f, r, hostcallsWAT, Config{Name: "fuzz", MaxInstances: 1}, &fakeHost{})
	var names []string
	s, err := p.NewStream(context.Background(), &StreamInfo{})
	if err != nil {
		f.Fatal(err)
	}
	for name := range s.inst.mod.ExportedFunctionDefinitions() {
		if strings.HasPrefix(name, "t_proxy_") {
			names = append(names, name)
		}
	}
	s.Close()
	slices.Sort(names)
	seed := make([]byte, 12*8)
	for k := range names {
		f.Add(uint8(k), seed)
	}
	f.Add(uint8(0), []byte{0xf0, 0xff, 0xff, 0xff, 0, 0, 0, 0x10})
	f.Fuzz(func(t *testing.T, which uint8, raw []byte) {
		name := names[int(which)%len(names)]
		s, err := p.NewStream(context.Background(), &StreamInfo{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.OnRequestHeaders(&Headers{Fields: []Field{{":path", "/"}}}, false)
		fn := s.inst.mod.ExportedFunction(name)
		def := fn.Definition()
		args := make([]uint64, len(def.ParamTypes()))
		for k, typ := range def.ParamTypes() {
			var v uint64
			if len(raw) >= 8*(k+1) {
				v = binary.LittleEndian.Uint64(raw[8*k:])
			}
			if typ == api.ValueTypeI32 {
				v = uint64(uint32(v))
			}
			args[k] = v
		}
		if _, err := fn.Call(s.inst.ctx, args...); err != nil {
			t.Fatalf("%s%v trapped the guest: %v", strings.TrimPrefix(name, "t_"), args, err)
		}
	})
}
