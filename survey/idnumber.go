package survey

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// ErrIDNumber is returned (wrapped) when a clear ID number is not a valid
// 18-character GB 11643 citizen identification number.
var ErrIDNumber = errors.New("invalid id number")

// gb11643Weights are the weights of the first 17 characters, 2^(17-i) mod 11.
var gb11643Weights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

// gb11643Check maps the weighted sum mod 11 to the check character.
const gb11643Check = "10X98765432"

// IDCheckDigit returns the GB 11643 check character ('0'–'9' or 'X') for the
// first 17 digits of an ID number.
func IDCheckDigit(first17 string) (byte, error) {
	if len(first17) != 17 {
		return 0, fmt.Errorf("%w: need 17 digits before the check character, got %d characters", ErrIDNumber, len(first17))
	}
	sum := 0
	for i := 0; i < 17; i++ {
		c := first17[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: character %d is %q, not a digit", ErrIDNumber, i+1, c)
		}
		sum += int(c-'0') * gb11643Weights[i]
	}
	return gb11643Check[sum%11], nil
}

// ParseIDNumber checks a clear ID number as typed at capture: 18 characters, the
// first 17 digits, a real birth date at characters 7–14, and the right check
// character (a lower-case x is accepted). It returns the normalised number
// (upper-case X) and the birth date it encodes.
func ParseIDNumber(clear string) (normalised string, birth time.Time, err error) {
	s := strings.ToUpper(strings.TrimSpace(clear))
	if len(s) != 18 {
		return "", time.Time{}, fmt.Errorf("%w: %d characters, want 18", ErrIDNumber, len(s))
	}
	want, err := IDCheckDigit(s[:17])
	if err != nil {
		return "", time.Time{}, err
	}
	if s[17] != want {
		return "", time.Time{}, fmt.Errorf("%w: check character is %q, want %q: re-read the number from the card", ErrIDNumber, s[17], want)
	}
	birth, err = time.Parse("20060102", s[6:14])
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: characters 7 to 14 (%s) are not a birth date", ErrIDNumber, s[6:14])
	}
	return s, birth, nil
}

// MaskIDNumber returns the display form of a clear ID number: the first four and
// the last four characters with the ten between them masked, e.g.
// "5325**********1234". A string too short to mask is masked entirely.
func MaskIDNumber(clear string) string {
	s := strings.ToUpper(strings.TrimSpace(clear))
	if len(s) < 9 {
		return strings.Repeat("*", len(s))
	}
	return s[:4] + strings.Repeat("*", len(s)-8) + s[len(s)-4:]
}

// HashIDNumber returns the keyed hash that identifies a person across replicas
// without the clear number: HMAC-SHA256 of the normalised number under the
// county's ID-hash key (see IdNumber.keyed_hash).
func HashIDNumber(key []byte, clear string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(strings.ToUpper(strings.TrimSpace(clear))))
	return m.Sum(nil)
}

// CaptureIDNumber checks a clear ID number and returns the only forms of it that
// may leave the device: masked, and hashed under key.
func CaptureIDNumber(key []byte, clear string) (*fieldsyncv1.IdNumber, error) {
	s, _, err := ParseIDNumber(clear)
	if err != nil {
		return nil, err
	}
	return &fieldsyncv1.IdNumber{Masked: MaskIDNumber(s), KeyedHash: HashIDNumber(key, s)}, nil
}
