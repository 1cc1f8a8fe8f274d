// Package survey holds the field-survey rules of the county and township health
// bureaus as pure functions over the fieldsync.v1 protobuf types: nothing here
// reads a clock, a file or the network.
//
//   - Validate checks a record of any kind and returns every problem at once as
//     FieldErrors (field path, wire reason code, message for a person).
//   - ParseIDNumber, CaptureIDNumber, MaskIDNumber and HashIDNumber handle
//     national ID numbers at capture: checked against the GB 11643 check
//     character, then kept only masked and as a keyed hash.
//   - AssessFollowUp, Overdue and StandardManagement apply the chronic-disease
//     follow-up schedule of the national basic public health service standard.
//   - Rules.ClinicAuditProblems and Rules.HouseholdVisitProblems turn failed
//     survey items into rectification-ledger problems; Rules.RiskFlags raises
//     return-to-poverty flags from the self-pay share of medical cost.
//
// Thresholds that bureaus configure (drug kinds, floor area, self-pay share)
// live in Rules; thresholds fixed by the national standard are constants.
package survey
