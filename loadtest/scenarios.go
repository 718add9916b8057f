package loadtest

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// SLOs the scenarios are judged by (the design reference's floor).
const (
	transactionalP99 = 5 * time.Second
	socialP99        = 30 * time.Second
	inboxReadP99     = 250 * time.Millisecond
	prefsWriteP99    = time.Second
)

// waitPush polls the APNs simulator until a push for tok received after t0 is recorded, and
// returns the delay from t0.
func waitPush(ctx context.Context, c *Client, tok string, t0 time.Time, limit time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		recs, err := c.simRecords(ctx, "apns", tok, 5)
		if err != nil {
			return 0, err
		}
		for _, r := range recs {
			if r.Status == http.StatusOK && !r.ReceivedAt.Before(t0) {
				return r.ReceivedAt.Sub(t0), nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("no push for %s…%s within %s", tok[:8], tok[56:], limit)
}

func otpDuringBlast(ctx context.Context, c *Client, o Options) ([]Row, error) {
	otps := max(1, int(o.Rate*o.Duration.Seconds()))
	blastUsers, err := setupUsers(ctx, c, o, "blast", o.Users)
	if err != nil {
		return nil, err
	}
	otpUsers, err := setupUsers(ctx, c, o, "otp", otps)
	if err != nil {
		return nil, err
	}
	var blast, otp samples
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the marketing blast: every user, again and again, for the whole run
		defer wg.Done()
		ticker(ctx, 2, o.Duration, func(int) {
			for start := 0; start < len(blastUsers); start += 1000 {
				t0 := time.Now()
				err := c.must(ctx, "POST", "/v1/notifications", map[string]any{"type": "marketing", "category": "promo", "title": "Sale", "body": "50% off",
					"recipients": blastUsers[start:min(start+1000, len(blastUsers))], "channels": []string{"push"}}, &struct{}{})
				if ctx.Err() != nil {
					return // the run ended while this send was in flight
				}
				if err != nil {
					blast.fail(err)
				} else {
					blast.ok(time.Since(t0))
				}
			}
		})
	}()
	var next atomic.Int64
	ticker(ctx, o.Rate, o.Duration, func(int) {
		i := int(next.Add(1) - 1)
		if i >= len(otpUsers) {
			return
		}
		u := otpUsers[i]
		t0 := time.Now()
		if err := c.must(ctx, "POST", "/v1/notifications", map[string]any{"type": "transactional", "category": "otp", "title": "Your code",
			"body": fmt.Sprintf("%06d", i), "recipients": []string{u}, "channels": []string{"push"}}, &struct{}{}); err != nil {
			otp.fail(err)
			return
		}
		d, err := waitPush(ctx, c, token(o.RunID, u), t0, 30*time.Second)
		if err != nil {
			otp.fail(err)
			return
		}
		otp.ok(d)
	})
	cancel()
	wg.Wait()
	return []Row{
		otp.row("transactional push: accept → APNs simulator", transactionalP99, 0.001),
		blast.row(fmt.Sprintf("marketing sends of up to 1,000 (%d users, 2/s): HTTP answer", len(blastUsers)), 0, 0.01),
	}, nil
}

func socialTopic(ctx context.Context, c *Client, o Options) ([]Row, error) {
	users, err := setupUsers(ctx, c, o, "social", o.Users)
	if err != nil {
		return nil, err
	}
	topic := "lt-" + o.RunID
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var subErr atomic.Value
	for _, u := range users {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := c.must(ctx, "PUT", "/v1/topics/"+topic+"/subscribers/"+u, nil, &struct{}{}); err != nil {
				subErr.Store(err)
			}
		}()
	}
	wg.Wait()
	if err, _ := subErr.Load().(error); err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, u := range users {
		want[token(o.RunID, u)] = true
	}
	t0 := time.Now()
	var send samples
	if err := c.must(ctx, "POST", "/v1/notifications", map[string]any{"type": "social", "category": "news", "title": "New post", "body": "from someone you follow",
		"topic": topic, "channels": []string{"push"}}, &struct{}{}); err != nil {
		return nil, err
	}
	send.ok(time.Since(t0))
	var got samples
	seen := map[string]bool{}
	deadline := time.Now().Add(2 * socialP99)
	for len(seen) < len(want) && time.Now().Before(deadline) {
		recs, err := c.simRecords(ctx, "apns", "", 2*len(users)+1000)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if want[r.To] && !seen[r.To] && r.Status == http.StatusOK && !r.ReceivedAt.Before(t0) {
				seen[r.To] = true
				got.ok(r.ReceivedAt.Sub(t0))
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	for tok := range want {
		if !seen[tok] {
			got.fail(fmt.Errorf("no push for %d of %d subscribers within %s", len(want)-len(seen), len(want), 2*socialP99))
		}
	}
	return []Row{
		got.row(fmt.Sprintf("social push to a %d-subscriber topic: accept → APNs simulator, per recipient", len(users)), socialP99, 0.001),
		send.row("the topic send: HTTP answer", 0, 0),
	}, nil
}

func inboxStorm(ctx context.Context, c *Client, o Options) ([]Row, error) {
	n := min(o.Users, 200)
	users, err := setupUsers(ctx, c, o, "inbox", n)
	if err != nil {
		return nil, err
	}
	const items = 20
	for i := 0; i < items; i++ {
		if err := c.must(ctx, "POST", "/v1/notifications", map[string]any{"type": "social", "category": "comment", "title": fmt.Sprint("Comment ", i), "body": "hello",
			"recipients": users, "channels": []string{"in_app"}}, &struct{}{}); err != nil {
			return nil, err
		}
	}
	// Wait until every inbox holds every item (the sends fan out in parallel, in no order).
	deadline := time.Now().Add(time.Minute)
	for _, u := range users {
		for {
			var page struct {
				Items []any `json:"items"`
			}
			if _, _, err := c.Do(ctx, "GET", "/v1/users/"+u+"/notifications?limit=50", nil, &page); err == nil && len(page.Items) >= items {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("inboxes not filled after a minute")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	var reads samples
	var i atomic.Int64
	ticker(ctx, o.Rate*10, o.Duration, func(int) {
		u := users[int(i.Add(1))%len(users)]
		t0 := time.Now()
		var page struct {
			Items []any `json:"items"`
		}
		code, _, err := c.Do(ctx, "GET", "/v1/users/"+u+"/notifications?limit=20", nil, &page)
		if err != nil || code != http.StatusOK || len(page.Items) != items {
			reads.fail(fmt.Errorf("inbox read: %d %v (%d items)", code, err, len(page.Items)))
			return
		}
		reads.ok(time.Since(t0))
	})
	return []Row{reads.row(fmt.Sprintf("inbox page of 20 (%d users, %.0f reads/s offered)", n, o.Rate*10), inboxReadP99, 0.001)}, nil
}

func prefsChurn(ctx context.Context, c *Client, o Options) ([]Row, error) {
	n := min(o.Users, 200)
	users, err := setupUsers(ctx, c, o, "prefs", n)
	if err != nil {
		return nil, err
	}
	var writes, sends samples
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ticker(ctx, 20, o.Duration, func(i int) {
			t0 := time.Now()
			err := c.must(ctx, "PUT", "/v1/users/"+users[i%len(users)]+"/preferences", map[string]any{
				"channels": map[string]bool{"email": i%2 == 0, "sms": false}, "timezone": "Europe/Berlin"}, &struct{}{})
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				writes.fail(err)
				return
			}
			writes.ok(time.Since(t0))
		})
	}()
	ticker(ctx, o.Rate, o.Duration, func(i int) {
		u := users[(i*7)%len(users)]
		t0 := time.Now()
		var acc struct {
			ID string `json:"notification_id"`
		}
		if err := c.must(ctx, "POST", "/v1/notifications", map[string]any{"type": "transactional", "category": "security", "title": "Sign-in", "body": fmt.Sprint("attempt ", i),
			"recipients": []string{u}, "channels": []string{"in_app"}}, &acc); err != nil {
			sends.fail(err)
			return
		}
		for time.Since(t0) < 30*time.Second {
			var page struct {
				Items []struct {
					ID string `json:"notification_id"`
				} `json:"items"`
			}
			if _, _, err := c.Do(ctx, "GET", "/v1/users/"+u+"/notifications?limit=10", nil, &page); err == nil {
				for _, it := range page.Items {
					if it.ID == acc.ID {
						sends.ok(time.Since(t0))
						return
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		sends.fail(fmt.Errorf("notification %s not in the inbox after 30 s", acc.ID))
	})
	cancel()
	wg.Wait()
	return []Row{
		sends.row("transactional in-app: accept → readable in the inbox", transactionalP99, 0.001),
		writes.row("preference writes (20/s): HTTP answer", prefsWriteP99, 0.001),
	}, nil
}

func failover(ctx context.Context, c *Client, o Options) ([]Row, error) {
	users, err := setupUsers(ctx, c, o, "failover", min(o.Users, 100), "DE")
	if err != nil {
		return nil, err
	}
	var ok, refused, wrong, other atomic.Int64
	var lat samples
	var servedBy sync.Map
	start := time.Now()
	var stopAt, firstFailoverAt atomic.Int64
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	disrupt := make(chan error, 2)
	if o.Disrupt != nil {
		go func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(o.Duration / 3):
			}
			stopAt.Store(int64(time.Since(start)))
			disrupt <- o.Disrupt(ctx, "eu-west-1", true)
			select {
			case <-ctx.Done():
				return
			case <-time.After(o.Duration / 3):
			}
			disrupt <- o.Disrupt(ctx, "eu-west-1", false)
		}()
	}
	ticker(ctx, o.Rate, o.Duration, func(i int) {
		u := users[i%len(users)]
		t0 := time.Now()
		var out struct {
			ServedBy string `json:"served_by"`
		}
		code, h, err := c.Do(ctx, "GET", "/v1/users/"+u, nil, &out)
		switch {
		case err != nil:
			other.Add(1)
			lat.fail(err)
		case code == http.StatusOK && (out.ServedBy == "eu-west-1" || out.ServedBy == "eu-central-1"):
			ok.Add(1)
			lat.ok(time.Since(t0))
			servedBy.Store(out.ServedBy, true)
			if out.ServedBy == "eu-central-1" {
				firstFailoverAt.CompareAndSwap(0, int64(time.Since(start)))
			}
		case code == http.StatusOK:
			wrong.Add(1)
			lat.fail(fmt.Errorf("EU user served by %q", out.ServedBy))
		case code == http.StatusServiceUnavailable && h.Get("Retry-After") != "":
			refused.Add(1)
			lat.fail(fmt.Errorf("503 with Retry-After (no EU region healthy at that moment)"))
		default:
			other.Add(1)
			lat.fail(fmt.Errorf("status %d", code))
		}
	})
	cancel()
	var disruptErr error
	for len(disrupt) > 0 {
		if err := <-disrupt; err != nil && disruptErr == nil {
			disruptErr = err
		}
	}
	if disruptErr != nil {
		return nil, fmt.Errorf("disrupting eu-west-1: %w", disruptErr)
	}
	r := lat.row("EU reads: answered by an EU region", 2*time.Second, 0.05)
	if o.Disrupt == nil {
		r.Note = "eu-west-1 was not stopped (no --disrupt): this run checks routing only"
	} else if f := firstFailoverAt.Load(); f > 0 {
		r.Note = fmt.Sprintf("eu-west-1 stopped at %.1fs; first answer from eu-central-1 at %.1fs; 503s %d", time.Duration(stopAt.Load()).Seconds(), time.Duration(f).Seconds(), refused.Load())
	} else {
		r.Note = "eu-west-1 stopped, but no answer came from eu-central-1"
		r.Errors = r.Count
	}
	wrongRow := Row{Stream: "EU reads answered outside the EU", Count: int(ok.Load() + wrong.Load() + refused.Load() + other.Load()), Errors: int(wrong.Load()), MaxErrRate: 0}
	return []Row{r, wrongRow}, nil
}
