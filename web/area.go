package web

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/indicators"
	"github.com/fieldsync/fieldsync/internal/reportfile"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/survey"
)

// areaCode reads an area of the URL (6, 9 or 12 digits) and returns its
// prefix (6, 9 or 12 digits) and its level, or false.
func areaCode(code string) (string, indicators.Level, bool) {
	prefix, level, err := survey.ParseArea(code)
	return prefix, level, err == nil
}

// prefixOf is the short code of a 12-digit area code at its level: 6 digits
// for a county, 9 for a township, 12 for a village.
func prefixOf(code string) string {
	p, err := survey.AreaPrefix(code)
	if err != nil {
		return code
	}
	return p
}

// below is the level of the rows an area page of level shows: the level
// below it, or the village's own.
func below(level indicators.Level) indicators.Level {
	if level < indicators.Village {
		return level + 1
	}
	return level
}

// report reads the indicators req asks for (its area one the member may
// read), with the campaign of the request's form and, unless today, its
// day (as_of).
func (h *Handler) report(r *http.Request, req *fieldsyncv1.IndicatorsRequest, today bool) (*fieldsyncv1.IndicatorsResponse, error) {
	req.Campaign = r.FormValue("campaign")
	if s := r.FormValue("as_of"); s != "" && !today {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return nil, fmt.Errorf("web: %w: as_of %q is not a date (2026-06-15)", server.ErrBadRequest, s)
		}
		req.AsOf = &fieldsyncv1.Date{Year: int32(d.Year()), Month: int32(d.Month()), Day: int32(d.Day())}
	}
	return h.cfg.Server.IndicatorsReport(r.Context(), req)
}

// areaFor returns the area of the URL if the member may read it, else
// answers 404 or 403 and returns false.
func (h *Handler) areaFor(w http.ResponseWriter, r *http.Request, q request) (string, indicators.Level, bool) {
	area, level, ok := areaCode(r.PathValue("code"))
	switch {
	case !ok:
		h.render(w, http.StatusNotFound, "error", errorData{titled(q.t), q.t.NotFound})
	case !strings.HasPrefix(area, q.staff.Area):
		h.render(w, http.StatusForbidden, "error", errorData{titled(q.t), q.t.NotYours})
		ok = false
	}
	return area, level, ok
}

// keysOf are the indicators a page of an area at level shows: the main ones,
// and at a village their sub-keys too.
func keysOf(level indicators.Level) []indicators.Def {
	var out []indicators.Def
	for _, d := range indicators.Keys() {
		if level == indicators.Village || !strings.Contains(string(d.Key), ".") {
			out = append(out, d)
		}
	}
	return out
}

type crumb struct{ Name, Href string }

// frame is what every page of an area shows around its figures or list: the
// header, the breadcrumb, the day, the downloads.
type frame struct {
	pageData
	Staff                         server.Staff
	RoleName, CSRF, OtherLang     string
	AsOf, Campaign, CampaignAsked string
	ComputedAt                    string
	// Now says the page is as of now, whatever the day asked (the devices
	// page): it offers no day to choose.
	Now    bool
	Crumbs []crumb
	// CSV and XLSX download what the page shows.
	CSV, XLSX string
	// Overdue and Devices link to the area's 日通报 and devices pages.
	Overdue, Devices string
}

// pageQuery is the query every link of a page carries: the language, and
// the day and campaign asked for.
func pageQuery(r *http.Request, t *texts) url.Values {
	query := url.Values{"lang": {t.Lang}}
	for _, k := range []string{"as_of", "campaign"} {
		if v := r.FormValue(k); v != "" {
			query.Set(k, v)
		}
	}
	return query
}

