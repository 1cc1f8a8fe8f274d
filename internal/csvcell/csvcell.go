// Package csvcell keeps text that came from the field harmless in a CSV file
// opened in a spreadsheet: a cell starting with "=", "+", "-", "@", a tab or
// a carriage return is read by Excel and LibreOffice as a formula (CSV
// injection, OWASP), so such text gets a leading apostrophe, which the
// spreadsheet shows as text and does not evaluate.
package csvcell

// Text returns s as a CSV cell of text: unchanged, or with a leading
// apostrophe when a spreadsheet would read it as a formula.
func Text(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}
