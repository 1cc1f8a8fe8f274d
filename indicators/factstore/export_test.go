package factstore

import "go.etcd.io/bbolt"

// Stale returns how many villages (and the units placed in none) have no
// current part kept under the part key last cached: what the next report
// with that key computes again.
func Stale(m *Model) (int, error) {
	var villages []string
	err := m.db.View(func(btx *bbolt.Tx) error {
		b := btx.Bucket(bucketRoot)
		var err error
		villages, err = (&source{units: b.Bucket(bucketUnits), facts: b.Bucket(bucketFacts)}).Villages("")
		return err
	})
	if err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.keys) == 0 {
		return len(villages) + 1, nil
	}
	byVillage := m.cache[m.keys[len(m.keys)-1]]
	n := 0
	for _, v := range append(villages, "") {
		if e, ok := byVillage[v]; !ok || e.version != m.versions[v] {
			n++
		}
	}
	return n, nil
}
