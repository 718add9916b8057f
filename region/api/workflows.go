package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/templates"
	"github.com/herald-notify/herald/region/workflows"
)

// VersionHeader carries the gateway's version of a workflow it pushes, so every jurisdiction
// numbers the versions alike. Without it (a call to the region itself) the region takes the
// next version.
const VersionHeader = "X-Herald-Version"

// versionOf reads VersionHeader: 0 when absent.
func versionOf(c *gin.Context) (int64, bool) {
	h := c.GetHeader(VersionHeader)
	if h == "" {
		return 0, true
	}
	v, err := strconv.ParseInt(h, 10, 64)
	if err != nil || v < 1 {
		writeError(c, badRequest(CodeInvalidField, VersionHeader, VersionHeader+" must be a positive integer"))
		return 0, false
	}
	return v, true
}

func (s *Server) putWorkflow(c *gin.Context) {
	id := c.Param("id")
	if !wire.ValidID(id) {
		writeError(c, badRequest(CodeInvalidField, "id", "workflow ids must match "+wire.IDPattern+" and not be . or .."))
		return
	}
	version, ok := versionOf(c)
	if !ok {
		return
	}
	raw, e := wire.ReadRaw(http.MaxBytesReader(c.Writer, c.Request.Body, wire.MaxWorkflowBytes), wire.MaxWorkflowBytes)
	if e != nil {
		writeError(c, fromWire(e))
		return
	}
	// JSON only: the gateway read a YAML file and forwards what it read.
	w, e := wire.DecodeWorkflow(raw)
	if e != nil {
		writeError(c, fromWire(e))
		return
	}
	if apiErr := s.checkWorkflowTemplates(c, w); apiErr != nil {
		writeError(c, apiErr)
		return
	}
	saved, created, err := s.Workflows.Put(c.Request.Context(), appOf(c), id, version, *w)
	if err != nil {
		s.failed(c, "storing the workflow", err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	c.JSON(code, saved)
}

// checkWorkflowTemplates refuses a workflow whose channel step names a template the app does not
// have, or one without content for the step's channel: a run never finds out at send time.
func (s *Server) checkWorkflowTemplates(c *gin.Context, w *wire.Workflow) *Error {
	for i, st := range w.Steps {
		if !st.IsChannel() {
			continue
		}
		field := fmt.Sprintf("steps[%d].template_id", i)
		t, err := s.Templates.Get(c.Request.Context(), appOf(c), st.TemplateID)
		if errors.Is(err, templates.ErrNotFound) {
			return badRequest(CodeUnknownTemplate, field, fmt.Sprintf("the app has no template %q", st.TemplateID))
		}
		if err != nil {
			s.Logger.Error("reading a workflow's template", "err", err)
			return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "templates cannot be read right now; retry"}
		}
		if _, ok := t.Content[st.Type]; !ok {
			return badRequest(CodeInvalidField, field, fmt.Sprintf("template %q has no %s content", st.TemplateID, st.Type))
		}
	}
	return nil
}

func (s *Server) getWorkflow(c *gin.Context) {
	var (
		w   workflows.Workflow
		err error
	)
	if v := c.Query("version"); v != "" {
		n, perr := strconv.ParseInt(v, 10, 64)
		if perr != nil || n < 1 {
			writeError(c, badRequest(CodeInvalidField, "version", "version must be a positive integer"))
			return
		}
		w, err = s.Workflows.Version(c.Request.Context(), appOf(c), c.Param("id"), n)
	} else {
		w, err = s.Workflows.Latest(c.Request.Context(), appOf(c), c.Param("id"))
	}
	if errors.Is(err, workflows.ErrNotFound) {
		notFound(c, "workflow")
		return
	}
	if err != nil {
		s.failed(c, "reading the workflow", err)
		return
	}
	c.JSON(http.StatusOK, w)
}

func (s *Server) deleteWorkflow(c *gin.Context) {
	version, ok := versionOf(c)
	if !ok {
		return
	}
	err := s.Workflows.Delete(c.Request.Context(), appOf(c), c.Param("id"), version)
	if errors.Is(err, workflows.ErrNotFound) {
		notFound(c, "workflow")
		return
	}
	if err != nil {
		s.failed(c, "deleting the workflow", err)
		return
	}
	c.Status(http.StatusNoContent)
}

// triggerWorkflow starts a run of the workflow's latest version for each recipient (each
// subscriber of the topic, in this jurisdiction). Every recipient must be resident here,
// whatever the gateway decided. Runs are derived from the trigger's key and the user, so a
// trigger sent again starts none twice.
func (s *Server) triggerWorkflow(c *gin.Context) {
	ctx := c.Request.Context()
	app := appOf(c)
	var t wire.WorkflowTrigger
	if e := decodeStrict(http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes), &t, MaxBodyBytes); e != nil {
		writeError(c, e)
		return
	}
	if e := t.Validate(); e != nil {
		writeError(c, fromWire(e))
		return
	}
	if t.Recipients != nil && !s.requireResidents(c, "recipients", t.Recipients) {
		return
	}
	w, err := s.Workflows.Latest(ctx, app, c.Param("id"))
	if errors.Is(err, workflows.ErrNotFound) {
		notFound(c, "workflow")
		return
	}
	if err != nil {
		s.failed(c, "reading the workflow", err)
		return
	}
	key := t.IdempotencyKey
	if key == "" {
		key = uuid.NewString() // no key: a trigger of its own
	}
	var got workflows.Triggered
	if t.Topic != nil {
		got, err = s.Workflows.TriggerTopic(ctx, app, w, key, *t.Topic, t.Payload, s.Now().UTC())
	} else {
		got, err = s.Workflows.Trigger(ctx, app, w, key, t.Recipients, t.Payload, s.Now().UTC())
	}
	if err != nil {
		s.failed(c, "starting the workflow's runs", err)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"trigger_id": got.TriggerID, "workflow_id": w.ID, "version": w.Version, "runs": got.Runs, "duplicates": got.Existing})
}

// getWorkflowRun answers one of the app's runs, step by step.
func (s *Server) getWorkflowRun(c *gin.Context) {
	r, err := s.Workflows.GetRun(c.Request.Context(), appOf(c), c.Param("run_id"))
	if errors.Is(err, workflows.ErrRunNotFound) {
		notFound(c, "workflow run")
		return
	}
	if err != nil {
		s.failed(c, "reading the run", err)
		return
	}
	c.JSON(http.StatusOK, r)
}
