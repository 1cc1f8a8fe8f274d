package survey_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/survey"
)

func TestIDCheckDigit(t *testing.T) {
	// The first two are the worked examples of GB 11643-1999.
	for _, tc := range []struct {
		first17 string
		want    byte
	}{
		{"11010519491231002", 'X'},
		{"44052418800101001", '4'},
		{"53252319580314031", '5'},
	} {
		got, err := survey.IDCheckDigit(tc.first17)
		if err != nil || got != tc.want {
			t.Errorf("IDCheckDigit(%s) = %q, %v; want %q", tc.first17, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "1101051949123100", "110105194912310021", "1101051949123100A"} {
		if _, err := survey.IDCheckDigit(bad); !errors.Is(err, survey.ErrIDNumber) {
			t.Errorf("IDCheckDigit(%q) error = %v, want ErrIDNumber", bad, err)
		}
	}
}

func TestParseIDNumber(t *testing.T) {
	got, birth, err := survey.ParseIDNumber(" 11010519491231002x ")
	if err != nil || got != "11010519491231002X" || !birth.Equal(time.Date(1949, 12, 31, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("ParseIDNumber = %q, %v, %v; want normalised number and 1949-12-31", got, birth, err)
	}
	for _, tc := range []struct{ bad, want string }{
		{"11010519491231002", "17 characters"},
		{"11010519491231002X1", "19 characters"},
		{"110105194912310021", "check character"},
		{"1101051949123100AX", "not a digit"},
		{"532523195803140316", "check character"},
		{"532523195802300313", "not a birth date"}, // 1958-02-30, correct check character
	} {
		_, _, err := survey.ParseIDNumber(tc.bad)
		if !errors.Is(err, survey.ErrIDNumber) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseIDNumber(%q) error = %v, want ErrIDNumber saying %q", tc.bad, err, tc.want)
		}
	}
}

func TestCaptureIDNumberKeepsNoClearNumber(t *testing.T) {
	id, err := survey.CaptureIDNumber(idHashKey, zhangID)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := id.GetMasked(), "5325**********0315"; got != want {
		t.Errorf("masked = %q, want %q", got, want)
	}
	if bytes.Contains(id.GetKeyedHash(), []byte(zhangID[4:14])) || len(id.GetKeyedHash()) != 32 {
		t.Errorf("keyed hash %x is not a 32-byte HMAC", id.GetKeyedHash())
	}
	again, _ := survey.CaptureIDNumber(idHashKey, zhangID)
	other, _ := survey.CaptureIDNumber([]byte("another county"), zhangID)
	if !bytes.Equal(id.GetKeyedHash(), again.GetKeyedHash()) || bytes.Equal(id.GetKeyedHash(), other.GetKeyedHash()) {
		t.Error("keyed hash must be stable under one key and differ under another")
	}
	if _, err := survey.CaptureIDNumber(idHashKey, "532523195803140316"); err == nil {
		t.Error("CaptureIDNumber accepted a wrong check digit")
	}
}

func TestParseAreaCode(t *testing.T) {
	for _, tc := range []struct {
		code string
		want survey.AreaLevel
	}{
		{"532523101201", survey.AreaVillage},
		{"532523101000", survey.AreaTownship},
		{"532523000000", survey.AreaCounty},
		{"53252310120", survey.AreaInvalid},
		{"5325231012011", survey.AreaInvalid},
		{"53252310120a", survey.AreaInvalid},
		{"532523000201", survey.AreaInvalid},
		{"000000101201", survey.AreaInvalid},
	} {
		got, err := survey.ParseAreaCode(tc.code)
		if got != tc.want || (err != nil) != (tc.want == survey.AreaInvalid) {
			t.Errorf("ParseAreaCode(%q) = %v, %v; want %v", tc.code, got, err, tc.want)
		}
	}
	for code, want := range map[string]string{"532523101201": "532523101201", "532523101000": "532523101", "532523000000": "532523"} {
		if got, err := survey.AreaPrefix(code); got != want || err != nil {
			t.Errorf("AreaPrefix(%s) = %q, %v; want %q", code, got, err, want)
		}
	}
	for _, tc := range []struct {
		code, prefix string
		level        survey.AreaLevel
	}{
		{"532523", "532523", survey.AreaCounty},
		{"532523000000", "532523", survey.AreaCounty},
		{"532523101", "532523101", survey.AreaTownship},
		{"532523101000", "532523101", survey.AreaTownship},
		{"532523101201", "532523101201", survey.AreaVillage},
		{"5325231", "", survey.AreaInvalid},
		{"532523000", "", survey.AreaInvalid}, // a township part of zeros
		{"53252a", "", survey.AreaInvalid},
		{"", "", survey.AreaInvalid},
	} {
		prefix, level, err := survey.ParseArea(tc.code)
		if prefix != tc.prefix || level != tc.level || (err != nil) != (tc.level == survey.AreaInvalid) {
			t.Errorf("ParseArea(%q) = %q, %v, %v; want %q, %v", tc.code, prefix, level, err, tc.prefix, tc.level)
		}
	}
}
