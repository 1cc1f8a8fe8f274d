// Package moves says what a move of a record between areas is, and how a
// move that raced an edit is settled. It is the one place for it: the
// server judges pushed changes and settles moves with it, the bbolt store
// files a change under the areas it took its record out of (From), and the
// phone's store forgets what a move took away (Away, Fragment).
//
// # What a move is
//
// A record is where the engine says it is (syncengine.Record.Area: the area
// of the winning upsert of its existence field, which every change writes)
// and, in its body, area_code (field 2 of every record kind,
// wire.AreaField), which only the record's creation and its moves set. A
// move (the county's MoveRecord, or a township device saving a household
// with another village's code) sets both: its change's area and the
// area_code it writes name the new village. A change moves its record out
// of the area the record was in before it, and out of the areas of the
// existence upserts it overwrites (From): servers file it under those areas
// too, so the devices there learn the record left.
//
// # Edits that raced a move
//
// A doctor edits a household offline while the county moves it. The edit
// reaches a server when the record is outside the doctor's areas. It is
// accepted when it is concurrent with every write that put the record outside
// those areas (ConcurrentEdit): the doctor had the record and never saw it
// leave, and refusing it would lose their work. A device that writes to a
// record it never had is refused, as before.
//
// The edit writes the old area into the existence field. Stamped after the
// move, it wins, and the record would slide back into the old village with
// its area_code naming the new one; stamped before, the record stays, but the
// old area's upsert survives and a replica holding it and not the move shows
// the record in the old village. Either way the record is unsettled
// (Unsettled): its existence field keeps upserts of more than one area, one
// of them the area_code's.
//
// # Settling
//
// The server that serves the area_code's area settles the record
// (SettleTarget): a change of its own that sets no field and writes
// area_code's area over every upsert of the existence field (its context is
// SettlingContext; never over a delete, whose conflict stays for a person).
// The edit's fields stay; the record stays in its new village. The settling
// change is filed under the old village too (From), so its devices and a
// township relaying them learn where the record is. A change whose area_code
// names where a move took its record is consistent (AreaCodeAgrees).
//
// # On the phone
//
// A phone forgets a record no longer in its areas. It also forgets a record
// shown in its areas only because an edit raced a move out of them (Away),
// and a record of which it holds only a later edit's fields, without the
// record's creation (Fragment: an edit of its village pulled after a move
// took the record away).
package moves
