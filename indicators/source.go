package indicators

// A Source holds the facts of units (FactsOf), each placed in the village its
// own fact names: a store's read model, or a Set in memory.
type Source interface {
	// Villages returns, in order, the villages (12-digit codes) under
	// prefix in which units are placed.
	Villages(prefix string) ([]string, error)
	// Village calls fn with every unit placed in village, in key order.
	Village(village string, fn func(Unit) error) error
	// Orphans calls fn with every unit placed in no village: those whose
	// own record is not held, or whose area is not a village code.
	Orphans(fn func(Unit) error) error
	// Own returns the own fact of the unit with key, nil when not held.
	Own(unit string) ([]byte, error)
}

// Placement is the village a unit whose own fact names area is placed in,
// "" for none.
func Placement(area string) string {
	if len(area) == 12 {
		return area
	}
	return ""
}
