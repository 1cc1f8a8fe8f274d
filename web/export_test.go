package web

// SetMaxListRows makes list pages hold n units, for a test of paging on a
// small county; it returns the function that restores the page size.
func SetMaxListRows(n int) (restore func()) {
	old := maxListRows
	maxListRows = n
	return func() { maxListRows = old }
}
