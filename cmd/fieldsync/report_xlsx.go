package main

import (
	"bytes"
	"fmt"

	"github.com/xuri/excelize/v2"

	"github.com/fieldsync/fieldsync/indicators"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// The XLSX report: one sheet per level (县, 乡镇, 村), one row per area, one
// column per indicator, a Chinese header with the key beneath it; rates are
// numbers formatted as percentages (empty when there is nothing to count),
// counts are whole numbers.

// xlsxSheets names each level's sheet.
var xlsxSheets = map[string]string{"county": "县", "township": "乡镇", "village": "村"}

// writeReportXLSX writes resp as an XLSX workbook.
func writeReportXLSX(buf *bytes.Buffer, resp *fieldsyncv1.IndicatorsResponse) error {
	f := excelize.NewFile()
	defer f.Close()
	pct, err := f.NewStyle(&excelize.Style{NumFmt: 10}) // 0.00%
	if err != nil {
		return err
	}
	bold, err := f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true}})
	if err != nil {
		return err
	}
	asOf := survey.FormatDate(resp.GetAsOf())
	rowOf := map[string]int{} // the next row of each sheet
	first := true
	for _, r := range resp.GetRows() {
		sheet := xlsxSheets[r.GetLevel()]
		if sheet == "" {
			return fmt.Errorf("a row of level %q", r.GetLevel())
		}
		if rowOf[sheet] == 0 {
			if first {
				if err := f.SetSheetName("Sheet1", sheet); err != nil {
					return err
				}
				first = false
			} else if _, err := f.NewSheet(sheet); err != nil {
				return err
			}
			head := []any{"地区代码", "地区名称", "统计日期"}
			keys := []any{"area_code", "area_name", "as_of"}
			for _, v := range r.GetValues() {
				def, _ := indicators.Lookup(indicators.Key(v.GetKey()))
				head = append(head, def.Name)
				keys = append(keys, v.GetKey())
			}
			if err := f.SetSheetRow(sheet, "A1", &head); err != nil {
				return err
			}
			if err := f.SetSheetRow(sheet, "A2", &keys); err != nil {
				return err
			}
			end, _ := excelize.CoordinatesToCellName(len(head), 2)
			if err := f.SetCellStyle(sheet, "A1", end, bold); err != nil {
				return err
			}
			if err := f.SetPanes(sheet, &excelize.Panes{Freeze: true, XSplit: 2, YSplit: 2, TopLeftCell: "C3", ActivePane: "bottomRight"}); err != nil {
				return err
			}
			rowOf[sheet] = 3
		}
		n := rowOf[sheet]
		rowOf[sheet]++
		cells := []any{r.GetAreaCode(), r.GetAreaName(), asOf}
		for _, v := range r.GetValues() {
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
		for i, v := range r.GetValues() {
			if v.GetRate() {
				cell, _ := excelize.CoordinatesToCellName(4+i, n)
				if err := f.SetCellStyle(sheet, cell, cell, pct); err != nil {
					return err
				}
			}
		}
	}
	return f.Write(buf)
}
