package web

import "testing"

// TestLocalPath: after signing in the browser is sent only to a page of this
// site; every way of spelling another site is refused.
func TestLocalPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/": true, "/area/532523": true, "/area/532523100/list/contract_rate?lang=en&as_of=2026-12-01": true,
		"": false, "//evil.example": false, "/\t/evil.example": false, "/%09/evil.example": false,
		"/\\evil.example": false, "https://evil.example/area/1": false, "/area/1\r\nSet-Cookie: x": false,
		"/signin": false, "/ area": false, "javascript:alert(1)": false, "/area/é": false,
	} {
		if got := localPath(p) != ""; got != want {
			t.Errorf("localPath(%q) kept = %v, want %v", p, got, want)
		}
	}
}
