package transcode

import (
	"strings"

	_ "google.golang.org/genproto/googleapis/rpc/errdetails" // google.rpc.BadRequest and the like, for status details
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
)

// types resolves message and extension types for protojson and the wire format: the
// compiled files' first (as dynamic types), then those linked into the binary (the
// well-known types, google.rpc's error details). It is what lets a google.protobuf.Any
// of the user's own types print as JSON. Built once by Compile; read-only after.
type types struct {
	messages map[protoreflect.FullName]protoreflect.MessageType
	extByNum map[protoreflect.FullName]map[protoreflect.FieldNumber]protoreflect.ExtensionType
	extByNam map[protoreflect.FullName]protoreflect.ExtensionType
}

func newTypes(files []protoreflect.FileDescriptor) *types {
	t := &types{
		messages: map[protoreflect.FullName]protoreflect.MessageType{},
		extByNum: map[protoreflect.FullName]map[protoreflect.FieldNumber]protoreflect.ExtensionType{},
		extByNam: map[protoreflect.FullName]protoreflect.ExtensionType{},
	}
	for _, f := range files {
		t.addMessages(f.Messages())
		t.addExtensions(f.Extensions())
	}
	return t
}

func (t *types) addMessages(mds protoreflect.MessageDescriptors) {
	for i := 0; i < mds.Len(); i++ {
		md := mds.Get(i)
		if md.IsMapEntry() {
			continue
		}
		t.messages[md.FullName()] = dynamicpb.NewMessageType(md)
		t.addMessages(md.Messages())
		t.addExtensions(md.Extensions())
	}
}

func (t *types) addExtensions(xds protoreflect.ExtensionDescriptors) {
	for i := 0; i < xds.Len(); i++ {
		xd := xds.Get(i)
		xt := dynamicpb.NewExtensionType(xd)
		t.extByNam[xd.FullName()] = xt
		ext := xd.ContainingMessage().FullName()
		if t.extByNum[ext] == nil {
			t.extByNum[ext] = map[protoreflect.FieldNumber]protoreflect.ExtensionType{}
		}
		t.extByNum[ext][xd.Number()] = xt
	}
}

func (t *types) FindMessageByName(name protoreflect.FullName) (protoreflect.MessageType, error) {
	if mt, ok := t.messages[name]; ok {
		return mt, nil
	}
	return protoregistry.GlobalTypes.FindMessageByName(name)
}

func (t *types) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	name := url
	if i := strings.LastIndexByte(url, '/'); i >= 0 {
		name = url[i+1:]
	}
	return t.FindMessageByName(protoreflect.FullName(name))
}

func (t *types) FindExtensionByName(name protoreflect.FullName) (protoreflect.ExtensionType, error) {
	if xt, ok := t.extByNam[name]; ok {
		return xt, nil
	}
	return protoregistry.GlobalTypes.FindExtensionByName(name)
}

func (t *types) FindExtensionByNumber(msg protoreflect.FullName, n protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	if xt, ok := t.extByNum[msg][n]; ok {
		return xt, nil
	}
	return protoregistry.GlobalTypes.FindExtensionByNumber(msg, n)
}
