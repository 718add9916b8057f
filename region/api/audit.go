package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/region/audit"
)

// AuditAppender records the gateway's routing decisions (audit.Store).
type AuditAppender interface {
	Append(ctx context.Context, entries []audit.Entry) (int, error)
}

// maxAuditBodyBytes bounds POST /internal/v1/audit: audit.MaxBatch entries of about 400 bytes.
const maxAuditBodyBytes = 1 << 20

// auditRequest is the body of POST /internal/v1/audit.
type auditRequest struct {
	Entries []json.RawMessage `json:"entries"`
}

// auditEntryJSON is one entry as the gateway sends it.
type auditEntryJSON struct {
	ID            string `json:"id"`
	At            string `json:"at"`
	App           string `json:"app"`
	UserKey       string `json:"user_key"`
	Jurisdiction  string `json:"jurisdiction"`
	Region        string `json:"region"`
	Reason        string `json:"reason"`
	PolicyVersion *int64 `json:"policy_version"`
	RequestID     string `json:"request_id"`
}

// authenticateInternal guards the routes only the gateway calls that are not about one app.
func (s *Server) authenticateInternal(c *gin.Context) {
	if s.InternalToken == "" {
		return
	}
	got, _ := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if subtle.ConstantTimeCompare([]byte(got), []byte(s.InternalToken)) != 1 {
		writeError(c, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: "regions accept calls from the gateway only", Field: "Authorization"})
	}
}

// appendAudit records a batch of routing decisions in the region's chain. A retried batch is
// answered 204 again without appending twice.
func (s *Server) appendAudit(c *gin.Context) {
	entries, apiErr := DecodeAudit(http.MaxBytesReader(c.Writer, c.Request.Body, maxAuditBodyBytes))
	if apiErr != nil {
		writeError(c, apiErr)
		return
	}
	n, err := s.Audit.Append(c.Request.Context(), entries)
	if err != nil {
		s.Logger.Error("appending audit entries", "entries", len(entries), "err", err)
		unavailable(c, "the audit entries could not be recorded; retry the batch")
		return
	}
	s.Logger.Debug("audit entries appended", "received", len(entries), "appended", n)
	c.Status(http.StatusNoContent)
}

// DecodeAudit decodes and validates an audit batch; errors name the field, as entries[i].name.
func DecodeAudit(r io.Reader) ([]audit.Entry, *Error) {
	var req auditRequest
	if e := decodeStrict(r, &req, maxAuditBodyBytes); e != nil {
		return nil, e
	}
	switch {
	case len(req.Entries) == 0:
		return nil, badRequest(CodeMissingField, "entries", "entries is required and must not be empty")
	case len(req.Entries) > audit.MaxBatch:
		return nil, badRequest(CodeInvalidField, "entries", fmt.Sprintf("at most %d entries per request", audit.MaxBatch))
	}
	out := make([]audit.Entry, 0, len(req.Entries))
	for i, raw := range req.Entries {
		prefix := fmt.Sprintf("entries[%d]", i)
		var j auditEntryJSON
		if e := decodeStrict(bytes.NewReader(raw), &j, maxAuditBodyBytes); e != nil {
			if e.Field == "" {
				e.Field = prefix
			} else {
				e.Field = prefix + "." + e.Field
			}
			return nil, e
		}
		if j.PolicyVersion == nil {
			return nil, badRequest(CodeMissingField, prefix+".policy_version", "policy_version is required")
		}
		for _, f := range []struct{ name, value string }{
			{"id", j.ID}, {"at", j.At}, {"app", j.App}, {"user_key", j.UserKey}, {"jurisdiction", j.Jurisdiction}, {"reason", j.Reason}, {"request_id", j.RequestID},
		} {
			if f.value == "" {
				return nil, badRequest(CodeMissingField, prefix+"."+f.name, f.name+" is required")
			}
		}
		if j.Reason == audit.ReasonRefusedNotResident {
			return nil, badRequest(CodeInvalidField, prefix+".reason", "refused-not-resident is written by the region itself, never sent to it")
		}
		at, err := time.Parse(time.RFC3339Nano, j.At)
		if err != nil {
			return nil, badRequest(CodeInvalidField, prefix+".at", "at must be an RFC 3339 time")
		}
		e := audit.Entry{
			ID: j.ID, At: at, App: j.App, UserKey: j.UserKey, Jurisdiction: j.Jurisdiction, Region: j.Region,
			Reason: j.Reason, PolicyVersion: *j.PolicyVersion, RequestID: j.RequestID,
		}
		if fe := e.Validate(); fe != nil {
			return nil, badRequest(CodeInvalidField, prefix+"."+fe.Field, fe.Field+" "+fe.Reason)
		}
		out = append(out, e)
	}
	return out, nil
}
