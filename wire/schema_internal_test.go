package wire

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// The record schema's fingerprint is the same for the same schema, and
// another when a message reachable from Record gains a field: a newer
// build's packed records are then never read by an older one.
func TestRecordSchemaChangesWithTheSchema(t *testing.T) {
	if fp := RecordSchema(); len(fp) != 8 || !bytes.Equal(fp, schemaFingerprint(recordDescriptor)) || !SameSchema(fp) || SameSchema(nil) {
		t.Fatalf("RecordSchema = %x, not stable", fp)
	}
	// The files Record's schema is made of, with one more id field in
	// Household.
	var set descriptorpb.FileDescriptorSet
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		fdp := protodesc.ToFileDescriptorProto(fd)
		for _, m := range fdp.GetMessageType() {
			if m.GetName() == "Household" {
				m.Field = append(m.Field, &descriptorpb.FieldDescriptorProto{
					Name: proto.String("spouse_person_id"), JsonName: proto.String("spousePersonId"), Number: proto.Int32(900),
					Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(),
				})
			}
		}
		set.File = append(set.File, fdp)
	}
	add(recordDescriptor.ParentFile())
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		t.Fatal(err)
	}
	d, err := files.FindDescriptorByName(recordDescriptor.FullName())
	if err != nil {
		t.Fatal(err)
	}
	newer := schemaFingerprint(d.(protoreflect.MessageDescriptor))
	if bytes.Equal(newer, RecordSchema()) || SameSchema(newer) {
		t.Errorf("a schema with one more field has the same fingerprint %x", newer)
	}
}
