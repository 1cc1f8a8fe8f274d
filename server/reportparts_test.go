package server

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// A report is split at MaxReportDevices devices and at maxReportBytes, in
// order, and an empty registry is one empty part.
func TestReportParts(t *testing.T) {
	devices := func(n int, lastError string) []*fieldsyncv1.DeviceReport {
		out := make([]*fieldsyncv1.DeviceReport, n)
		for i := range out {
			out[i] = &fieldsyncv1.DeviceReport{ReplicaId: []byte{byte(i), byte(i >> 8), 15: 1}, AreaPrefixes: []string{"532523101201"}, LastError: lastError}
		}
		return out
	}
	long := strings.Repeat("错", maxReportError) // 900 bytes
	for _, tc := range []struct {
		name string
		in   []*fieldsyncv1.DeviceReport
		want []int // the parts' lengths; nil: as many as the bytes allow
	}{
		{"none", nil, []int{0}},
		{"one", devices(1, ""), []int{1}},
		{"at the bound", devices(MaxReportDevices, ""), []int{MaxReportDevices}},
		{"one beyond", devices(MaxReportDevices+1, ""), []int{MaxReportDevices, 1}},
		{"long errors", devices(2000, long), nil},
	} {
		parts := reportParts(tc.in)
		var got []int
		var joined []*fieldsyncv1.DeviceReport
		for i, p := range parts {
			got = append(got, len(p))
			joined = append(joined, p...)
			size := proto.Size(&fieldsyncv1.ReportDevicesRequest{Devices: p, Part: uint32(i), Parts: uint32(len(parts))})
			if size > maxReportBytes {
				t.Errorf("%s: part %d has %d bytes, more than %d", tc.name, i, size, maxReportBytes)
			}
			if i < len(parts)-1 && len(p) < MaxReportDevices && size+proto.Size(parts[i+1][0])+4 <= maxReportBytes {
				t.Errorf("%s: part %d of %d bytes ends before the next device would fill it", tc.name, i, size)
			}
		}
		if !slices.Equal(joined, tc.in) {
			t.Errorf("%s: the parts do not hold the devices in order", tc.name)
		}
		if tc.want != nil && !slices.Equal(got, tc.want) {
			t.Errorf("%s: parts of %v, want %v", tc.name, got, tc.want)
		}
		if tc.want == nil && len(parts) < 2 {
			t.Errorf("%s: %d part(s), want the bytes to split it", tc.name, len(parts))
		}
	}
}
