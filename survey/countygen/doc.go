// Package countygen generates a realistic county for tests, benchmarks and
// demos: a seeded, deterministic registry of townships, villages, clinics,
// workers, households and people, and a year of household visits, clinic
// audits and chronic-disease follow-ups with the problems and risk flags they
// raise, all as fieldsyncv1.Record values that pass survey.Validate.
//
// # Use
//
//	g, err := countygen.New(countygen.Config{People: 20000, Seed: 7})
//	...
//	err = g.Each(func(rec *fieldsyncv1.Record) error { ...; return nil })
//
// New builds the registry in memory (for 200,000 people about a second and
// 80 MB); Each and EachInVillage stream the records (460,000 of them for that
// county, in about 1.5 s), making the surveys afresh village by village, so
// memory does not grow with the survey volume.
// Records collects everything for small counties. County exposes the
// generator-side registry, including what records never carry: the clear ID
// numbers (Person.IDNumber) and the relations within households. The same
// Config, Seed included, gives the same records byte for byte; nothing depends
// on map iteration order or the clock. Each village draws from random
// streams of its own (math/rand/v2 PCG seeded from Config.Seed and the village's
// index), so its records do not depend on the order villages are streamed in.
// What a version adds is drawn from a new stream, so the values earlier
// versions generated stay the same (the health checks and three batches below
// left every earlier value of a Config as it was).
//
// # The county
//
// Area codes are 12-digit statistical division codes under Config.CountyCode
// (default 532523, a Yunnan county of the 屏边 kind): towns (镇) 100 up, then
// townships (乡) 200 up, about two in five being towns; villages 201 up.
// Place names are composed (新寨村, 白沙坪村, 者黑乡) and unique in the county.
// Each village has one clinic (村卫生室) and one (41 %) or two (55 %) licensed
// village doctors; in 4 % of villages (never the first of a township) the post
// is vacant and covered by township staff or the previous village's doctor.
// Each township has 3–5 health-centre staff; the county 3 + townships/3
// inspectors (at most 12). Workers of township and county have their area
// padded with zeros.
//
// # Households and people
//
// Household statuses: 脱贫户 40 %, 边缘易致贫户 5 %, 监测户 3 %, ordinary 52 %.
// Households are nuclear families (50 %), three generations (22 %), elderly
// heads (16 %, sometimes with a grandchild left behind) or nuclear families
// with a parent of the head (12 %); about 3.7 people each. Ages within a
// household are plausible (children 19–30 years younger than the younger
// parent, spouses within ten years). Surnames are weighted for a Han, Miao and
// Yi county (杨 李 王 张 陈 刘 罗 陶 熊 ...); given names have one or two characters
// from pools by generation and sex, and brothers often share a generation
// character (字辈).
//
// ID numbers have the county prefix, the birth date, a sequence number odd for
// men and even for women, and the GB 11643 check character; they are unique
// in the county. Records carry only survey.CaptureIDNumber's masked form and
// the hash keyed with Config.IDHashKey.
//
// Residency: deceased 2.5 % of people 70 and over (never a head); in hospital
// 0.3 % (20 % of major-illness patients); in care 2 % of people 65 and over;
// unreachable 0.5 % of 18–60; at school 10 % of 7–12, 55 % of 13–18, 35 % of
// 19–22; working away 30 % of the rest aged 18–55; everyone else at home.
// Disability: 1.5 % of children, 3 % of adults, 7 % of people 65 and over.
//
// Chronic disease, by age band (18–34, 35–44, 45–54, 55–64, 65–74, 75+):
// hypertension 1, 7, 15, 25, 32, 36 % (about 18 % of people 35 and over);
// type 2 diabetes 0.3, 2, 5, 8, 9, 9 % (about 5.4 %); another listed chronic
// disease (冠心病, 慢阻肺, ...) 0.8 % to 6 %; severe mental disorder 0.6 % and
// pulmonary tuberculosis 0.12 % of people 15 and over (about 0.45 % and
// 0.09 % of everyone); major illness under special treatment 0.1 % of children
// (leukaemia, congenital heart disease) and 0.5 % of people 40 and over
// (cancers, end-stage renal disease).
//
// Service 111, for people of registered households at home (away): contract
// 99 % (92 %), health record 98 % (92 %), 一人一策 97 % (88 %) of chronic
// patients; ordinary households lower. Overall about 97.8 % of registered
// people hold a contract and 94 % of chronic patients a plan. A missing item
// has a village committee certificate for 80 % of people away, 15 % of others.
//
// Free health checks (免费健康体检, Person.last_health_check_on): living people
// aged 7–64 were checked in the calendar year of the day before AsOf's day,
// from 1 January to that day, 90 % in registered households (40 % of those
// working away or unreachable), 50 % in ordinary households; 5 % of the rest
// were last checked in the year before; nobody else has a check on record.
// Severe illness (重病兜底保障, Condition.severe_illness): 30 % of major
// illnesses, and one chronic disease that is not a major illness of 0.3 % of
// people 40 and over who have one, so that severe overlaps major only partly
// (in the default county 24 people: 14 with a major, 10 with a chronic
// disease).
//
// # A year of surveys
//
// The survey year is the 365 calendar days before AsOf's day, and every time
// is before AsOf.
//
// Household visits: every household once in the campaign (the CampaignDays
// calendar days before AsOf's day) by its village doctor, 10 % again by township staff
// and 3 % by a county inspector. One finding per member: members at home are
// present, the others absent for the reason of their residency (AbsenceReason;
// the deceased as other, noted 已故). Contract served on time 95 %, health
// record up to date 93 %, 一人一策 and handbook as in the registry for chronic
// patients; members present and 15 or older are asked policy awareness (knows
// the contracted doctor 92 %, the hospital doctor 65 %, can explain 看病120 78 %
// and 服务111 72 %), satisfaction (4 % dissatisfied, with a reason) and, for
// 60 % of chronic patients and 12 % of others, medical spending in fen with a
// self-pay share of 2–10 %, or 10–35 % one time in seven. For the three
// batches (三个一批), every finding about a living major-illness patient,
// present or absent, records the registry's answers (Person.MajorIllnessTreated,
// MajorIllnessReviewed, UntreatedReason): treated (集中救治) 93 %, otherwise
// with the reason (患者拒绝治疗, 等待专家组会诊, 未到定点医院); reviewed by the
// expert group (大病复核) 90 %. Every finding about a living severe patient
// records whether the safety net was applied (兜底, Person.SafetyNetApplied)
// 90 %. Spending is asked of severe patients as of anyone else.
//
// Clinic audits: twice by township staff (first half-year and campaign), and
// for 30 % of clinics once more by a county inspector. Floor area under 60 m² in
// 15 % of clinics, fewer than 80 essential drug kinds in 12 %; rooms separate
// 93 % each, equipment 97 % each, water 95 %, electricity 99 %, heating 85 %,
// funds 92 %; expired drugs found 6 %, supplements 3 %, off-list drugs 4 %;
// half of the failed items are put right by the next audit. The doctor's
// 一口清 numbers are exact 90 % of the time, off by one or two 8 %, not given 2 %
// (Village.Numbers gives the registry's).
//
// Follow-ups: hypertension and diabetes patients who are alive and reachable,
// on the schedule survey.AssessFollowUp sets (3 months after a satisfactory
// follow-up; 2 weeks after an unsatisfactory, urgent, adverse-reaction or
// complicated one), which also gives the classification and the urgent
// referral. 95 % of patients at home keep the schedule, 4 % are
// 10–75 days late, 1 % drop out; patients away are mostly late or lost and
// followed up by phone. About 93 % of patients at home diagnosed before the
// year, and about 76 % of all, have 4 or more face-to-face follow-ups in the
// year. 75 % of patients are well controlled (10 % of follow-ups
// unsatisfactory, 0.3 % emergencies), 25 % poorly (50 %, 4 %): about 27 % of
// follow-ups are unsatisfactory (SBP ≥ 140 or DBP ≥ 90; glucose ≥ 7.0) and
// about 1.6 % emergencies (SBP ≥ 180 or DBP ≥ 110; glucose ≥ 16.7 or ≤ 3.9). 1.5 % of satisfactory follow-ups record an adverse
// reaction, 1 % a complication. Severe-mental-disorder patients are followed
// up quarterly with a risk level (0 in 70 %; 2 or more unsatisfactory, 3 or
// more referred); tuberculosis patients monthly from diagnosis through the
// intensive (60 days) and continuation (to 180 days) phases to completion.
//
// The ledger is what survey's rules raise, with survey.DefaultRules thresholds
// and Config.SelfPayThresholdBP: Rules.ClinicAuditProblems for every audit
// (with Village.Numbers as the registry's 一口清 numbers),
// Rules.HouseholdVisitProblems for the first campaign visit of every household
// (whose service-111 items it judges for registered households only), and
// Rules.RiskFlags for the first campaign visit of every household. The
// generator adds ids, measures, the responsible doctor and a lifecycle:
// problems past their deadline are mostly verified and closed (70 %; 15 %
// rectified, 15 % open), newer ones mostly open; flags older than 30 days
// mostly forwarded (60 %) or closed (25 %). A 20,000-person county has about
// 1,200 problems and 360 risk flags.
package countygen
