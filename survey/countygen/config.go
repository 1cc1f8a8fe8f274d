package countygen

import (
	"errors"
	"fmt"
	"time"

	"github.com/fieldsync/fieldsync/survey"
)

// ErrConfig is returned (wrapped) by New when a Config cannot be generated:
// a malformed county code or a size outside the ranges documented on Config.
var ErrConfig = errors.New("invalid countygen config")

// CST is China Standard Time (survey.ChinaTime, a fixed zone, so no time-zone
// database is needed), the zone of every generated time and date.
var cst = survey.ChinaTime

// The defaults that a zero field of Config stands for.
const (
	DefaultSeed                 = 1
	DefaultCountyCode           = "532523"
	DefaultCountyName           = "屏边苗族自治县"
	DefaultTownships            = 7
	DefaultVillagesPerTownship  = 10
	DefaultHouseholdsPerVillage = 75
	DefaultCampaignDays         = 92
	DefaultSelfPayThresholdBP   = 1000
)

// Limits of the statistical division code: a county has at most 200 townships
// (codes 100–199 for towns, 200–299 for townships) and a township at most 199
// villages (codes 201–399).
const (
	MaxTownships           = 200
	MaxVillagesPerTownship = 199
	MaxPeople              = 3_000_000
)

// defaultIDHashKey is the ID-hash key used when Config.IDHashKey is nil. It is a
// fixed, public test key: never use it for real data.
var defaultIDHashKey = []byte("fieldsync countygen test key 32b")

// DefaultAsOf is the default Config.AsOf: 2026-11-01 00:00 China Standard Time
// (survey.ChinaTime).
func DefaultAsOf() time.Time { return time.Date(2026, 11, 1, 0, 0, 0, 0, cst) }

// Config sizes and seeds a generated county. The zero value of every field
// means its default (the Default constants and DefaultAsOf), so Config{}
// generates a county of 7 townships of 10 villages of 75 households, about
// 20,000 people.
//
// Size the county either by structure (Townships, VillagesPerTownship,
// HouseholdsPerVillage) or by People. With People set and Townships and
// VillagesPerTownship both zero, the structure is chosen to fit: villages of
// People/60 people (at least 250, at most 1,000) in townships of up to 12
// villages. With People set, each village gets an equal share of People and
// receives households until its share is reached, so the total is People plus
// at most a few per village; HouseholdsPerVillage is then ignored.
type Config struct {
	// Seed seeds every random choice. The same Config generates the same records,
	// byte for byte. Default DefaultSeed.
	Seed uint64
	// CountyCode is the 6-digit county prefix of every area code and ID number
	// (province, city, county; none of the three parts 00). Default "532523".
	CountyCode string
	// CountyName names the county in referrals and hospital names.
	// Default "屏边苗族自治县".
	CountyName string
	// Townships is the number of townships, 1 to MaxTownships. Default 7.
	Townships int
	// VillagesPerTownship is the number of villages in each township, 1 to
	// MaxVillagesPerTownship. Default 10.
	VillagesPerTownship int
	// HouseholdsPerVillage is the number of households in each village when
	// People is zero. Default 75 (about 290 people).
	HouseholdsPerVillage int
	// People, when positive, is the target number of people in the county, at
	// most MaxPeople. Zero sizes the county by HouseholdsPerVillage instead.
	People int
	// AsOf is the moment the county is generated as of: ages are taken at AsOf,
	// and every generated time is at or before it. Default DefaultAsOf().
	AsOf time.Time
	// IDHashKey keys the hash of ID numbers (survey.HashIDNumber). Default a
	// fixed public test key.
	IDHashKey []byte
	// Campaign names the household-visit campaign. Default "<year of AsOf>-回头看".
	Campaign string
	// CampaignDays is the length of the campaign in calendar days, ending on
	// the day before AsOf's day; every household is visited in it at least
	// once. Default 92.
	CampaignDays int
	// SelfPayThresholdBP is the self-pay share, in basis points, above which a
	// visit finding raises a return-to-poverty risk flag. Default 1000 (10 %).
	SelfPayThresholdBP int
}

