package sim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/payload"
	"github.com/sideshow/apns2/token"
	"golang.org/x/net/http2"
)

const deviceToken = "0f3c2a9e5d6b7c8a9e0f1d2c3b4a5968778695a4b3c2d1e0f9e8d7c6b5a49382"

// apnsClient is how Herald's dispatcher will use apns2 against the simulator: token auth with
// the .p8 the simulator wrote, Host set to its URL, and a TLS config trusting its CA.
func apnsClient(t testing.TB, s *Sim, tok *token.Token) *apns2.Client {
	t.Helper()
	if tok == nil {
		key, err := token.AuthKeyFromFile(s.Info().APNs.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		tok = &token.Token{AuthKey: key, KeyID: s.Info().APNs.KeyID, TeamID: s.Info().APNs.TeamID}
	}
	c := apns2.NewTokenClient(tok)
	c.Host = s.Info().APNs.URL
	c.HTTPClient.Transport.(*http2.Transport).TLSClientConfig = &tls.Config{RootCAs: caPool(t, s)} //nolint:staticcheck // apns2 builds an x/net HTTP/2 transport
	// Closing first spares the server's one-second HTTP/2 GOAWAY wait at shutdown.
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func alert(tokenHex string) *apns2.Notification {
	return &apns2.Notification{
		DeviceToken: tokenHex, Topic: "com.herald.demo", PushType: apns2.PushTypeAlert, Priority: apns2.PriorityHigh,
		Payload: payload.NewPayload().AlertTitle("Hi").AlertBody("Your order shipped"),
	}
}

func TestAPNsAcceptsAPushFromApns2AndRecordsIt(t *testing.T) {
	s := startSim(t, nil)
	c := apnsClient(t, s, nil)
	n := alert(deviceToken)
	n.ApnsID = "8f6c1b56-6a0b-4b5a-9d0c-1a2b3c4d5e6f"
	n.CollapseID = "order-42"
	n.Expiration = time.Unix(1900000000, 0)
	res, err := c.Push(n)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || !res.Sent() || res.ApnsID != n.ApnsID || !isUUID(res.ApnsUniqueID) {
		t.Fatalf("response %+v", res)
	}
	recs := records(t, s, "apns", deviceToken)
	if len(recs) != 1 {
		t.Fatalf("want 1 record, got %d", len(recs))
	}
	r := recs[0]
	want := map[string]string{"apns-topic": "com.herald.demo", "apns-push-type": "alert", "apns-priority": "10",
		"apns-id": n.ApnsID, "apns-collapse-id": "order-42", "apns-expiration": "1900000000"}
	for k, v := range want {
		if r.Headers[k] != v {
			t.Errorf("header %s = %q, want %q", k, r.Headers[k], v)
		}
	}
	var p struct {
		Aps struct {
			Alert struct{ Title, Body string } `json:"alert"`
		} `json:"aps"`
	}
	if err := json.Unmarshal(r.Payload, &p); err != nil || p.Aps.Alert.Body != "Your order shipped" {
		t.Fatalf("payload %s (%v)", r.Payload, err)
	}
	if r.ID != n.ApnsID || r.Status != 200 || time.Since(r.ReceivedAt) > time.Minute {
		t.Fatalf("record %+v", r)
	}
}

func TestAPNsAnswersRequestErrorsWithApplesReasons(t *testing.T) {
	s := startSim(t, func(c *Config) { c.APNs.Topics = []string{"com.herald.demo"} })
	c := apnsClient(t, s, nil)
	tests := []struct {
		name       string
		edit       func(n *apns2.Notification)
		wantStatus int
		wantReason string
	}{
		{"payload over 4096 bytes", func(n *apns2.Notification) {
			n.Payload = payload.NewPayload().AlertBody(strings.Repeat("x", 4100))
		}, 413, apns2.ReasonPayloadTooLarge},
		{"voip payload may reach 5120 bytes", func(n *apns2.Notification) {
			n.PushType, n.Topic = apns2.PushTypeVOIP, "com.herald.demo.voip"
			n.Payload = payload.NewPayload().Custom("d", strings.Repeat("x", 4500))
		}, 200, ""},
		{"topic not allowed", func(n *apns2.Notification) { n.Topic = "com.other.app" }, 400, apns2.ReasonBadTopic},
		{"missing topic", func(n *apns2.Notification) { n.Topic = "" }, 400, apns2.ReasonMissingTopic},
		{"device token not hex", func(n *apns2.Notification) { n.DeviceToken = "not-a-token" }, 400, apns2.ReasonBadDeviceToken},
		{"bad priority", func(n *apns2.Notification) { n.Priority = 7 }, 400, apns2.ReasonBadPriority},
		{"unknown push type", func(n *apns2.Notification) { n.PushType = "telepathy" }, 400, "InvalidPushType"},
		{"bad apns-id", func(n *apns2.Notification) { n.ApnsID = "42" }, 400, apns2.ReasonBadMessageID},
		{"collapse id over 64 bytes", func(n *apns2.Notification) { n.CollapseID = strings.Repeat("c", 65) }, 400, apns2.ReasonBadCollapseID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := alert(deviceToken)
			tt.edit(n)
			res, err := c.Push(n)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.wantStatus || res.Reason != tt.wantReason {
				t.Fatalf("got %d %q, want %d %q", res.StatusCode, res.Reason, tt.wantStatus, tt.wantReason)
			}
		})
	}
}

// rawPush sends one request through the client's own transport, for what apns2 will not send
// (an empty body) or will not show (response headers).
func rawPush(t testing.TB, c *apns2.Client, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", c.Host+"/3/device/"+deviceToken, strings.NewReader(body))
	req.Header.Set("apns-topic", "com.herald.demo")
	req.Header.Set("authorization", "bearer "+c.Token.GenerateIfExpired())
	resp, err := c.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestAPNsRefusesAnEmptyPayload(t *testing.T) {
	s := startSim(t, nil)
	resp := rawPush(t, apnsClient(t, s, nil), "")
	if resp.StatusCode != 400 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if recs := records(t, s, "apns", deviceToken); len(recs) != 1 || recs[0].Error != apns2.ReasonPayloadEmpty {
		t.Fatalf("records %+v", recs)
	}
}

func TestAPNsInjectsEachFaultKind(t *testing.T) {
	s := startSim(t, nil)
	c := apnsClient(t, s, nil)
	const other = "aa3c2a9e5d6b7c8a9e0f1d2c3b4a5968778695a4b3c2d1e0f9e8d7c6b5a49382"
	tests := []struct {
		name       string
		faults     Faults
		token      string
		wantStatus int
		wantReason string
	}{
		{"outage", Faults{OutageSeconds: 30}, deviceToken, 503, apns2.ReasonServiceUnavailable},
		{"rate limited", Faults{RateLimitRate: 1}, deviceToken, 429, apns2.ReasonTooManyRequests},
		{"server error 500", Faults{ErrorRate: 1, ErrorStatuses: []int{500}}, deviceToken, 500, apns2.ReasonInternalServerError},
		{"server error 503", Faults{ErrorRate: 1, ErrorStatuses: []int{503}}, deviceToken, 503, apns2.ReasonServiceUnavailable},
		{"unregistered token", Faults{Unregistered: []string{deviceToken}}, deviceToken, 410, apns2.ReasonUnregistered},
		{"bad token listed", Faults{Invalid: []string{deviceToken}}, deviceToken, 400, apns2.ReasonBadDeviceToken},
		{"other tokens unaffected by the lists", Faults{Unregistered: []string{deviceToken}}, other, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setFaults(t, s, "apns", tt.faults)
			res, err := c.Push(alert(tt.token))
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.wantStatus || res.Reason != tt.wantReason {
				t.Fatalf("got %d %q, want %d %q", res.StatusCode, res.Reason, tt.wantStatus, tt.wantReason)
			}
			if tt.wantStatus == 410 && time.Since(res.Timestamp.Time) > time.Minute {
				t.Fatalf("410 without a recent timestamp: %v", res.Timestamp)
			}
		})
	}
}

func TestAPNsRetryAfterOnOutageAndRateLimit(t *testing.T) {
	s := startSim(t, nil)
	c := apnsClient(t, s, nil)
	for _, f := range []Faults{{OutageSeconds: 5}, {RateLimitRate: 1, RetryAfterSeconds: 7}} {
		setFaults(t, s, "apns", f)
		resp := rawPush(t, c, `{"aps":{}}`)
		want := "5"
		if f.RetryAfterSeconds == 7 {
			want = "7"
		}
		if resp.ProtoMajor != 2 || resp.Header.Get("Retry-After") != want {
			t.Fatalf("%+v: proto %s, Retry-After %q, want %q", f, resp.Proto, resp.Header.Get("Retry-After"), want)
		}
	}
}

func TestAPNsRateLimitPerSecondRejectsTheExcess(t *testing.T) {
	s := startSim(t, nil)
	c := apnsClient(t, s, nil)
	setFaults(t, s, "apns", Faults{RateLimitPerSecond: 3})
	var got []int
	for range 6 {
		res, err := c.Push(alert(deviceToken))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, res.StatusCode)
	}
	if got[0] != 200 || got[1] != 200 || got[2] != 200 || got[5] != 429 {
		t.Fatalf("statuses %v: want the first 3 accepted and the burst's tail refused", got)
	}
}

