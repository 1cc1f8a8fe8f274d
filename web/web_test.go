package web_test

import (
	"context"
	"encoding/csv"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/fieldsync/fieldsync/indicators"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/web"
)

// clock is a settable clock for the web sessions.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// county is a real server holding a generated county of two townships of
// two villages each, with its web page on 127.0.0.1.
type county struct {
	srv       *server.Server
	admin     fieldsyncv1.AdminServiceClient
	adminCtx  func(t *testing.T) context.Context
	base      string // http://127.0.0.1:PORT
	clock     *clock
	conn      *grpc.ClientConn // to the server's gRPC port
	code      string           // the county's 6 digits
	townships []string
	villages  []string
	// names are the generated areas' names, by 12-digit code (nameAreas
	// gives them to the server); clearIDs every clear ID number of the
	// registry, which no page may show.
	names    map[string]string
	clearIDs []string
}

// startCounty saves a generated county through the server's save path (the
// problems through their ledger steps), as admin_report_test does, and
// serves the web page.
func startCounty(t *testing.T) *county {
	t.Helper()
	g, err := countygen.New(countygen.Config{Townships: 2, VillagesPerTownship: 2, HouseholdsPerVillage: 5, Seed: 13, AsOf: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	vs := g.County.Villages()
	c := &county{code: vs[0].Code[:6], clock: &clock{}, names: map[string]string{g.County.Code: g.County.Name}}
	for _, tw := range g.County.Townships {
		c.townships = append(c.townships, tw.Code[:9])
		c.names[tw.Code] = tw.Name
	}
	for _, v := range vs {
		c.villages = append(c.villages, v.Code)
		c.names[v.Code] = v.Name
		for _, h := range v.Households {
			for _, p := range h.Members {
				c.clearIDs = append(c.clearIDs, p.IDNumber)
			}
		}
	}
	dir := t.TempDir()
	srv, addr := servertest.Start(t, server.Config{DataDir: dir, Area: c.code})
	c.srv = srv
	err = g.Each(func(r *fieldsyncv1.Record) error {
		if p := r.GetProblem(); p != nil {
			for _, step := range countygen.LedgerSteps(p) {
				if _, err := srv.Save(t.Context(), &fieldsyncv1.Record{Body: &fieldsyncv1.Record_Problem{Problem: step}}); err != nil {
					return err
				}
			}
			return nil
		}
		_, err := srv.Save(t.Context(), r)
		return err
	})
	if err != nil {
		t.Fatalf("saving the county: %v", err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c.conn, c.admin = conn, fieldsyncv1.NewAdminServiceClient(conn)
	token, err := os.ReadFile(filepath.Join(dir, server.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	c.adminCtx = func(t *testing.T) context.Context {
		return metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+strings.TrimSpace(string(token)), server.OperatorMetadata, "test")
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: web.New(web.Config{Server: srv, Now: c.clock.now}), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("web page: %v", err)
		}
	}()
	t.Cleanup(func() {
		hs.Close()
		<-done
	})
	c.base = "http://" + lis.Addr().String()
	return c
}

// addStaff makes a staff credential through AdminService with the admin
// token and returns its password.
func (c *county) addStaff(t *testing.T, name, area string) string {
	t.Helper()
	resp, err := c.admin.AddStaff(c.adminCtx(t), &fieldsyncv1.AddStaffRequest{Name: name, AreaCode: area})
	if err != nil {
		t.Fatalf("AddStaff %s: %v", name, err)
	}
	if len(resp.GetPassword()) < 12 {
		t.Fatalf("password of %d characters", len(resp.GetPassword()))
	}
	return resp.GetPassword()
}

// report is the server's own report of area down to depth, as of today.
func (c *county) report(t *testing.T, area, depth string) *fieldsyncv1.IndicatorsResponse {
	t.Helper()
	resp, err := c.srv.IndicatorsReport(t.Context(), &fieldsyncv1.IndicatorsRequest{AreaCode: area, Depth: depth})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// shown is how the page must show a value: the percentage, or the count,
// and a rate's numerator/denominator.
func shown(v *fieldsyncv1.IndicatorValue) (val, frac string) {
	if !v.GetRate() {
		return strconv.FormatInt(v.GetNumerator(), 10), ""
	}
	frac = strconv.FormatInt(v.GetNumerator(), 10) + "/" + strconv.FormatInt(v.GetDenominator(), 10)
	if v.GetDenominator() == 0 {
		return "—", frac
	}
	return indicators.Percent(v.GetNumerator(), v.GetDenominator()) + "%", frac
}

// mainKeys are the indicators without sub-keys.
func mainKeys() map[string]bool {
	out := map[string]bool{}
	for _, d := range indicators.Keys() {
		if !strings.Contains(string(d.Key), ".") {
			out[string(d.Key)] = true
		}
	}
	return out
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, so a test sees them.
func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (c *county) signIn(t *testing.T, hc *http.Client, name, password string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, c.base+"/signin", strings.NewReader(url.Values{"name": {name}, "password": {password}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func get(t *testing.T, hc *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// A township's staff member signs in (not with a wrong password, not from
// another origin), sees their township and its villages only, downloads the
// CSV of what the page shows with the report's figures, and signs out with
// the page's CSRF token; a removed credential ends its sessions; too many
// wrong passwords from one address are turned away.
func TestSignInScopeCSVAndSignOut(t *testing.T) {
	c := startCounty(t)
	town, other := c.townships[0], c.townships[1]
	password := c.addStaff(t, "乡镇 A", town)
	if _, err := c.admin.AddStaff(c.adminCtx(t), &fieldsyncv1.AddStaffRequest{Name: "乡镇 A", AreaCode: other}); err == nil {
		t.Error("AddStaff took a name twice")
	}
	if _, err := c.admin.AddStaff(c.adminCtx(t), &fieldsyncv1.AddStaffRequest{Name: "x", AreaCode: town, Role: fieldsyncv1.StaffRole_STAFF_ROLE_COUNTY}); err == nil {
		t.Error("AddStaff made county staff of a township")
	}
	hc := browser(t)

	if resp, _ := get(t, hc, c.base+"/area/"+town); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin?") {
		t.Fatalf("a page without signing in: %s to %q, want a redirect to /signin", resp.Status, resp.Header.Get("Location"))
	}
	if resp := c.signIn(t, hc, "乡镇 A", password+"x", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong password: %s", resp.Status)
	}
	if resp := c.signIn(t, hc, "乡镇 A", password, http.Header{"Origin": {"http://evil.example"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("sign-in from another origin: %s", resp.Status)
	}
	resp := c.signIn(t, hc, "乡镇 A", password, http.Header{"Origin": {c.base}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %s", resp.Status)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode || len(cookies[0].Value) < 43 {
		t.Errorf("session cookie %+v, want one HttpOnly, SameSite=Strict cookie of 32 random bytes", cookies)
	}

	if resp, _ := get(t, hc, c.base+"/"); resp.Header.Get("Location") != "/area/"+town+"?lang=zh" {
		t.Errorf("home sends to %q, want the member's township", resp.Header.Get("Location"))
	}
	for _, area := range []string{c.code, other, c.villages[2]} {
		if resp, _ := get(t, hc, c.base+"/area/"+area); resp.StatusCode != http.StatusForbidden {
			t.Errorf("township staff reading %s: %s, want 403", area, resp.Status)
		}
	}
	resp, page := get(t, hc, c.base+"/area/"+town)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "签约率") || !strings.Contains(page, `href="/area/`+c.villages[0]) {
		t.Fatalf("township page: %s\n%.500s", resp.Status, page)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(page, "<script") {
		t.Errorf("the page has scripts or no strict CSP (%q)", csp)
	}

	resp, body := get(t, hc, c.base+"/area/"+town+"/csv")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("CSV: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	lines, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(lines[0], ","); got != "area_code,area_name,level,as_of,indicator,numerator,denominator,value" {
		t.Fatalf("CSV header %q", got)
	}
	want := map[string]*fieldsyncv1.IndicatorValue{}
	keys := mainKeys()
	report := c.report(t, town, "village")
	for _, row := range report.GetRows() {
		for _, v := range row.GetValues() {
			if keys[v.GetKey()] {
				want[row.GetAreaCode()+" "+v.GetKey()] = v
			}
		}
	}
	if len(lines)-1 != len(want) || len(want) != 3*len(keys) {
		t.Errorf("CSV has %d lines, want %d: the township and its 2 villages, %d keys each", len(lines)-1, len(want), len(keys))
	}
	for _, l := range lines[1:] {
		v := want[l[0]+" "+l[4]]
		if v == nil {
			t.Errorf("CSV line %v is not on the page", l)
			continue
		}
		if l[5] != strconv.FormatInt(v.GetNumerator(), 10) || (v.GetRate() && l[6] != strconv.FormatInt(v.GetDenominator(), 10)) {
			t.Errorf("CSV %v, report %v", l, v)
		}
	}

	// Sign-out needs the page's token.
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token on the page")
	}
	post := func(form url.Values) *http.Response {
		resp, err := hc.PostForm(c.base+"/signout", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := post(url.Values{"csrf": {"forged"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("sign-out with a forged token: %s", resp.Status)
	}
	if resp := post(url.Values{"csrf": {m[1]}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("sign-out: %s", resp.Status)
	}
	if resp, _ := get(t, hc, c.base+"/area/"+town); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a page after signing out: %s, want a redirect to sign in", resp.Status)
	}

	// Removing the credential ends its sessions at once.
	c.signIn(t, hc, "乡镇 A", password, nil)
	if resp, _ := get(t, hc, c.base+"/area/"+town); resp.StatusCode != http.StatusOK {
		t.Fatalf("signed in again: %s", resp.Status)
	}
	if _, err := c.admin.RemoveStaff(c.adminCtx(t), &fieldsyncv1.RemoveStaffRequest{Name: "乡镇 A"}); err != nil {
		t.Fatal(err)
	}
	if resp, _ := get(t, hc, c.base+"/area/"+town); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a page after the credential was removed: %s, want a redirect to sign in", resp.Status)
	}
	audit, err := c.admin.ListAudit(c.adminCtx(t), &fieldsyncv1.ListAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range audit.GetEntries() {
		actions = append(actions, e.GetAction().String())
		if strings.Contains(e.GetTarget()+e.GetDetail(), "乡镇 A") {
			t.Errorf("audit entry %v names the member", e)
		}
	}
	if got := strings.Join(actions, " "); got != "AUDIT_ACTION_STAFF_ADD AUDIT_ACTION_STAFF_REMOVE" {
		t.Errorf("audit trail %s, want the add and the remove", got)
	}

	// An address with too many wrong passwords waits, even with the right one.
	p2 := c.addStaff(t, "b", other)
	for range server.MaxSignInFailures {
		c.signIn(t, hc, "b", "wrong", nil)
	}
	if resp := c.signIn(t, hc, "b", p2, nil); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("sign-in after %d wrong passwords: %s, want 429", server.MaxSignInFailures, resp.Status)
	}
}