// normalize returns c with defaults filled in, or an error wrapping ErrConfig.
func (c Config) normalize() (Config, error) {
	if c.Seed == 0 {
		c.Seed = DefaultSeed
	}
	if c.CountyCode == "" {
		c.CountyCode = DefaultCountyCode
	}
	if c.CountyName == "" {
		c.CountyName = DefaultCountyName
	}
	if c.AsOf.IsZero() {
		c.AsOf = DefaultAsOf()
	}
	c.AsOf = c.AsOf.In(cst)
	if c.IDHashKey == nil {
		c.IDHashKey = defaultIDHashKey
	}
	if c.Campaign == "" {
		c.Campaign = fmt.Sprintf("%d-回头看", c.AsOf.Year())
	}
	if c.CampaignDays == 0 {
		c.CampaignDays = DefaultCampaignDays
	}
	if c.SelfPayThresholdBP == 0 {
		c.SelfPayThresholdBP = DefaultSelfPayThresholdBP
	}
	if c.People > 0 && c.Townships == 0 && c.VillagesPerTownship == 0 {
		c.Townships, c.VillagesPerTownship = structureFor(c.People)
	}
	if c.Townships == 0 {
		c.Townships = DefaultTownships
	}
	if c.VillagesPerTownship == 0 {
		c.VillagesPerTownship = DefaultVillagesPerTownship
	}
	if c.HouseholdsPerVillage == 0 {
		c.HouseholdsPerVillage = DefaultHouseholdsPerVillage
	}
	return c, c.check()
}

// structureFor chooses townships and villages per township for a county of
// people: villages of people/60 people, clamped to 250–1,000, up to 12 villages
// per township.
func structureFor(people int) (townships, perTownship int) {
	perVillage := min(max(people/60, 250), 1000)
	villages := max(1, (people+perVillage/2)/perVillage)
	townships = (villages + 11) / 12
	perTownship = (villages + townships - 1) / townships
	return townships, perTownship
}

// check reports the first field of a normalized Config that is out of range.
func (c Config) check() error {
	if len(c.CountyCode) != 6 || !allDigits(c.CountyCode) {
		return fmt.Errorf("%w: county code %q is not 6 digits", ErrConfig, c.CountyCode)
	}
	if c.CountyCode[0:2] == "00" || c.CountyCode[2:4] == "00" || c.CountyCode[4:6] == "00" {
		return fmt.Errorf("%w: county code %q has a zero province, city or county part", ErrConfig, c.CountyCode)
	}
	switch {
	case c.Townships < 1 || c.Townships > MaxTownships:
		return fmt.Errorf("%w: %d townships, want 1 to %d", ErrConfig, c.Townships, MaxTownships)
	case c.VillagesPerTownship < 1 || c.VillagesPerTownship > MaxVillagesPerTownship:
		return fmt.Errorf("%w: %d villages per township, want 1 to %d", ErrConfig, c.VillagesPerTownship, MaxVillagesPerTownship)
	case c.HouseholdsPerVillage < 1:
		return fmt.Errorf("%w: %d households per village, want at least 1", ErrConfig, c.HouseholdsPerVillage)
	case c.People < 0 || c.People > MaxPeople:
		return fmt.Errorf("%w: %d people, want 0 to %d", ErrConfig, c.People, MaxPeople)
	case c.CampaignDays < 1 || c.CampaignDays > 365:
		return fmt.Errorf("%w: campaign of %d days, want 1 to 365", ErrConfig, c.CampaignDays)
	case c.SelfPayThresholdBP < 1 || c.SelfPayThresholdBP > 10000:
		return fmt.Errorf("%w: self-pay threshold %d bp, want 1 to 10000", ErrConfig, c.SelfPayThresholdBP)
	}
	return nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
