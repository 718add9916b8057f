package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/credentials"
)

// CredentialStore keeps the apps' provider credentials in the jurisdiction's database
// (credentials.Store).
type CredentialStore interface {
	Put(ctx context.Context, app, jurisdiction string, c wire.Credential) (credentials.View, bool, error)
	Get(ctx context.Context, app, jurisdiction, kind string) (credentials.View, error)
	List(ctx context.Context, app, jurisdiction string) ([]credentials.View, error)
	Delete(ctx context.Context, app, jurisdiction, kind string) error
}

// credentialKind reads the kind of the path.
func credentialKind(c *gin.Context) (string, bool) {
	kind := c.Param("kind")
	if !wire.ValidCredentialKind(kind) {
		writeError(c, badRequest(CodeInvalidField, "kind", "kind must be one of "+strings.Join(wire.CredentialKinds, ", ")))
		return "", false
	}
	return kind, true
}

func (s *Server) credentialFailed(c *gin.Context, what string, err error) {
	if errors.Is(err, credentials.ErrNotFound) {
		notFound(c, "provider credential")
		return
	}
	s.failed(c, what, err)
}

// putCredential stores the app's credential of the path's kind, or rotates it: 201 when there
// was none, 200 when it replaced one. The body is read under the one reading, checked as the
// gateway checked it, then against the region's own rules.
func (s *Server) putCredential(c *gin.Context) {
	kind, ok := credentialKind(c)
	if !ok {
		return
	}
	raw, e := wire.ReadRaw(http.MaxBytesReader(c.Writer, c.Request.Body, smallBodyBytes), smallBodyBytes)
	if e != nil {
		writeError(c, fromWire(e))
		return
	}
	cred, e := wire.DecodeCredential(kind, raw)
	if e != nil {
		writeError(c, fromWire(e))
		return
	}
	if s.CheckCredential != nil {
		if e := s.CheckCredential(cred); e != nil {
			writeError(c, &Error{Status: http.StatusUnprocessableEntity, Code: CodeCredentialRefused, Field: e.Field, Message: e.Message})
			return
		}
	}
	v, created, err := s.Credentials.Put(c.Request.Context(), appOf(c), s.Jurisdiction, cred)
	if err != nil {
		s.failed(c, "storing a provider credential", err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	c.JSON(status, v)
}

func (s *Server) getCredential(c *gin.Context) {
	kind, ok := credentialKind(c)
	if !ok {
		return
	}
	v, err := s.Credentials.Get(c.Request.Context(), appOf(c), s.Jurisdiction, kind)
	if err != nil {
		s.credentialFailed(c, "reading a provider credential", err)
		return
	}
	c.JSON(http.StatusOK, v)
}

func (s *Server) listCredentials(c *gin.Context) {
	vs, err := s.Credentials.List(c.Request.Context(), appOf(c), s.Jurisdiction)
	if err != nil {
		s.failed(c, "listing provider credentials", err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"jurisdiction": s.Jurisdiction, "credentials": vs})
}

func (s *Server) deleteCredential(c *gin.Context) {
	kind, ok := credentialKind(c)
	if !ok || !s.emptyBody(c) {
		return
	}
	if err := s.Credentials.Delete(c.Request.Context(), appOf(c), s.Jurisdiction, kind); err != nil {
		s.credentialFailed(c, "deleting a provider credential", err)
		return
	}
	c.Status(http.StatusNoContent)
}
