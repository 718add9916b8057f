package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestReadyIs503WhenACheckFailsAndWhileDraining(t *testing.T) {
	h := New(map[string]string{"component": "test"})
	var fail error
	h.Add("db", func(context.Context) error { return fail })
	ready := func() (int, Report) {
		w := httptest.NewRecorder()
		h.Ready(w, httptest.NewRequest("GET", "/readyz", nil))
		var rep Report
		_ = json.Unmarshal(w.Body.Bytes(), &rep)
		return w.Code, rep
	}
	if code, rep := ready(); code != http.StatusOK || rep.Checks["db"] != "ok" {
		t.Fatalf("healthy: %d %+v", code, rep)
	}
	fail = errors.New("connection refused")
	if code, rep := ready(); code != http.StatusServiceUnavailable || rep.Checks["db"] != "error: connection refused" {
		t.Fatalf("failing check: %d %+v", code, rep)
	}
	fail = nil
	h.Drain()
	if code, rep := ready(); code != http.StatusServiceUnavailable || rep.Status != "draining" {
		t.Fatalf("draining: %d %+v", code, rep)
	}
	w := httptest.NewRecorder()
	h.Live(w, httptest.NewRequest("GET", "/healthz", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("liveness while draining: %d", w.Code)
	}
}
