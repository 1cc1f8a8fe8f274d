package web_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
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

// A real headless Chromium signs in to the county's page (refused with a
// wrong password first), reads the overview, follows the drill-down to a
// township and a village and checks every figure against the server's
// report, switches to English, fits a phone's screen, saves a screenshot
// ($FIELDSYNC_SCREENSHOT, else in a temporary directory), and is sent back
// to sign in once its session has been idle too long.
func TestBrowser(t *testing.T) {
	path := chromium(t)
	t.Logf("chromium: %s", path)
	c := startCounty(t)
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

	town := c.townships[1]
	do("drill down to a township",
		chromedp.Click(chromedp.CSS(`section#contract_rate tr[data-area="`+town+`000"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`section#contract_rate tr.total[data-area="`+town+`000"]`)),
	)
	checkFigures(t, ctx, c, town, "village", isMain)

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