// frameOf returns the frame of the page at path (/area/CODE...) of area,
// whose report is resp and whose areas are named in names; the breadcrumb
// leads from the member's area down to area, and on to last when the page
// is not the area's own.
func (h *Handler) frameOf(r *http.Request, q request, area string, resp *fieldsyncv1.IndicatorsResponse, names map[string]string, path string, query url.Values, last string) frame {
	t := q.t
	other := url.Values{}
	for k, v := range query {
		other[k] = v
	}
	other.Set("lang", t.Other)
	f := frame{
		pageData: pageData{T: t}, Staff: q.staff, RoleName: t.role(q.staff.Role), CSRF: q.sess.csrf,
		OtherLang: path + "?" + other.Encode(),
		AsOf:      survey.FormatDate(resp.GetAsOf()), Campaign: resp.GetCampaign(), CampaignAsked: r.FormValue("campaign"),
		ComputedAt: resp.GetComputedAt().AsTime().In(chinaTime).Format("2006-01-02 15:04"),
		Overdue:    "/area/" + area + "/overdue?" + query.Encode(),
		Devices:    "/area/" + area + "/devices?" + url.Values{"lang": {t.Lang}}.Encode(),
	}
	f.Title = names[pad(area)] + " · " + t.Title
	var above map[string]string // the names of the areas above, when the report has none
	for _, p := range []string{area[:6], safePrefix(area, 9), safePrefix(area, 12)} {
		if p == "" || len(p) < len(q.staff.Area) {
			continue
		}
		name := names[pad(p)]
		if name == "" && above == nil {
			var err error
			if above, err = h.cfg.Server.AreaNames(r.Context()); err != nil {
				h.cfg.Logger.ErrorContext(r.Context(), "web page: area names", "err", err)
				above = map[string]string{}
			}
		}
		if name == "" {
			name = above[pad(p)]
		}
		if name == "" {
			name = t.levelName(levelOfPrefix(p)) + " " + p
		}
		c := crumb{Name: name}
		if p != area || last != "" {
			c.Href = "/area/" + p + "?" + query.Encode()
		}
		f.Crumbs = append(f.Crumbs, c)
	}
	if last != "" {
		f.Title = last + " · " + f.Title
		f.Crumbs = append(f.Crumbs, crumb{Name: last})
	}
	return f
}

// namesOf are the names the page shows for the areas of resp, by 12-digit
// code.
func namesOf(t *texts, resp *fieldsyncv1.IndicatorsResponse) map[string]string {
	names := map[string]string{}
	for _, row := range resp.GetRows() {
		names[row.GetAreaCode()] = t.areaName(row)
	}
	return names
}

type areaData struct {
	frame
	Sections []sectionData
}

type sectionData struct {
	Key, Name string
	Rows      []barRow
}

// barRow is one bar of a section: an area's figure for the key.
type barRow struct {
	Area, Key, Name, Href string
	Total                 bool
	// Val is the figure as people read it ("91.78%", "12"), Frac the rate's
	// numerator/denominator; List links to the units behind it.
	Val, Frac, List string
	// Width is the bar's length out of 100; Color its fill.
	Width, Color string
}

// areaPage shows the indicators of an area, one section per indicator with
// a bar for the area and one for each area below it.
func (h *Handler) areaPage(w http.ResponseWriter, r *http.Request, q request) {
	area, level, ok := h.areaFor(w, r, q)
	if !ok {
		return
	}
	resp, err := h.report(r, &fieldsyncv1.IndicatorsRequest{AreaCode: area, Depth: below(level).String()}, false)
	if err != nil {
		h.fail(w, r, q.t, err)
		return
	}
	t := q.t
	query := pageQuery(r, t)
	names := namesOf(t, resp)
	d := areaData{frame: h.frameOf(r, q, area, resp, names, "/area/"+area, query, "")}
	d.CSV = "/area/" + area + "/csv?" + query.Encode()
	d.XLSX = "/area/" + area + "/xlsx?" + query.Encode()
	for _, def := range keysOf(level) {
		sec := sectionData{Key: string(def.Key), Name: t.defName(def)}
		var max int64
		for _, row := range resp.GetRows() {
			if v := reportfile.ValueOf(row, def.Key); v != nil && v.GetNumerator() > max {
				max = v.GetNumerator()
			}
		}
		for i, row := range resp.GetRows() {
			v := reportfile.ValueOf(row, def.Key)
			if v == nil {
				continue
			}
			br := barRow{Area: row.GetAreaCode(), Key: string(def.Key), Name: names[row.GetAreaCode()], Total: i == 0}
			if i == 0 && level != indicators.Village {
				br.Name = t.Total + " · " + br.Name
			}
			if i > 0 {
				br.Href = "/area/" + prefixOf(row.GetAreaCode()) + "?" + query.Encode()
			}
			br.List = "/area/" + prefixOf(row.GetAreaCode()) + "/list/" + string(def.Key) + "?" + query.Encode()
			br.Val, br.Frac, br.Width, br.Color = figure(v, max)
			sec.Rows = append(sec.Rows, br)
		}
		d.Sections = append(d.Sections, sec)
	}
	h.render(w, http.StatusOK, "area", d)
}

