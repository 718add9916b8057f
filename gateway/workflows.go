package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/herald-notify/herald/platform/wire"
)

// putWorkflow reads a workflow, as JSON or as the YAML file an app keeps in its repository
// (Content-Type application/yaml), under the one reading, and pushes what it read, as JSON,
// to the regions: they keep every version.
func (s *Server) putWorkflow(c *gin.Context) {
	if !wire.ValidID(c.Param("id")) {
		abort(c, http.StatusBadRequest, wire.CodeInvalidField, "workflow ids must match "+wire.IDPattern+" and not be . or ..", "id")
		return
	}
	raw, e := wire.ReadRaw(http.MaxBytesReader(c.Writer, c.Request.Body, wire.MaxWorkflowBytes), wire.MaxWorkflowBytes)
	if !valid(c, e) {
		return
	}
	var w *wire.Workflow
	switch c.ContentType() {
	case "application/yaml", "application/x-yaml", "text/yaml":
		w, e = wire.DecodeWorkflowFile(raw)
	default:
		w, e = wire.DecodeWorkflow(raw)
	}
	if !valid(c, e) {
		return
	}
	s.Workflows.change(c, wire.Encode(w))
}

func (s *Server) deleteWorkflow(c *gin.Context) { s.Workflows.change(c, nil) }

// getWorkflow reads the workflow's latest version from a region that holds it. ?version=N is
// asked of every healthy region, and the first that holds it answers: a region that was away
// when N was saved got only the versions after it.
func (s *Server) getWorkflow(c *gin.Context) {
	v, ok := c.GetQuery("version")
	if !ok {
		s.Workflows.get(c, s)
		return
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		abort(c, http.StatusBadRequest, "invalid_field", "version must be a positive integer", "version")
		return
	}
	s.firstFound(c, c.Request.URL.Path, "version="+strconv.FormatInt(n, 10))
}

// triggerWorkflow starts a workflow's runs in each recipient's home region (each jurisdiction's
// serving region for a topic). The trigger is read once here and each region gets its share of
// what was read, under one key: the caller's idempotency key, or one made here, so every
// region derives the same trigger id and a retry with the key starts nothing twice.
func (s *Server) triggerWorkflow(c *gin.Context) {
	if s.Policy.Current() == nil {
		unavailable(c, "no_policy", "the gateway has no residency policy loaded yet")
		return
	}
	if !wire.ValidID(c.Param("id")) {
		abort(c, http.StatusNotFound, "not_found", "workflow not found", "")
		return
	}
	raw, ok := readBody(c, wire.MaxSendBytes)
	if !ok {
		return
	}
	t, e := wire.DecodeWorkflowTrigger(raw)
	if !valid(c, e) {
		return
	}
	var targets map[string][]string
	if t.Topic != nil {
		targets, ok = s.topicRegions(c, *t.Topic)
	} else {
		targets, ok = s.splitRecipients(c, t.Recipients)
	}
	if !ok {
		return
	}
	if t.IdempotencyKey == "" {
		t.IdempotencyKey = "trg_" + uuid.NewString()
	}
	regions := slices.Sorted(maps.Keys(targets))
	bodyFor := func(region string) []byte {
		if t.Topic != nil {
			return wire.Encode(t)
		}
		return wire.Encode(t.ForRecipients(targets[region]))
	}
	path := "/v1/workflows/" + c.Param("id") + "/trigger"
	type answer struct {
		status int
		raw    []byte
		err    error
	}
	do := func(region string) answer {
		resp, err := s.call(c.Request.Context(), c, region, http.MethodPost, path, "", bodyFor(region))
		if err != nil {
			return answer{err: err}
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return answer{status: resp.StatusCode, raw: raw}
	}
	// The first region alone: what the regions refuse (an unknown workflow, a bad body) is
	// refused once, before any other region started anything.
	answers := make([]answer, len(regions))
	answers[0] = do(regions[0])
	if a := answers[0]; a.err == nil && a.status != http.StatusAccepted {
		c.Data(a.status, "application/json", a.raw)
		return
	}
	var wg sync.WaitGroup
	for i := 1; i < len(regions); i++ {
		wg.Go(func() { answers[i] = do(regions[i]) })
	}
	wg.Wait()
	type part struct {
		Region     string `json:"region"`
		Runs       int    `json:"runs"`
		Duplicates int    `json:"duplicates"`
	}
	var (
		parts     []part
		failed    []string
		triggerID string
	)
	for i, a := range answers {
		var out struct {
			TriggerID  string `json:"trigger_id"`
			Runs       int    `json:"runs"`
			Duplicates int    `json:"duplicates"`
		}
		if a.err != nil || a.status != http.StatusAccepted || json.Unmarshal(a.raw, &out) != nil {
			s.Log.Warn("trigger part failed", "region", regions[i], "status", a.status, "err", a.err, "request_id", reqID(c))
			failed = append(failed, regions[i])
			continue
		}
		triggerID = out.TriggerID
		parts = append(parts, part{Region: regions[i], Runs: out.Runs, Duplicates: out.Duplicates})
	}
	switch {
	case len(parts) == 0:
		unavailable(c, "region_unavailable", fmt.Sprintf("regions %v did not take the trigger; nothing was started, retry", failed))
	case len(failed) > 0:
		c.Header("Retry-After", "2")
		c.JSON(http.StatusServiceUnavailable, gin.H{
			"error":      gin.H{"code": "partially_accepted", "message": fmt.Sprintf("regions %v did not take their part; the parts listed started. Retry with the same idempotency_key: started runs are not started again", failed)},
			"trigger_id": triggerID, "idempotency_key": t.IdempotencyKey, "parts": parts, "failed_regions": failed,
		})
	default:
		c.JSON(http.StatusAccepted, gin.H{"trigger_id": triggerID, "idempotency_key": t.IdempotencyKey, "parts": parts})
	}
}

// getWorkflowRun finds a run in whichever region holds it (run ids carry no user data).
func (s *Server) getWorkflowRun(c *gin.Context) {
	s.firstFound(c, "/v1/workflow-runs/"+url.PathEscape(c.Param("run_id")), "")
}
