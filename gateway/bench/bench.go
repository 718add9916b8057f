// Package bench measures what the gateway adds: the same requests sent to a region directly
// and through the gateway, interleaved in rounds so the machine's noise hits both alike.
package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"text/tabwriter"
	"time"
)

// Options says what to measure.
type Options struct {
	GatewayURL string // http://127.0.0.1:8080
	RegionURL  string // the user's home region API, e.g. https://127.0.0.1:8101
	// RegionTLS is the client side of the region's mutual TLS (the gateway's certificate).
	RegionTLS *tls.Config
	App       string // the key's app id (sent to the region as X-Herald-App)
	Key       string // an API key of App, with a limit high enough for the run
	User      string
	Requests  int // per path and concurrency level, each side
	Rounds    int // interleaved rounds the requests are split into
	Levels    []int
}

// Run registers the user, then measures and prints the table.
func Run(ctx context.Context, o Options, out io.Writer) error {
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: o.RegionTLS, MaxIdleConnsPerHost: 512, MaxConnsPerHost: 0}}
	call := func(ctx context.Context, base, method, path string, body []byte, viaGateway bool) error {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
		if err != nil {
			return err
		}
		if viaGateway {
			req.Header.Set("Authorization", "Bearer "+o.Key)
		} else {
			req.Header.Set("X-Herald-App", o.App)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s %s%s: %d %s", method, base, path, resp.StatusCode, raw)
		}
		return nil
	}
	reg, _ := json.Marshal(map[string]string{"country": "DE"})
	if err := call(ctx, o.GatewayURL, http.MethodPut, "/v1/users/"+o.User, reg, true); err != nil {
		return fmt.Errorf("registering the bench user: %w", err)
	}
	send, _ := json.Marshal(map[string]any{"type": "transactional", "category": "otp", "title": "Code", "body": "1",
		"recipients": []string{o.User}, "channels": []string{"in_app"}})
	paths := []struct {
		name, method, path string
		body               []byte
	}{
		{"GET unread-count", http.MethodGet, "/v1/users/" + o.User + "/notifications/unread-count", nil},
		{"POST notification", http.MethodPost, "/v1/notifications", send},
	}

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "request\tconcurrency\tdirect req/s\tgateway req/s\tdirect p50\tgateway p50\tdirect p99\tgateway p99\tadded p50\tadded p99\t")
	for _, p := range paths {
		for _, level := range o.Levels {
			var direct, via []time.Duration
			var dDur, gDur time.Duration
			per := max(o.Requests/o.Rounds, level)
			for round := 0; round < o.Rounds; round++ {
				// Alternate which side goes first, so neither always meets a warmer machine.
				sides := []bool{false, true}
				if round%2 == 1 {
					sides = []bool{true, false}
				}
				for _, viaGW := range sides {
					base := o.RegionURL
					if viaGW {
						base = o.GatewayURL
					}
					lats, took, err := load(ctx, per, level, func(ctx context.Context) error {
						return call(ctx, base, p.method, p.path, p.body, viaGW)
					})
					if err != nil {
						return err
					}
					if viaGW {
						via, gDur = append(via, lats...), gDur+took
					} else {
						direct, dDur = append(direct, lats...), dDur+took
					}
				}
			}
			dp50, dp99 := pct(direct, 0.50), pct(direct, 0.99)
			gp50, gp99 := pct(via, 0.50), pct(via, 0.99)
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", p.name, level,
				float64(len(direct))/dDur.Seconds(), float64(len(via))/gDur.Seconds(),
				ms(dp50), ms(gp50), ms(dp99), ms(gp99), ms(gp50-dp50), ms(gp99-dp99))
		}
	}
	return tw.Flush()
}

// load runs n calls with c workers and returns each call's latency and the wall time.
func load(ctx context.Context, n, c int, do func(context.Context) error) ([]time.Duration, time.Duration, error) {
	lats := make([]time.Duration, n)
	var next int
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := firstErr != nil
				mu.Unlock()
				if i >= n || stop {
					return
				}
				t0 := time.Now()
				err := do(ctx)
				lats[i] = time.Since(t0)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return lats, time.Since(start), firstErr
}

func pct(ls []time.Duration, q float64) time.Duration {
	if len(ls) == 0 {
		return 0
	}
	s := slices.Clone(ls)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
