// Package reportfile writes the indicators and the lists behind them as the
// files people download: CSV in the long format and XLSX workbooks, the same
// from the command line (fieldsync admin report) and the web page.
package reportfile

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"

	"github.com/xuri/excelize/v2"

	"github.com/fieldsync/fieldsync/indicators"
	"github.com/fieldsync/fieldsync/internal/csvcell"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// The workbooks, in the house format: a Chinese header row with the keys beneath it, the
// data from row 3; numbers as numbers, rates as fractions formatted as
// percentages (an empty cell when there is nothing to count), counts as
// whole numbers.

// XLSXType is the media type of the workbooks.
const XLSXType = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

// xlsxSheets names each level's sheet.
var xlsxSheets = map[string]string{"county": "县", "township": "乡镇", "village": "村"}

// xlsxHead starts sheet of f with its header (head) and keys beneath, in
// bold, frozen with the first frozen columns.
func xlsxHead(f *excelize.File, sheet string, head, keys []any, frozen int) error {
	if err := f.SetSheetRow(sheet, "A1", &head); err != nil {
		return err
	}
	if err := f.SetSheetRow(sheet, "A2", &keys); err != nil {
		return err
	}
	bold, err := f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true}})
	if err != nil {
		return err
	}
	end, _ := excelize.CoordinatesToCellName(len(head), 2)
	if err := f.SetCellStyle(sheet, "A1", end, bold); err != nil {
		return err
	}
	top, _ := excelize.CoordinatesToCellName(frozen+1, 3)
	return f.SetPanes(sheet, &excelize.Panes{Freeze: true, XSplit: frozen, YSplit: 2, TopLeftCell: top, ActivePane: "bottomRight"})
}

// IndicatorsXLSX writes the rows of resp for keys as a workbook: one sheet
// per level (县, 乡镇, 村), one row per area, one column per key after
// area_code, area_name and as_of.
func IndicatorsXLSX(w io.Writer, resp *fieldsyncv1.IndicatorsResponse, keys []indicators.Def) error {
	f := excelize.NewFile()
	defer f.Close()
	pct, err := f.NewStyle(&excelize.Style{NumFmt: 10}) // 0.00%
	if err != nil {
		return err
	}
	asOf := survey.FormatDate(resp.GetAsOf())
	next := map[string]int{} // the next row of each sheet
	for _, row := range resp.GetRows() {
		sheet := xlsxSheets[row.GetLevel()]
		if sheet == "" {
			return fmt.Errorf("reportfile: a row of level %q", row.GetLevel())
		}
		if next[sheet] == 0 {
			if len(next) == 0 {
				err = f.SetSheetName("Sheet1", sheet)
			} else {
				_, err = f.NewSheet(sheet)
			}
			if err != nil {
				return err
			}
			head, ks := []any{"地区代码", "地区名称", "统计日期"}, []any{"area_code", "area_name", "as_of"}
			for _, def := range keys {
				head, ks = append(head, def.Name), append(ks, string(def.Key))
			}
			if err := xlsxHead(f, sheet, head, ks, 2); err != nil {
				return err
			}
			next[sheet] = 3
		}
		n := next[sheet]
		next[sheet]++
		cells := []any{row.GetAreaCode(), row.GetAreaName(), asOf}
		for _, def := range keys {
			v := ValueOf(row, def.Key)
			switch {
			case !v.GetRate():
				cells = append(cells, v.GetNumerator())
			case v.GetDenominator() == 0:
				cells = append(cells, nil)
			default:
				cells = append(cells, float64(v.GetNumerator())/float64(v.GetDenominator()))
			}
		}
		start, _ := excelize.CoordinatesToCellName(1, n)
		if err := f.SetSheetRow(sheet, start, &cells); err != nil {
			return err
		}
		for i, def := range keys {
			if def.Kind == indicators.Rate {
				cell, _ := excelize.CoordinatesToCellName(4+i, n)
				if err := f.SetCellStyle(sheet, cell, cell, pct); err != nil {
					return err
				}
			}
		}
	}
	return f.Write(w)
}

