package server

import (
	"context"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// IndicatorsReport computes the indicators of an area as AdminService's
// Indicators does, for the server's web page (package web), which reads
// them for a signed-in staff member after checking the area is theirs. Its
// errors wrap ErrBadRequest for a request the RPC would refuse.
func (s *Server) IndicatorsReport(ctx context.Context, req *fieldsyncv1.IndicatorsRequest) (*fieldsyncv1.IndicatorsResponse, error) {
	return admin{s: s}.Indicators(ctx, req)
}