func TestAPNsLatencyAndThroughputCapSlowAnswers(t *testing.T) {
	s := startSim(t, nil)
	c := apnsClient(t, s, nil)
	if _, err := c.Push(alert(deviceToken)); err != nil { // connect and sign outside the timing
		t.Fatal(err)
	}
	setFaults(t, s, "apns", Faults{LatencyMS: 150, JitterMS: 20})
	start := time.Now()
	if res, err := c.Push(alert(deviceToken)); err != nil || res.StatusCode != 200 {
		t.Fatalf("%v %v", res, err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
		t.Fatalf("latency fault: answer took %v", d)
	}

	setFaults(t, s, "apns", Faults{MaxPerSecond: 20})
	start = time.Now()
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if res, err := c.Push(alert(deviceToken)); err != nil || res.StatusCode != 200 {
				t.Errorf("%v %v", res, err)
			}
		})
	}
	wg.Wait()
	// 10 requests at 20/s: the last slot is 450ms after the first.
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("throughput cap: 10 requests took %v, want >= 450ms", d)
	}
}

func TestAPNsFaultsFromConfigApplyAtStart(t *testing.T) {
	s := startSim(t, func(c *Config) { c.APNs.Faults = Faults{Unregistered: []string{deviceToken}} })
	res, err := apnsClient(t, s, nil).Push(alert(deviceToken))
	if err != nil || res.StatusCode != 410 {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestAPNsSeededErrorRateRepeats(t *testing.T) {
	run := func() []int {
		s := startSim(t, func(c *Config) { c.Seed = 42; c.APNs.Faults = Faults{ErrorRate: 0.5} })
		c := apnsClient(t, s, nil)
		var out []int
		for range 30 {
			res, err := c.Push(alert(deviceToken))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, res.StatusCode)
		}
		return out
	}
	a, b := run(), run()
	var failed int
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different answers:\n%v\n%v", a, b)
		}
		if a[i] != 200 {
			failed++
		}
	}
	if failed < 5 || failed > 25 {
		t.Fatalf("error_rate 0.5 failed %d of 30", failed)
	}
}

