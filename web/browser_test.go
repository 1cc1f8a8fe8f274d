package web_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fieldsync/fieldsync/indicators"
)

// chromium returns the path of a Chromium or Chrome to drive: $CHROMIUM, or
// the first of Debian's and others' names on PATH. It fails the test when
// there is none: .ci/run installs Debian's chromium, and a skipped browser
// test would hide a broken page.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found (chromium, chromium-browser, google-chrome or $CHROMIUM): install Debian's chromium, as .ci/run does (apt-get install chromium)")
	return ""
}

// pageFigure is a figure as the browser shows it.
type pageFigure struct {
	Area string `json:"area"`
	Key  string `json:"key"`
	Val  string `json:"val"`
	Frac string `json:"frac"`
}

// readFigures reads every bar's figure off the page in the browser.
const readFigures = `Array.from(document.querySelectorAll("tr[data-key]")).map(function (tr) {
	return {area: tr.getAttribute("data-area"), key: tr.getAttribute("data-key"),
		val: tr.querySelector("td.val").textContent.trim(), frac: tr.querySelector("td.frac").textContent.trim()};
})`

// checkFigures compares the figures of the page in ctx with the server's
// report of area to depth: every key of keys, of every row, once, as the
// report has it.
func checkFigures(t *testing.T, ctx context.Context, c *county, area, depth string, keys func(string) bool) {
	t.Helper()
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]pageFigure](readFigures))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]pageFigure{}
	for _, f := range got {
		seen[f.Area+" "+f.Key] = f
	}
	want := 0
	for _, row := range c.report(t, area, depth).GetRows() {
		for _, v := range row.GetValues() {
			if !keys(v.GetKey()) {
				continue
			}
			want++
			f, ok := seen[row.GetAreaCode()+" "+v.GetKey()]
			val, frac := shown(v)
			switch {
			case !ok:
				t.Errorf("%s: %s of %s is not on the page", area, v.GetKey(), row.GetAreaCode())
			case f.Val != val || f.Frac != frac:
				t.Errorf("%s: %s of %s shows %q %q, the report %q %q", area, v.GetKey(), row.GetAreaCode(), f.Val, f.Frac, val, frac)
			}
		}
	}
	if len(got) != want || want == 0 {
		t.Errorf("%s: the page shows %d figures, the report has %d", area, len(got), want)
	}
}

// listRow is a unit of a list as the browser shows it.
type listRow struct {
	Area   string `json:"area"`
	Group  string `json:"group"`
	Name   string `json:"name"`
	Masked string `json:"masked"`
}

// readList reads every unit of a list page off the page in the browser, with
// its village's heading.
const readList = `Array.from(document.querySelectorAll("tr.item")).map(function (tr) {
	var g = tr.parentNode.querySelector("tr.group");
	return {area: tr.getAttribute("data-area"), group: g ? g.textContent.trim() : "",
		name: tr.querySelector("td.uname").textContent.trim(), masked: tr.querySelector("td.masked").textContent.trim()};
})`

// checkList checks the list page in ctx lists want units, each under the
// name of its village, and, for a list of people, that the first show a name
// and a masked ID number.
func checkList(t *testing.T, ctx context.Context, c *county, want int, people bool) {
	t.Helper()
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]listRow](readList))
	if err != nil {
		t.Fatal(err)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if len(rows) != want || want == 0 {
		t.Errorf("%s lists %d, its figure says %d", loc, len(rows), want)
	}
	masked := regexp.MustCompile(`^\d{4}\*{10}[\dX]{4}$`)
	for i, r := range rows {
		if name := c.names[r.Area]; name == "" || !strings.HasPrefix(r.Group, name) {
			t.Errorf("%s: unit %d of %s under %q, want its name %q", loc, i, r.Area, r.Group, name)
		}
		if people && i < 5 && (r.Name == "" || r.Name == "—" || !masked.MatchString(r.Masked)) {
			t.Errorf("%s: unit %d shows %q %q, want a name and a masked ID number", loc, i, r.Name, r.Masked)
		}
	}
}

