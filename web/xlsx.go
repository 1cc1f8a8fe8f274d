package web

import (
	"bytes"
	"fmt"

	"github.com/xuri/excelize/v2"

	"github.com/fieldsync/fieldsync/indicators"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// The workbooks a page downloads, in the house format of fieldsync admin
// report --format xlsx: a Chinese header row with the keys beneath it, the
// data from row 3; numbers as numbers, rates as fractions formatted as
// percentages (an empty cell when there is nothing to count), counts as
// whole numbers.

const xlsxType = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

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

// writeAreaXLSX writes the rows of resp for keys: one sheet per level, one
// row per area, one column per key after area_code, area_name and as_of.
func writeAreaXLSX(buf *bytes.Buffer, resp *fieldsyncv1.IndicatorsResponse, keys []indicators.Def) error {
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
			return fmt.Errorf("web: a row of level %q", row.GetLevel())
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
			v := valueOf(row, def.Key)
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
	return f.Write(buf)
}

// writeListXLSX writes items, units of resp's list, on one sheet (清单)
// under the columns of the list's CSV.
func writeListXLSX(buf *bytes.Buffer, resp *fieldsyncv1.IndicatorsResponse, items []*fieldsyncv1.IndicatorItem) error {
	f := excelize.NewFile()
	defer f.Close()
	const sheet = "清单"
	if err := f.SetSheetName("Sheet1", sheet); err != nil {
		return err
	}
	head := []any{"地区代码", "地区名称", "类别", "编号", "姓名/名称", "身份证号（脱敏）", "说明"}
	keys := make([]any, len(listColumns))
	for i, k := range listColumns {
		keys[i] = k
	}
	if err := xlsxHead(f, sheet, head, keys, 2); err != nil {
		return err
	}
	names := rowNames(resp)
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
	return f.Write(buf)
}
