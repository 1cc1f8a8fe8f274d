package web

import (
	"bytes"
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/fieldsync/fieldsync/indicators"
	"github.com/fieldsync/fieldsync/internal/reportfile"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/survey"
)

// The lists behind the numbers: for an indicator of an area, the units the
// server's IndicatorsRequest.list_key gives (those not achieving a rate,
// those a count counts), by village, with their names and masked ID numbers
// (never a clear one); the 日通报 (problems_overdue, with a count per
// village); and the devices not synced for three days, with the villages no
// device has synced for.

// maxListRows bounds the units a list page shows at once: longer lists come
// in pages (?page=N); the downloads hold every unit.
var maxListRows = 2000

// Keys of the lists with pages of their own.
const (
	overdueKey = indicators.Key("problems_overdue")
	devicesKey = indicators.Key("devices_not_synced_3d")
)

// listed returns the units of resp's list that count in area (a prefix):
// resp may cover more (the devices page reads the server's whole area), and
// a list may name a unit of an area around the one asked for (a device
// serving a whole township, seen from one of its villages), which the
// area's figure does not count.
func listed(resp *fieldsyncv1.IndicatorsResponse, area string) []*fieldsyncv1.IndicatorItem {
	var out []*fieldsyncv1.IndicatorItem
	for _, it := range resp.GetItems() {
		if strings.HasPrefix(it.GetAreaCode(), area) {
			out = append(out, it)
		}
	}
	return out
}

type listData struct {
	frame
	Key, Heading string
	// Figure is the area's figure for the key; Listed how many units the
	// list holds and what they are.
	Figure, Listed, Truncated string
	// Prev and Next link to the list's other pages, when it has them.
	Prev, Next string
	// Summary is the 日通报's count per village.
	Summary []summaryRow
	Groups  []listGroup
	// Stale and StaleShown are the devices page's villages no device has
	// synced for in three days.
	Stale      []staleVillage
	StaleShown bool
}

// listGroup is the units of one area (a village, or for a device the
// township or county it serves).
type listGroup struct {
	Area, Name string
	Count      int
	Items      []listRow
}

// listRow is a unit of a list; Name is its id when it has no name (a
// device a township reported).
type listRow struct{ ID, Kind, Name, MaskedID, Detail string }

type summaryRow struct {
	Area, Name, Href string
	Count            int64
}

type staleVillage struct {
	Area, Name, Why string
	// Devices is how many active devices serve it (all stale).
	Devices int
}

// listOf reads the list of key for the page, as of the day asked for; it
// answers 404 or 403 (false) when there is none the member may read.
func (h *Handler) listOf(w http.ResponseWriter, r *http.Request, q request, key indicators.Key) (area string, def indicators.Def, resp *fieldsyncv1.IndicatorsResponse, ok bool) {
	area, _, ok = h.areaFor(w, r, q)
	if !ok {
		return "", def, nil, false
	}
	def, ok = indicators.Lookup(key)
	if !ok {
		h.render(w, http.StatusNotFound, "error", errorData{titled(q.t), q.t.NoKey})
		return "", def, nil, false
	}
	resp, err := h.report(r, &fieldsyncv1.IndicatorsRequest{AreaCode: area, Depth: indicators.Village.String(), ListKey: string(key)}, false)
	if err != nil {
		h.fail(w, r, q.t, err)
		return "", def, nil, false
	}
	return area, def, resp, true
}

// listPage shows the units behind the figure of an indicator of an area.
func (h *Handler) listPage(w http.ResponseWriter, r *http.Request, q request) {
	key := indicators.Key(r.PathValue("key"))
	area, def, resp, ok := h.listOf(w, r, q, key)
	if !ok {
		return
	}
	query := pageQuery(r, q.t)
	d := h.listData(r, q, area, def, resp, "/area/"+area+"/list/"+string(key), query, q.t.defName(def))
	h.render(w, http.StatusOK, "list", d)
}

