//go:build integration

package region_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/audit"
)

func TestRegionRecordsTheGatewaysAuditBatchesBehindItsInternalToken(t *testing.T) {
	r := startRegion(t, func(c *region.Config) { c.InternalToken = "gateway-secret" })
	body := `{"entries":[{"id":"019ab3f0-6c1e-7d2a-9b4f-3e2d1c0b9a87","at":"2026-11-25T04:00:00Z","app":"` + r.app + `",` +
		`"user_key":"` + strings.Repeat("0f", 32) + `","jurisdiction":"EU","region":"` + r.cfg.Name + `","reason":"home","policy_version":1,"request_id":"req-1"}]}`
	post := func(token string) int {
		req, _ := http.NewRequest("POST", r.base+"/internal/v1/audit", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := testenv.RegionClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post("wrong"); got != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", got)
	}
	if got := post("gateway-secret"); got != http.StatusNoContent {
		t.Fatalf("gateway token: %d", got)
	}
	entries, err := audit.NewStore(r.pg).ForUser(testenv.Context(t, time.Minute), r.app, strings.Repeat("0f", 32))
	if err != nil || len(entries) != 1 || entries[0].Seq != 1 || entries[0].Region != r.cfg.Name {
		t.Fatalf("recorded %+v, %v", entries, err)
	}
}
