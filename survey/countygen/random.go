package countygen

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Streams name the independent random sequences a county draws from. Each
// village draws its registry and its surveys from streams of its own, so one
// village can be regenerated without the others. A stream is never drawn from
// for anything new: what a later version adds comes from a new stream, so
// that every value an earlier version generated stays the same.
const (
	streamCounty   = 1 << 40
	streamTownship = 2 << 40
	streamRegistry = 3 << 40
	streamSurveys  = 4 << 40
	streamBatches  = 5 << 40 // health checks and the three batches (batches.go)
)

// rng is a seeded PCG generator with the draws the generator needs.
type rng struct{ r *rand.Rand }

// newRNG returns the generator of one stream under seed.
func newRNG(seed, stream uint64) *rng {
	return &rng{rand.New(rand.NewPCG(splitmix(seed), splitmix(stream^0x9e3779b97f4a7c15)))}
}

// splitmix is the SplitMix64 finaliser, spreading nearby inputs apart.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// chance reports true with probability p.
func (x *rng) chance(p float64) bool { return x.r.Float64() < p }

// intn returns a value in [0, n).
func (x *rng) intn(n int) int { return x.r.IntN(n) }

// between returns a value in [lo, hi], both inclusive.
func (x *rng) between(lo, hi int) int { return lo + x.r.IntN(hi-lo+1) }

// uniform returns a value in [lo, hi).
func (x *rng) uniform(lo, hi float64) float64 { return lo + (hi-lo)*x.r.Float64() }

// normal returns a normal draw clamped to [lo, hi].
func (x *rng) normal(mean, sd, lo, hi float64) float64 {
	return math.Min(hi, math.Max(lo, mean+sd*x.r.NormFloat64()))
}

// weighted returns an index into weights with probability proportional to its
// weight.
func (x *rng) weighted(weights []float64) int {
	total := 0.0
	for _, w := range weights {
		total += w
	}
	v := x.r.Float64() * total
	for i, w := range weights {
		if v < w {
			return i
		}
		v -= w
	}
	return len(weights) - 1
}

// pick returns a uniformly chosen element of s.
func pick[T any](x *rng, s []T) T { return s[x.r.IntN(len(s))] }

// timeBetween returns a time in [a, b), to the second; a when b is not after a.
func (x *rng) timeBetween(a, b time.Time) time.Time {
	d := int64(b.Sub(a) / time.Second)
	if d <= 0 {
		return a
	}
	return a.Add(time.Duration(x.r.Int64N(d)) * time.Second)
}

// workTime returns a time during working hours (08:00–18:00) on the day of t.
func (x *rng) workTime(t time.Time) time.Time {
	return dayOf(t).Add(8*time.Hour + time.Duration(x.r.IntN(10*3600))*time.Second)
}

// uuid7 returns a UUIDv7 in canonical lower-case text whose timestamp is t and
// whose random bits come from the generator.
func (x *rng) uuid7(t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[0:8], uint64(t.UnixMilli())<<16)
	binary.BigEndian.PutUint16(b[6:8], uint16(x.r.Uint32()))
	binary.BigEndian.PutUint64(b[8:16], x.r.Uint64())
	b[6] = b[6]&0x0f | 0x70 // version 7
	b[8] = b[8]&0x3f | 0x80 // variant 10
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	hex.Encode(s[9:13], b[4:6])
	hex.Encode(s[14:18], b[6:8])
	hex.Encode(s[19:23], b[8:10])
	hex.Encode(s[24:36], b[10:16])
	s[8], s[13], s[18], s[23] = '-', '-', '-', '-'
	return string(s[:])
}

// attachment describes a synthetic file: its hash is the SHA-256 of label, so
// the same record always names the same file without storing anything.
func attachment(label, mediaType, caption string) *fieldsyncv1.Attachment {
	sum := sha256.Sum256([]byte(label))
	size := 80_000 + int64(binary.BigEndian.Uint32(sum[:4])%1_200_000)
	return &fieldsyncv1.Attachment{
		Sha256:    hex.EncodeToString(sum[:]),
		MediaType: mediaType,
		SizeBytes: size,
		Caption:   caption,
	}
}

// photo is a JPEG attachment.
func photo(label, caption string) *fieldsyncv1.Attachment {
	return attachment(label, "image/jpeg", caption)
}

// dayOf returns midnight CST of the day of t.
func dayOf(t time.Time) time.Time {
	t = t.In(cst)
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, cst)
}

// days returns d days as a duration.
func days(d int) time.Duration { return time.Duration(d) * 24 * time.Hour }

// protoDate returns the calendar date of t in CST, or nil for the zero time.
func protoDate(t time.Time) *fieldsyncv1.Date {
	if t.IsZero() {
		return nil
	}
	t = t.In(cst)
	return &fieldsyncv1.Date{Year: int32(t.Year()), Month: int32(t.Month()), Day: int32(t.Day())}
}

// ageAt returns the age in whole years at t of a person born on birth.
func ageAt(birth, t time.Time) int {
	t = t.In(cst)
	a := t.Year() - birth.Year()
	if t.Month() < birth.Month() || t.Month() == birth.Month() && t.Day() < birth.Day() {
		a--
	}
	return a
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// earlier returns the earlier of a and b.
func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
