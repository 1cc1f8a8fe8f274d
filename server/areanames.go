package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/syncengine"
)

// metaAreaNames keeps the names of areas (JSON: 12-digit code → name).
const metaAreaNames = "area_names"

// Bounds of SetAreaNames.
const (
	maxAreaNames    = 100_000
	maxAreaNameRune = 50
)

// SetAreaNames stores the names of areas the operator gives.
func (a admin) SetAreaNames(ctx context.Context, req *fieldsyncv1.SetAreaNamesRequest) (*fieldsyncv1.SetAreaNamesResponse, error) {
	s := a.s
	if len(req.GetNames()) > maxAreaNames {
		return nil, fmt.Errorf("set area names: %w: %d names, at most %d at once", ErrBadRequest, len(req.GetNames()), maxAreaNames)
	}
	names := map[string]string{}
	if !req.GetReplace() {
		var err error
		if names, err = s.areaNames(ctx); err != nil {
			return nil, err
		}
	}
	for i, n := range req.GetNames() {
		prefix, _, err := survey.ParseArea(n.GetAreaCode())
		if err != nil {
			return nil, fmt.Errorf("set area names: %w: name %d: %v", ErrBadRequest, i+1, err)
		}
		code := prefix + strings.Repeat("0", 12-len(prefix))
		if !syncengine.Overlap(prefix, s.cfg.Area) {
			return nil, fmt.Errorf("set area names: %w: name %d: area %s is outside the server's area %s", ErrBadRequest, i+1, code, s.cfg.Area)
		}
		name := strings.TrimSpace(n.GetName())
		if !utf8.ValidString(name) || name == "" || utf8.RuneCountInString(name) > maxAreaNameRune ||
			strings.IndexFunc(name, unicode.IsControl) >= 0 {
			return nil, fmt.Errorf("set area names: %w: name %d of %s: give 1 to %d characters of valid text", ErrBadRequest, i+1, code, maxAreaNameRune)
		}
		names[code] = name
	}
	b, err := json.Marshal(names)
	if err != nil {
		return nil, err
	}
	err = s.store.Update(ctx, func(tx syncengine.Tx) error {
		if err := tx.SetMeta(ctx, metaAreaNames, b); err != nil {
			return err
		}
		detail := fmt.Sprintf("%d names given, %d held", len(req.GetNames()), len(names))
		if req.GetReplace() {
			detail += ", the others forgotten"
		}
		return s.audit(ctx, tx, fieldsyncv1.AuditAction_AUDIT_ACTION_AREAS_SET, "area names", detail)
	})
	if err != nil {
		return nil, err
	}
	return &fieldsyncv1.SetAreaNamesResponse{Names: int32(len(names))}, nil
}

// areaNames returns the names of areas SetAreaNames stored.
func (s *Server) areaNames(ctx context.Context) (map[string]string, error) {
	b, err := s.store.Meta(ctx, metaAreaNames)
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &names); err != nil {
			return nil, fmt.Errorf("area names in the store: %w", err)
		}
	}
	return names, nil
}
