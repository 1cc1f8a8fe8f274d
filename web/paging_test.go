package web_test

import (
	"html"
	"net/http"
	"regexp"
	"slices"
	"testing"

	"github.com/fieldsync/fieldsync/web"
)

// nextLink is a list page's link to its next page.
var nextLink = regexp.MustCompile(`<a id="next" href="([^"]+)">`)

// A list longer than a page comes in pages that link to each other and
// together hold every unit of the list, once and in the report's order.
func TestListPages(t *testing.T) {
	const size = 3
	defer web.SetMaxListRows(size)()
	c := startCounty(t)
	hc := browser(t)
	if resp := c.signIn(t, hc, "县", c.addStaff(t, "县", c.code), nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %s", resp.Status)
	}
	// The county's longest list.
	key, longest := "", 0
	for _, v := range c.reportList(t, c.code, "", nil).GetRows()[0].GetValues() {
		if n := listLength(v); n > longest && mainKeys()[v.GetKey()] {
			key, longest = v.GetKey(), n
		}
	}
	var want []string
	for _, it := range c.reportList(t, c.code, key, nil).GetItems() {
		want = append(want, it.GetId())
	}
	if len(want) <= 2*size {
		t.Fatalf("the county lists %d units of %s: too few for three pages", len(want), key)
	}
	var got []string
	href, pages := "/area/"+c.code+"/list/"+key+"?lang=zh", 0
	for href != "" {
		resp, page := get(t, hc, c.base+href)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", href, resp.Status)
		}
		pages++
		rows := itemRows.FindAllStringSubmatch(page, -1)
		if len(rows) > size || len(rows) == 0 {
			t.Fatalf("page %d (%s) shows %d units, want 1 to %d", pages, href, len(rows), size)
		}
		for _, r := range rows {
			got = append(got, r[2])
		}
		href = ""
		if m := nextLink.FindStringSubmatch(page); m != nil {
			href = html.UnescapeString(m[1])
		}
		if pages > len(want) {
			t.Fatal("the pages do not end")
		}
	}
	if wantPages := (len(want) + size - 1) / size; pages != wantPages {
		t.Errorf("%d pages, want %d", pages, wantPages)
	}
	if !slices.Equal(got, want) {
		t.Errorf("the pages list %d units, the report %d, or in another order", len(got), len(want))
	}
}
