package syncclient

import "testing"

// SetSnapshotCommit sets how many snapshot records a replica gathers before
// it commits them, for the test.
func SetSnapshotCommit(t *testing.T, n int) {
	old := snapshotCommit
	snapshotCommit = n
	t.Cleanup(func() { snapshotCommit = old })
}
