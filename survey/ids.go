package survey

import (
	"github.com/google/uuid"
)

// derivedIDSpace is the namespace of the name-based ids of problems and risk
// flags raised by the rules. Never change it: every replica must derive the
// same id for the same finding.
var derivedIDSpace = uuid.MustParse("6f1c3a52-8d0e-4b7a-9e43-2c5d7f0a9b18")

// ProblemID returns the id of the problem a survey record raises for item and
// person (personID "" for a problem about the record as a whole): a name-based
// version 5 UUID, so the same finding raised on two phones, raised again by a
// later save or raised at the township is one problem everywhere.
func ProblemID(sourceRecordID, item, personID string) string {
	return uuid.NewSHA1(derivedIDSpace, []byte("problem\x00"+sourceRecordID+"\x00"+item+"\x00"+personID)).String()
}

// RiskFlagID returns the id of the risk flag a survey record raises for a
// person and reason, name-based as ProblemID.
func RiskFlagID(sourceRecordID, personID, reason string) string {
	return uuid.NewSHA1(derivedIDSpace, []byte("risk_flag\x00"+sourceRecordID+"\x00"+personID+"\x00"+reason)).String()
}