// A real headless Chromium signs in to the county's page (refused with a
// wrong password first), reads the overview, follows the drill-down to a
// township and a village and checks every figure against the server's
// report, follows a rate's and a count's figure to the units behind them,
// opens the 日通报 and the devices page, switches to English, fits a phone's
// screen (the overview and a list), saves a screenshot
// ($FIELDSYNC_SCREENSHOT, else in a temporary directory), and is sent back
// to sign in once its session has been idle too long.
func TestBrowser(t *testing.T) {
	path := chromium(t)
	t.Logf("chromium: %s", path)
	c := startCounty(t)
	c.nameAreas(t)
	devs := c.addDevices(t)
	c.addOverdue(t)
	password := c.addStaff(t, "县卫健局", c.code)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.WindowSize(1100, 900))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses its sandbox to root (CI runs as root)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	if err := chromedp.Do(bctx); err != nil { // starts the browser; no timeout on this context
		t.Fatalf("starting %s: %v", path, err)
	}
	ctx, cancel := context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()
	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimPrefix(loc, c.base)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s (at %s): %v", what, location(), err)
		}
	}
	signIn := func(pw string) {
		t.Helper()
		do("sign in",
			chromedp.WaitVisible(chromedp.CSS("#signin")),
			chromedp.SetValue(chromedp.CSS("#name"), "县卫健局"),
			chromedp.SetValue(chromedp.CSS("#password"), pw),
			chromedp.Click(chromedp.CSS("#signin")),
		)
	}

	do("open the page", chromedp.Navigate(c.base+"/"))
	if loc := location(); !strings.HasPrefix(loc, "/signin") {
		t.Fatalf("opening the page without a session lands on %s, want /signin", loc)
	}
	signIn("not-the-password")
	do("wrong password", chromedp.WaitVisible(chromedp.CSS("#error")))
	if msg, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#error"))); err != nil || !strings.Contains(msg, "密码错误") {
		t.Errorf("wrong password says %q, %v", msg, err)
	}
	signIn(password)
	do("overview", chromedp.WaitVisible(chromedp.CSS("section#contract_rate")))
	if loc := location(); !strings.HasPrefix(loc, "/area/"+c.code) {
		t.Fatalf("signed in at %s, want the county's overview", loc)
	}
	main := mainKeys()
	isMain := func(k string) bool { return main[k] }
	checkFigures(t, ctx, c, c.code, "township", isMain)

	// A rate's figure leads to those not achieving it, a count's to those
	// counted; the overview links to the 日通报 and the devices page.
	county := c.report(t, c.code, "township")
	do("the list behind a rate", chromedp.Click(chromedp.CSS(`section#health_check_rate tr.total td.val a`)), chromedp.WaitVisible(chromedp.CSS("#listed")))
	checkList(t, ctx, c, listLength(valueIn(t, county, pad(c.code), "health_check_rate")), true)
	do("up to the overview", chromedp.Click(chromedp.CSS(`nav.crumbs a[href^="/area/`+c.code+`?"]`)), chromedp.WaitVisible(chromedp.CSS("section#problems_overdue")))
	town0 := pad(c.townships[0])
	do("the list behind a township's count", chromedp.Click(chromedp.CSS(`section#problems_overdue tr[data-area="`+town0+`"] td.val a`)), chromedp.WaitVisible(chromedp.CSS("#listed")))
	checkList(t, ctx, c, listLength(valueIn(t, county, town0, "problems_overdue")), false)
	do("日通报", chromedp.Click(chromedp.CSS(`nav.crumbs a[href^="/area/`+c.code+`?"]`)), chromedp.WaitVisible(chromedp.CSS("#overdue")),
		chromedp.Click(chromedp.CSS("#overdue")), chromedp.WaitVisible(chromedp.CSS("section#summary")))
	checkList(t, ctx, c, listLength(valueIn(t, county, pad(c.code), "problems_overdue")), false)
	do("devices", chromedp.Click(chromedp.CSS("#devices")), chromedp.WaitVisible(chromedp.CSS("section#stale")))
	checkList(t, ctx, c, len(devs.stale), false)
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("section#stale tr[data-area]").length`)); err != nil || n != len(devs.staleVillages) {
		t.Errorf("the devices page lists %d villages no device synced for (%v), want %d", n, err, len(devs.staleVillages))
	}
	do("back to the overview", chromedp.Navigate(c.base+"/area/"+c.code), chromedp.WaitVisible(chromedp.CSS("section#contract_rate")))

	town := c.townships[1]
	do("drill down to a township",
		chromedp.Click(chromedp.CSS(`section#contract_rate tr[data-area="`+town+`000"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`section#contract_rate tr.total[data-area="`+town+`000"]`)),
	)
	checkFigures(t, ctx, c, town, "village", isMain)
	if crumb, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("nav.crumbs a"))); err != nil || crumb != c.names[pad(c.code)] {
		t.Errorf("the township's breadcrumb starts at %q (%v), want the county's name %q", crumb, err, c.names[pad(c.code)])
	}

	village := c.villages[2]
	do("drill down to a village",
		chromedp.Click(chromedp.CSS(`section#htn_standard_mgmt_rate tr[data-area="`+village+`"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`section#clinic_compliance\.drugs\.expired tr[data-area="`+village+`"]`)),
	)
	checkFigures(t, ctx, c, village, "village", func(string) bool { return true })
	do("back up to the township", chromedp.Click(chromedp.CSS(`nav.crumbs a[href^="/area/`+town+`?"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr.total[data-area="`+town+`000"]`)))

	do("English", chromedp.Click(chromedp.CSS(`header a[href*="lang=en"]`)), chromedp.WaitVisible(chromedp.CSS(`#signout`)))
	def, _ := indicators.Lookup("contract_rate")
	if h, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("section#contract_rate h2"))); err != nil || !strings.Contains(h, def.English) {
		t.Errorf("the English page heads contract_rate %q (%v), want %q", h, err, def.English)
	}

	// A phone's screen: nothing wider than it.
	do("phone", chromedp.EmulateViewport(360, 740), chromedp.Navigate(c.base+"/area/"+c.code), chromedp.WaitVisible(chromedp.CSS("section#contract_rate")))
	if w, err := chromedp.Run(ctx, chromedp.Evaluate[int]("document.documentElement.scrollWidth")); err != nil || w > 360 {
		t.Errorf("on a 360 px screen the page is %d px wide (%v)", w, err)
	}
	do("a list on the phone", chromedp.Navigate(c.base+"/area/"+c.code+"/list/health_check_rate"), chromedp.WaitVisible(chromedp.CSS("#listed")))
	if w, err := chromedp.Run(ctx, chromedp.Evaluate[int]("document.documentElement.scrollWidth")); err != nil || w > 360 {
		t.Errorf("on a 360 px screen the list is %d px wide (%v)", w, err)
	}
	do("desktop", chromedp.EmulateViewport(1000, 900), chromedp.Navigate(c.base+"/area/"+c.code), chromedp.WaitVisible(chromedp.CSS("section#contract_rate")))
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	out := os.Getenv("FIELDSYNC_SCREENSHOT")
	if out == "" {
		out = filepath.Join(t.TempDir(), "county-page.png")
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", out, len(shot))

	// A session idle for longer than its limit is over.
	c.clock.advance(8*time.Hour + time.Minute)
	do("after 8 idle hours", chromedp.Navigate(c.base+"/area/"+c.townships[0]), chromedp.WaitVisible(chromedp.CSS("#signin")))
	if loc := location(); !strings.HasPrefix(loc, "/signin") || !strings.Contains(loc, "next=") {
		t.Errorf("an expired session lands on %s, want /signin with the page to return to", loc)
	}
	signIn(password)
	do("back where it was", chromedp.WaitVisible(chromedp.CSS(`tr.total[data-area="`+c.townships[0]+`000"]`)))
}
