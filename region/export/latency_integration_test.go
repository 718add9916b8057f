//go:build integration

package export_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/herald-notify/herald/analytics"
	"github.com/herald-notify/herald/region/notify"
)

// deliverTo stores one record: a delivery on channel of one notification to each of users,
// 300 ms after it was due.
func (e *exporter) deliverTo(at time.Time, tier, channel string, users ...string) {
	e.t.Helper()
	b := notify.EventBatch{App: "shop", Tier: tier, Category: "order", NotificationID: "n-" + fmt.Sprint(at.UnixNano()) + "-" + users[0],
		DueAt: at.Add(-300 * time.Millisecond), At: at}
	for _, u := range users {
		b.Outcomes = append(b.Outcomes, notify.Outcome{User: u, Channel: channel, Stage: notify.StageDelivered})
	}
	raw, err := json.Marshal(b)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.ex.Store(context.Background(), raw); err != nil {
		e.t.Fatal(err)
	}
}

// The case, through the real exporter and central: a window with 1,200 push
// deliveries to 3 users and 12 email deliveries to 12 others. The funnel withholds the push
// deliveries (3 recipients < k); so must the latency panel, which judged histograms on
// observations and showed all 1,200. Only the email histogram (12 recipients) is published.
func TestLatencyOfManyDeliveriesToFewerThanKRecipientsIsWithheldLikeTheFunnel(t *testing.T) {
	c := startCentral(t, "order")
	e := newExporter(t, c)
	w := time.Now().UTC().Truncate(time.Minute).Add(-5 * time.Minute)
	for i := range 400 {
		e.deliverTo(w.Add(time.Duration(i)*10*time.Millisecond), notify.Transactional, notify.Push, "heavy-1", "heavy-2", "heavy-3")
	}
	light := make([]string, 12)
	for i := range light {
		light[i] = fmt.Sprintf("light-%02d", i)
	}
	e.deliverTo(w.Add(10*time.Second), notify.Transactional, notify.Email, light...)
	if n := e.closeAll(); n != 1 {
		t.Fatalf("%d windows shipped, want 1", n)
	}
	if r := e.refusal(w); r != "" {
		t.Fatalf("window refused: %s", r)
	}

	// What central stored: the email histogram with its 12 recipients, nothing of push.
	rows, err := c.db.Query(context.Background(), `SELECT channel, distinct_recipients, (SELECT sum(n) FROM unnest(counts) n)
		FROM latency WHERE window_start = $1 ORDER BY channel`, w)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var ch string
		var recipients, observations int64
		if err := rows.Scan(&ch, &recipients, &observations); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s: %d observations of %d recipients", ch, observations, recipients))
	}
	rows.Close()
	if want := "[email: 12 observations of 12 recipients]"; fmt.Sprint(got) != want {
		t.Errorf("central's histograms: %v, want %s", got, want)
	}
	var withheld, latencyWithheld int64
	if err := c.db.QueryRow(context.Background(), `SELECT withheld, latency_withheld FROM batches WHERE window_start = $1`, w).Scan(&withheld, &latencyWithheld); err != nil {
		t.Fatal(err)
	}
	if withheld != 1200 || latencyWithheld != 1200 {
		t.Errorf("withheld %d, latency_withheld %d; want 1200 and 1200", withheld, latencyWithheld)
	}

	// And what the operator reads: the latency panel counts what the funnel counts.
	q := fmt.Sprintf("?tier=transactional&from=%s&to=%s", w.Format(time.RFC3339), w.Add(time.Minute).Format(time.RFC3339))
	var lat analytics.Latency
	var funnel analytics.Funnel
	c.operatorGet("/v1/latency"+q, &lat)
	c.operatorGet("/v1/funnel"+q, &funnel)
	var delivered int64
	for _, s := range funnel.Stages {
		if s.Stage == "delivered" {
			delivered = s.Count
		}
	}
	if len(lat.Tiers) != 1 || lat.Tiers[0].Count != 12 || delivered != 12 {
		t.Errorf("latency panel %+v, funnel delivered %d; want 12 and 12", lat.Tiers, delivered)
	}
}

// operatorGet reads a query endpoint of central with the operator token into dst.
func (c *central) operatorGet(path string, dst any) {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.opsURL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+testOperatorToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(dst); err != nil {
		c.t.Fatal(err)
	}
}