// overduePage is the 日通报: the problems open past their deadline at the
// end of the day asked for, with a count per village.
func (h *Handler) overduePage(w http.ResponseWriter, r *http.Request, q request) {
	area, def, resp, ok := h.listOf(w, r, q, overdueKey)
	if !ok {
		return
	}
	query := pageQuery(r, q.t)
	d := h.listData(r, q, area, def, resp, "/area/"+area+"/overdue", query, q.t.Overdue)
	d.Heading = q.t.OverdueTitle
	names := namesOf(q.t, resp)
	for _, row := range resp.GetRows() {
		if row.GetLevel() != indicators.Village.String() {
			continue
		}
		s := summaryRow{Area: row.GetAreaCode(), Name: names[row.GetAreaCode()], Count: reportfile.ValueOf(row, overdueKey).GetNumerator()}
		if s.Count > 0 {
			s.Href = "#v" + row.GetAreaCode()
		}
		d.Summary = append(d.Summary, s)
	}
	h.render(w, http.StatusOK, "list", d)
}

// devicesPage lists the devices of an area not synced for three days, as of
// now, and the villages no device has synced for in that time. It reads the
// list of the server's whole area, in which a device serving more than the
// page's area (a township's tablet, seen from a village) is listed too; it
// costs no more than the area's own, since the server computes the figures of
// its area for either.
func (h *Handler) devicesPage(w http.ResponseWriter, r *http.Request, q request) {
	area, _, ok := h.areaFor(w, r, q)
	if !ok {
		return
	}
	def, _ := indicators.Lookup(devicesKey)
	resp, err := h.report(r, &fieldsyncv1.IndicatorsRequest{Depth: indicators.Village.String(), ListKey: string(devicesKey)}, true)
	if err != nil {
		h.fail(w, r, q.t, err)
		return
	}
	devices, err := h.cfg.Server.CountedDevices(r.Context())
	if err != nil {
		h.fail(w, r, q.t, err)
		return
	}
	query := url.Values{"lang": {q.t.Lang}}
	d := h.listData(r, q, area, def, resp, "/area/"+area+"/devices", query, q.t.Devices)
	d.Now, d.StaleShown = true, true
	d.Stale = staleVillages(q.t, area, resp, devices)
	h.render(w, http.StatusOK, "list", d)
}

// listData is the page of resp's list of def for area.
func (h *Handler) listData(r *http.Request, q request, area string, def indicators.Def, resp *fieldsyncv1.IndicatorsResponse, path string, query url.Values, crumbName string) listData {
	t := q.t
	names := namesOf(t, resp)
	d := listData{frame: h.frameOf(r, q, area, resp, names, path, query, crumbName), Key: string(def.Key), Heading: t.defName(def)}
	base := "/area/" + area + "/list/" + string(def.Key)
	d.CSV, d.XLSX = base+"/csv?"+query.Encode(), base+"/xlsx?"+query.Encode()
	items := listed(resp, area)
	if row := rowOf(resp, pad(area)); row != nil {
		v := reportfile.ValueOf(row, def.Key)
		val, frac, _, _ := figure(v, 0)
		if frac != "" {
			val += " (" + frac + ")"
			d.Listed = fmt.Sprintf(t.RateListF, v.GetDenominator()-v.GetNumerator())
		} else {
			d.Listed = fmt.Sprintf(t.CountListF, v.GetNumerator())
		}
		d.Figure = fmt.Sprintf(t.FigureF, t.defName(def), val)
	}
	d.Listed += " · " + fmt.Sprintf(t.ListedF, len(items))
	pages := max(1, (len(items)+maxListRows-1)/maxListRows)
	page, err := strconv.Atoi(r.FormValue("page"))
	if err != nil || page < 1 || page > pages {
		page = 1
	}
	if pages > 1 {
		d.Truncated = fmt.Sprintf(t.PagesF, page, pages, maxListRows)
		link := func(n int) string {
			q := url.Values{}
			for k, v := range query {
				q[k] = v
			}
			q.Set("page", strconv.Itoa(n))
			return path + "?" + q.Encode()
		}
		if page > 1 {
			d.Prev = link(page - 1)
		}
		if page < pages {
			d.Next = link(page + 1)
		}
	}
	from, to := (page-1)*maxListRows, min(page*maxListRows, len(items))
	count := map[string]int{}
	for _, it := range items {
		count[it.GetAreaCode()]++
	}
	for _, it := range items[from:to] {
		if n := len(d.Groups); n == 0 || d.Groups[n-1].Area != it.GetAreaCode() {
			name := names[it.GetAreaCode()]
			if name == "" {
				name = t.levelName(levelOfPrefix(prefixOf(it.GetAreaCode()))) + " " + prefixOf(it.GetAreaCode())
			}
			d.Groups = append(d.Groups, listGroup{Area: it.GetAreaCode(), Name: name})
		}
		g := &d.Groups[len(d.Groups)-1]
		g.Count = count[it.GetAreaCode()]
		g.Items = append(g.Items, listRow{ID: it.GetId(), Kind: t.kind(it.GetKind()), Name: cmp.Or(it.GetName(), it.GetId()), MaskedID: it.GetMaskedId(), Detail: t.detail(it)})
	}
	return d
}