// ListXLSX writes items, units of resp's list, on one sheet (清单) under the
// columns of the list's CSV.
func ListXLSX(w io.Writer, resp *fieldsyncv1.IndicatorsResponse, items []*fieldsyncv1.IndicatorItem) error {
	f := excelize.NewFile()
	defer f.Close()
	const sheet = "清单"
	if err := f.SetSheetName("Sheet1", sheet); err != nil {
		return err
	}
	head := []any{"地区代码", "地区名称", "类别", "编号", "姓名/名称", "身份证号（脱敏）", "说明"}
	keys := make([]any, len(ListColumns))
	for i, k := range ListColumns {
		keys[i] = k
	}
	if err := xlsxHead(f, sheet, head, keys, 2); err != nil {
		return err
	}
	names := RowNames(resp)
	for i, it := range items {
		cells := []any{}
		for _, c := range listCells(names, it) {
			cells = append(cells, c)
		}
		start, _ := excelize.CoordinatesToCellName(1, 3+i)
		if err := f.SetSheetRow(sheet, start, &cells); err != nil {
			return err
		}
	}
	return f.Write(w)
}

// IndicatorsCSV writes the rows of resp for keys in the long format, one line
// per area and key, with the columns
// area_code,area_name,level,as_of,indicator,numerator,denominator,value
// (value a decimal fraction for a rate, empty when its denominator is 0; the
// count for a count, whose denominator is empty).
func IndicatorsCSV(w io.Writer, resp *fieldsyncv1.IndicatorsResponse, keys []indicators.Def) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"area_code", "area_name", "level", "as_of", "indicator", "numerator", "denominator", "value"})
	asOf := survey.FormatDate(resp.GetAsOf())
	for _, row := range resp.GetRows() {
		for _, def := range keys {
			v := ValueOf(row, def.Key)
			if v == nil {
				continue
			}
			num, den, val := strconv.FormatInt(v.GetNumerator(), 10), "", strconv.FormatInt(v.GetNumerator(), 10)
			if v.GetRate() {
				den, val = strconv.FormatInt(v.GetDenominator(), 10), indicators.Fraction(v.GetNumerator(), v.GetDenominator())
			}
			cw.Write([]string{row.GetAreaCode(), csvcell.Text(row.GetAreaName()), row.GetLevel(), asOf, string(def.Key), num, den, val})
		}
	}
	cw.Flush()
	return cw.Error()
}

// ListCSV writes items, units of resp's list, under ListColumns.
func ListCSV(w io.Writer, resp *fieldsyncv1.IndicatorsResponse, items []*fieldsyncv1.IndicatorItem) error {
	cw := csv.NewWriter(w)
	cw.Write(ListColumns)
	names := RowNames(resp)
	for _, it := range items {
		cells := listCells(names, it)
		for i, c := range cells {
			cells[i] = csvcell.Text(c)
		}
		cw.Write(cells)
	}
	cw.Flush()
	return cw.Error()
}

// ValueOf is row's value of key, nil when it has none.
func ValueOf(row *fieldsyncv1.IndicatorRow, key indicators.Key) *fieldsyncv1.IndicatorValue {
	for _, v := range row.GetValues() {
		if v.GetKey() == string(key) {
			return v
		}
	}
	return nil
}

// ListColumns are the columns of a list's downloads.
var ListColumns = []string{"area_code", "area_name", "kind", "id", "name", "masked_id", "detail"}

// RowNames are the names the server gives the areas of resp's rows (none
// for an area it has no name for), by 12-digit code.
func RowNames(resp *fieldsyncv1.IndicatorsResponse) map[string]string {
	names := map[string]string{}
	for _, row := range resp.GetRows() {
		names[row.GetAreaCode()] = row.GetAreaName()
	}
	return names
}

// listCells are it's cells under ListColumns, its area named from names
// (RowNames).
func listCells(names map[string]string, it *fieldsyncv1.IndicatorItem) []string {
	return []string{it.GetAreaCode(), names[it.GetAreaCode()], it.GetKind(), it.GetId(), it.GetName(), it.GetMaskedId(), it.GetDetail()}
}