// fileFormat is a download's format: the writers of the indicators and of
// a list, as fieldsync admin report writes them.
type fileFormat struct {
	ext, ctype string
	indicators func(io.Writer, *fieldsyncv1.IndicatorsResponse, []indicators.Def) error
	list       func(io.Writer, *fieldsyncv1.IndicatorsResponse, []*fieldsyncv1.IndicatorItem) error
}

// The download formats: the long CSV of admin report --format csv, and the
// workbook of --format xlsx.
var (
	csvFile  = fileFormat{"csv", "text/csv; charset=utf-8", reportfile.IndicatorsCSV, reportfile.ListCSV}
	xlsxFile = fileFormat{"xlsx", reportfile.XLSXType, reportfile.IndicatorsXLSX, reportfile.ListXLSX}
)

// areaFile writes what the area's page shows in format f.
func (h *Handler) areaFile(f fileFormat) func(http.ResponseWriter, *http.Request, request) {
	return func(w http.ResponseWriter, r *http.Request, q request) {
		area, level, ok := h.areaFor(w, r, q)
		if !ok {
			return
		}
		resp, err := h.report(r, &fieldsyncv1.IndicatorsRequest{AreaCode: area, Depth: below(level).String()}, false)
		if err != nil {
			h.fail(w, r, q.t, err)
			return
		}
		var buf bytes.Buffer
		if err := f.indicators(&buf, resp, keysOf(level)); err != nil {
			h.fail(w, r, q.t, err)
			return
		}
		download(w, f.ctype, fmt.Sprintf("fieldsync-%s-%s.%s", area, survey.FormatDate(resp.GetAsOf()), f.ext), buf.Bytes())
	}
}

// download answers a file to save, of type ctype, as name (ASCII).
func download(w http.ResponseWriter, ctype, name string, b []byte) {
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, name))
	w.Write(b)
}

// figure is how a bar shows v: a rate's percentage and fraction, out of
// 100; a count, out of the section's largest.
func figure(v *fieldsyncv1.IndicatorValue, max int64) (val, frac, width, color string) {
	num, den := v.GetNumerator(), v.GetDenominator()
	if !v.GetRate() {
		w := "0"
		if max > 0 {
			w = strconv.FormatFloat(100*float64(num)/float64(max), 'f', 2, 64)
		}
		return strconv.FormatInt(num, 10), "", w, "#8a6d3b"
	}
	frac = fmt.Sprintf("%d/%d", num, den)
	if den == 0 {
		return "—", frac, "0", "#1d4e89"
	}
	p := indicators.Percent(num, den)
	color = "#1d4e89"
	if num*10 < den*8 { // under 80 %
		color = "#c2410c"
	}
	return p + "%", frac, p, color
}

var chinaTime = time.FixedZone("CST", 8*3600)

func pad(p string) string { return p + strings.Repeat("0", 12-len(p)) }

func safePrefix(s string, n int) string {
	if len(s) < n {
		return ""
	}
	return s[:n]
}

// levelOfPrefix is the level of an area's short code (6, 9 or 12 digits).
func levelOfPrefix(p string) indicators.Level {
	_, level, _ := survey.ParseArea(p)
	return level
}