// staleVillages are the villages of area that no device has synced for in
// three days: those no active device serves (a device serves the villages
// its area prefixes cover), and those whose devices are all on resp's list
// of devices_not_synced_3d, which must cover every device serving them (the
// server's whole area does). The villages are those of resp's rows (the
// villages the server counts a unit in) and those a device names.
func staleVillages(t *texts, area string, resp *fieldsyncv1.IndicatorsResponse, devices []server.CountedDevice) []staleVillage {
	stale := map[string]bool{}
	for _, it := range resp.GetItems() {
		stale[it.GetId()] = true
	}
	names := namesOf(t, resp)
	var villages []string
	for _, row := range resp.GetRows() {
		if row.GetLevel() == indicators.Village.String() && strings.HasPrefix(row.GetAreaCode(), area) {
			villages = append(villages, row.GetAreaCode())
		}
	}
	for _, dev := range devices {
		for _, p := range dev.Areas {
			if len(p) == 12 && levelOfPrefix(prefixOf(p)) == indicators.Village && strings.HasPrefix(p, area) {
				villages = append(villages, p)
			}
		}
	}
	slices.Sort(villages)
	villages = slices.Compact(villages)
	var out []staleVillage
	for _, v := range villages {
		serving, fresh := 0, 0
		for _, dev := range devices {
			if slices.ContainsFunc(dev.Areas, func(p string) bool { return strings.HasPrefix(v, prefixOf(p)) }) {
				serving++
				if !stale[dev.ID] {
					fresh++
				}
			}
		}
		if fresh > 0 {
			continue
		}
		s := staleVillage{Area: v, Name: names[v], Devices: serving, Why: t.NoDevice}
		if s.Name == "" {
			s.Name = t.Village + " " + v
		}
		if serving > 0 {
			s.Why = fmt.Sprintf(t.AllStaleF, serving)
		}
		out = append(out, s)
	}
	return out
}

// listFile writes a list in format f: the columns of fieldsync admin report
// list --format csv (area_code,area_name,kind,id,name,masked_id,detail), in
// a workbook under a Chinese header.
func (h *Handler) listFile(f fileFormat) func(http.ResponseWriter, *http.Request, request) {
	return func(w http.ResponseWriter, r *http.Request, q request) {
		key := indicators.Key(r.PathValue("key"))
		area, _, resp, ok := h.listOf(w, r, q, key)
		if !ok {
			return
		}
		var buf bytes.Buffer
		if err := f.list(&buf, resp, listed(resp, area)); err != nil {
			h.fail(w, r, q.t, err)
			return
		}
		download(w, f.ctype, fmt.Sprintf("fieldsync-%s-%s-%s.%s", area, key, survey.FormatDate(resp.GetAsOf()), f.ext), buf.Bytes())
	}
}

// rowOf is the row of resp for code (12 digits), nil when it has none.
func rowOf(resp *fieldsyncv1.IndicatorsResponse, code string) *fieldsyncv1.IndicatorRow {
	for _, row := range resp.GetRows() {
		if row.GetAreaCode() == code {
			return row
		}
	}
	return nil
}
