package syncengine_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The engine must stay a pure core: no I/O, no wall clock, no goroutines, no
// gRPC, no database/sql, no generated protobuf types. This test enforces the
// fence on the package's own (non-test) files.
var allowedImports = map[string]bool{
	"bytes": true, "cmp": true, "context": true, "crypto/sha256": true,
	"encoding/binary": true, "encoding/hex": true, "errors": true, "fmt": true,
	"maps": true, "math": true, "slices": true, "strconv": true, "strings": true,
	"sync": true, // Clock's mutex
}

func TestEngineStaysPure(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if !allowedImports[path] {
				t.Errorf("%s imports %q, outside the engine's fence", name, path)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if g, ok := n.(*ast.GoStmt); ok {
				t.Errorf("%s: go statement at %v: the engine starts no goroutines", name, fset.Position(g.Pos()))
			}
			return true
		})
	}
	if checked == 0 {
		t.Fatal("no source files checked")
	}
}
