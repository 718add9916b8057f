package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// digestEvents is how many triggers a fault's digest collects.
const digestEvents = 50

// digestProbe is issue 21's proof under a fault: a workflow that collects every trigger for a
// user over a window, then sends one in-app summary of them, is triggered digestEvents times
// across the fault (from just before it to well into it). Once the window has closed the user's
// inbox must hold exactly one summary, counting every trigger.
type digestProbe struct {
	c        *client
	workflow string
	marker   string
	user     string
	window   time.Duration
	mu       sync.Mutex
	first    time.Time
	accepted int
	err      error
}

// newDigestProbe registers the probe's user (home eu-west-1, the region the region-kill fault
// kills; an inbox of its own) and stores its template and workflow (social tier).
func newDigestProbe(ctx context.Context, c *client, o Options, round int) (*digestProbe, error) {
	user := fmt.Sprintf("fzd-%s-%d", o.RunID, round)
	if err := c.do(ctx, "PUT", "/v1/users/"+user, map[string]any{"country": "DE"}); err != nil {
		return nil, fmt.Errorf("digest probe user: %w", err)
	}
	p := &digestProbe{c: c, user: user, workflow: fmt.Sprintf("fzd-%s-%d", o.RunID, round), marker: fmt.Sprintf("fzdigest-%s-%d", o.RunID, round),
		// From the first trigger, 5 s before the fault, past the last one whatever the fault
		// delays it by.
		window: (o.Down + o.After + 45*time.Second).Round(time.Second)}
	if err := c.do(ctx, "PUT", "/v1/templates/"+p.workflow, map[string]any{"type": "social", "category": "fz",
		"content": map[string]any{"in_app": map[string]any{"title": "Digest", "body": p.marker + " {{.digest.count}}"}}}); err != nil {
		return nil, fmt.Errorf("digest probe template: %w", err)
	}
	if err := c.do(ctx, "PUT", "/v1/workflows/"+p.workflow, map[string]any{"type": "social", "category": "fz", "steps": []any{
		map[string]any{"id": "collect", "type": "digest", "duration": fmt.Sprintf("%ds", int(p.window.Seconds()))},
		map[string]any{"id": "summary", "type": "in_app", "template_id": p.workflow},
	}}); err != nil {
		return nil, fmt.Errorf("digest probe workflow: %w", err)
	}
	return p, nil
}

// trigger sends the triggers, one every every, each retried under its own idempotency key until
// accepted (or until giveUp): a retry accepted twice starts nothing twice.
func (p *digestProbe) trigger(ctx context.Context, every, giveUp time.Duration) {
	var wg sync.WaitGroup
	for i := range digestEvents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := map[string]any{"recipients": []string{p.user}, "payload": map[string]any{"n": i}, "idempotency_key": p.marker + "-" + strconv.Itoa(i)}
			deadline := time.Now().Add(giveUp)
			for {
				started := time.Now()
				err := p.c.do(ctx, "POST", "/v1/workflows/"+p.workflow+"/trigger", body)
				if err == nil {
					p.mu.Lock()
					if p.first.IsZero() || started.Before(p.first) {
						p.first = started
					}
					p.accepted++
					p.mu.Unlock()
					return
				}
				if time.Now().After(deadline) || ctx.Err() != nil {
					p.mu.Lock()
					p.err = fmt.Errorf("trigger %d never accepted: %w", i, err)
					p.mu.Unlock()
					return
				}
				_ = sleep(ctx, time.Second)
			}
		}()
		if err := sleep(ctx, every); err != nil {
			break
		}
	}
	wg.Wait()
}

// summaries waits until the window has closed and a summary is in the inbox (or until its
// deadline), then reads every summary of the probe: the count each lists.
func (p *digestProbe) summaries(ctx context.Context, wait time.Duration) ([]int, error) {
	p.mu.Lock()
	first, err := p.first, p.err
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	deadline := first.Add(p.window + wait)
	for {
		got, err := p.read(ctx)
		if err == nil && len(got) > 0 && time.Now().After(first.Add(p.window)) {
			// A second summary would come right after the first: look again a moment later.
			_ = sleep(ctx, 5*time.Second)
			return p.read(ctx)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return got, err
		}
		_ = sleep(ctx, 2*time.Second)
	}
}

func (p *digestProbe) read(ctx context.Context) ([]int, error) {
	q := url.Values{"limit": {"100"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.c.base+"/v1/users/"+p.user+"/notifications?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+p.c.key)
	resp, err := p.c.admin.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var page struct {
		Items []struct {
			Body string `json:"body"`
		} `json:"items"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading %s's inbox: %d %v", p.user, resp.StatusCode, err)
	}
	var counts []int
	for _, it := range page.Items {
		rest, ok := strings.CutPrefix(it.Body, p.marker+" ")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil {
			return nil, fmt.Errorf("a summary reads %q", it.Body)
		}
		counts = append(counts, n)
	}
	return counts, nil
}