// es256 signs a JWT by hand so the tests can send tokens apns2 would never make.
func es256(t testing.TB, key *ecdsa.PrivateKey, header, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	sum := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestAPNsChecksTheProviderToken(t *testing.T) {
	s := startSim(t, nil)
	info := s.Info()
	key, err := token.AuthKeyFromFile(info.APNs.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now().Unix()
	// fixed hands apns2 a ready-made bearer: IssuedAt=now stops it from signing its own.
	fixed := func(bearer string) *token.Token {
		return &token.Token{AuthKey: key, KeyID: info.APNs.KeyID, TeamID: info.APNs.TeamID, IssuedAt: now, Bearer: bearer}
	}
	hdr := map[string]any{"alg": "ES256", "kid": info.APNs.KeyID}
	tests := []struct {
		name       string
		tok        *token.Token
		wantStatus int
		wantReason string
	}{
		{"valid token", nil, 200, ""},
		{"signed by another key", &token.Token{AuthKey: otherKey, KeyID: info.APNs.KeyID, TeamID: info.APNs.TeamID}, 403, apns2.ReasonInvalidProviderToken},
		{"wrong key id", &token.Token{AuthKey: key, KeyID: "OTHERKEY01", TeamID: info.APNs.TeamID}, 403, apns2.ReasonInvalidProviderToken},
		{"wrong team id", &token.Token{AuthKey: key, KeyID: info.APNs.KeyID, TeamID: "OTHERTEAM1"}, 403, apns2.ReasonInvalidProviderToken},
		{"issued two hours ago", fixed(es256(t, key, hdr, map[string]any{"iss": info.APNs.TeamID, "iat": now - 7200})), 403, apns2.ReasonExpiredProviderToken},
		{"issued 59 minutes ago", fixed(es256(t, key, hdr, map[string]any{"iss": info.APNs.TeamID, "iat": now - 3540})), 200, ""},
		{"issued in the future", fixed(es256(t, key, hdr, map[string]any{"iss": info.APNs.TeamID, "iat": now + 3600})), 403, apns2.ReasonInvalidProviderToken},
		{"not a JWT", fixed("hello"), 403, apns2.ReasonInvalidProviderToken},
		{"HS256 instead of ES256", fixed("eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln"), 403, apns2.ReasonInvalidProviderToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := apnsClient(t, s, tt.tok).Push(alert(deviceToken))
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.wantStatus || res.Reason != tt.wantReason {
				t.Fatalf("got %d %q, want %d %q", res.StatusCode, res.Reason, tt.wantStatus, tt.wantReason)
			}
		})
	}
	t.Run("no token at all", func(t *testing.T) {
		c := apns2.NewClient(tls.Certificate{}) // certificate client without a certificate: no authorization header
		c.Host = info.APNs.URL
		c.HTTPClient.Transport.(*http2.Transport).TLSClientConfig = &tls.Config{RootCAs: caPool(t, s)} //nolint:staticcheck // apns2 builds an x/net HTTP/2 transport
		res, err := c.Push(alert(deviceToken))
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 403 || res.Reason != apns2.ReasonMissingProviderToken {
			t.Fatalf("got %d %q", res.StatusCode, res.Reason)
		}
	})
}

func TestAPNsRefusesClientsThatDoNotTrustTheCA(t *testing.T) {
	s := startSim(t, nil)
	c := apnsClient(t, s, nil)
	c.HTTPClient.Transport.(*http2.Transport).TLSClientConfig = &tls.Config{} //nolint:staticcheck // system roots only; apns2 builds an x/net HTTP/2 transport
	if _, err := c.Push(alert(deviceToken)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("want a certificate error, got %v", err)
	}
}

func TestAPNsRecordsQueryNewestLastLimitAndClear(t *testing.T) {
	s := startSim(t, nil)
	c := apnsClient(t, s, nil)
	const other = "bb3c2a9e5d6b7c8a9e0f1d2c3b4a5968778695a4b3c2d1e0f9e8d7c6b5a49382"
	for i := range 3 {
		n := alert(deviceToken)
		n.Payload = []byte(`{"aps":{"alert":"n` + string(rune('0'+i)) + `"}}`)
		if _, err := c.Push(n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Push(alert(other)); err != nil {
		t.Fatal(err)
	}
	recs := records(t, s, "apns", deviceToken)
	if len(recs) != 3 || !bytes.Contains(recs[0].Payload, []byte("n0")) || !bytes.Contains(recs[2].Payload, []byte("n2")) {
		t.Fatalf("records for one token, oldest first: %+v", recs)
	}
	if all := records(t, s, "apns", ""); len(all) != 4 {
		t.Fatalf("all records: %d", len(all))
	}
	var lim struct{ Messages []Record }
	admin(t, s, "GET", "/sim/apns/messages?limit=1&to="+deviceToken, nil, &lim)
	if len(lim.Messages) != 1 || !bytes.Contains(lim.Messages[0].Payload, []byte("n2")) {
		t.Fatalf("limit=1 must give the newest: %+v", lim.Messages)
	}
	if code := admin(t, s, "DELETE", "/sim/apns/messages", nil, nil); code != 204 {
		t.Fatalf("DELETE: %d", code)
	}
	if recs := records(t, s, "apns", ""); len(recs) != 0 {
		t.Fatalf("records after clear: %d", len(recs))
	}
}

// BenchmarkAPNsSimulator pushes through one real apns2 client (one HTTP/2 connection,
// multiplexed) from many goroutines and reports requests per second.
func BenchmarkAPNsSimulator(b *testing.B) {
	s := startSim(b, nil)
	c := apnsClient(b, s, nil)
	n := alert(deviceToken)
	if _, err := c.Push(n); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(32) // 32 x GOMAXPROCS pushes in flight
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := c.Push(n)
			if err != nil || res.StatusCode != 200 {
				b.Errorf("%v %v", res, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

func FuzzParseAPNsRequest(f *testing.F) {
	f.Add(deviceToken, "com.herald.demo", "alert", "10", "0", "8f6c1b56-6a0b-4b5a-9d0c-1a2b3c4d5e6f", "c")
	f.Add("zz", "", "x", "7", "-1", "42", strings.Repeat("c", 65))
	f.Fuzz(func(t *testing.T, tok, topic, pushType, prio, exp, id, collapse string) {
		h := http.Header{}
		for k, v := range map[string]string{"apns-topic": topic, "apns-push-type": pushType, "apns-priority": prio,
			"apns-expiration": exp, "apns-id": id, "apns-collapse-id": collapse} {
			h.Set(k, v)
		}
		req, perr := parseAPNsRequest(tok, h)
		if perr != nil {
			if perr.status != 400 || perr.reason == "" {
				t.Fatalf("refusal %+v", perr)
			}
			return
		}
		// Whatever is accepted must be what APNs accepts.
		if !isDeviceToken(req.token) || req.topic == "" || len(req.collapseID) > apnsMaxCollapseID ||
			(req.id != "" && !isUUID(req.id)) || (req.pushType != "" && !apnsPushTypes[req.pushType]) {
			t.Fatalf("accepted a bad request: %+v", req)
		}
	})
}

func FuzzParseJWTNeverVerifiesForgeries(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln")
	f.Add("a.b.c")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		j, err := parseJWT(tok)
		if err != nil {
			return
		}
		if j.verifyES256(&key.PublicKey) {
			t.Fatalf("forged token verified: %q", tok)
		}
	})
}
