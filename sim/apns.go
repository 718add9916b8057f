package sim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// APNs limits and rules, from Apple's "Sending notification requests to APNs".
const (
	apnsMaxPayload     = 4096
	apnsMaxVoIPPayload = 5120
	apnsMaxCollapseID  = 64
	// Provider tokens older than an hour are refused; Apple asks for a refresh every 20-60 min.
	apnsTokenMaxAge = time.Hour
	// Tokens from a clock a little ahead are accepted, as Apple does.
	apnsTokenMaxSkew = 5 * time.Minute
)

var apnsPushTypes = map[string]bool{
	"alert": true, "background": true, "location": true, "voip": true, "complication": true,
	"fileprovider": true, "mdm": true, "liveactivity": true, "pushtotalk": true, "widgets": true,
}

// apnsServer answers POST /3/device/{token} as api.push.apple.com does.
type apnsServer struct {
	cfg        APNsConfig
	keyWritten bool // the .p8 for clients is at the configured path
	topics     map[string]bool
	records    *Ring
	faults     *Injector
	log        *slog.Logger
	tlsConfig  *tls.Config

	// keys are the signing keys provider tokens may name (kid), the configured one and those
	// made over the admin API. Keys are only ever added.
	keysMu sync.RWMutex
	keys   map[string]apnsKey

	// verified caches provider tokens whose signature checked out (token -> apnsVerified), so
	// the hot path does one map lookup instead of an ECDSA verification per request. Clients
	// reuse a token for up to an hour, so the cache stays small; it is emptied if it ever grows
	// large.
	verified  sync.Map
	nVerified atomic.Int64
}

// apnsKey is one provider-token signing key: the team it belongs to and its public half.
type apnsKey struct {
	teamID, keyID string
	pub           *ecdsa.PublicKey
}

// apnsVerified is a cached verified token: when it was issued and whose key signed it.
type apnsVerified struct {
	iat int64
	key apnsKey
}

func newAPNsServer(cfg APNsConfig, keyFile string, records *Ring, faults *Injector, log *slog.Logger) (*apnsServer, error) {
	s := &apnsServer{cfg: cfg, records: records, faults: faults, log: log, keys: map[string]apnsKey{}}
	if len(cfg.Topics) > 0 {
		s.topics = map[string]bool{}
		for _, t := range cfg.Topics {
			for _, suffix := range []string{"", ".voip", ".complication", ".push-type.liveactivity"} {
				s.topics[t+suffix] = true
			}
		}
	}
	if cfg.PublicKeyFile != "" {
		pub, err := loadECPublicKey(cfg.PublicKeyFile)
		if err != nil {
			return nil, err
		}
		s.addKey(apnsKey{teamID: cfg.TeamID, keyID: cfg.KeyID, pub: pub})
		return s, nil
	}
	key, err := loadOrCreateP8(keyFile)
	if err != nil {
		return nil, err
	}
	s.addKey(apnsKey{teamID: cfg.TeamID, keyID: cfg.KeyID, pub: &key.PublicKey})
	s.keyWritten = true
	return s, nil
}

// addKey makes tokens signed by k acceptable. A key id already known keeps its key.
func (s *apnsServer) addKey(k apnsKey) bool {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	if _, dup := s.keys[k.keyID]; dup {
		return false
	}
	s.keys[k.keyID] = k
	return true
}

func (s *apnsServer) key(keyID string) (apnsKey, bool) {
	s.keysMu.RLock()
	defer s.keysMu.RUnlock()
	k, ok := s.keys[keyID]
	return k, ok
}

// newP8 makes an Apple-style .p8: an EC P-256 key, PKCS#8 in PEM.
func newP8() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating an APNs key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding an APNs key: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// parseP8 reads an Apple-style .p8.
func parseP8(raw []byte) (*ecdsa.PrivateKey, error) {
	b, _ := pem.Decode(raw)
	if b == nil {
		return nil, errors.New("not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, errors.New("not an EC P-256 key")
	}
	return key, nil
}

// loadOrCreateP8 reads an Apple-style .p8 (PKCS#8 EC P-256 key in PEM), creating it if missing.
func loadOrCreateP8(path string) (*ecdsa.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if err == nil {
		key, err := parseP8(raw)
		if err != nil {
			return nil, fmt.Errorf("APNs key %s: %w", path, err)
		}
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading APNs key: %w", err)
	}
	key, p8, err := newP8()
	if err != nil {
		return nil, err
	}
	return key, writeFile(path, p8, 0o600)
}

func loadECPublicKey(path string) (*ecdsa.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading APNs public key: %w", err)
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		return nil, fmt.Errorf("APNs public key %s: not PEM", path)
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("APNs public key %s: %w", path, err)
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("APNs public key %s: not an EC P-256 key", path)
	}
	return pub, nil
}

// apnsRequest is a push request's headers, checked.
type apnsRequest struct {
	token      string
	topic      string
	pushType   string
	priority   string
	expiration string
	id         string
	collapseID string
}

// apnsError is an APNs refusal: the status and the reason Apple puts in {"reason": ...}.
type apnsError struct {
	status int
	reason string
}

// parseAPNsRequest checks the device token and the apns-* headers as APNs does, in the order
// of Apple's reason table. Pure, so it is fuzzed on its own.
func parseAPNsRequest(deviceToken string, h http.Header) (apnsRequest, *apnsError) {
	req := apnsRequest{
		token: deviceToken, topic: h.Get("apns-topic"), pushType: h.Get("apns-push-type"),
		priority: h.Get("apns-priority"), expiration: h.Get("apns-expiration"),
		id: h.Get("apns-id"), collapseID: h.Get("apns-collapse-id"),
	}
	if req.id != "" && !isUUID(req.id) {
		return req, &apnsError{400, "BadMessageId"}
	}
	if req.priority != "" && req.priority != "10" && req.priority != "5" && req.priority != "1" {
		return req, &apnsError{400, "BadPriority"}
	}
	if req.expiration != "" {
		if n, err := strconv.ParseInt(req.expiration, 10, 64); err != nil || n < 0 {
			return req, &apnsError{400, "BadExpirationDate"}
		}
	}
	if len(req.collapseID) > apnsMaxCollapseID {
		return req, &apnsError{400, "BadCollapseId"}
	}
	if req.pushType != "" && !apnsPushTypes[req.pushType] {
		return req, &apnsError{400, "InvalidPushType"}
	}
	if req.topic == "" {
		// Token-based connections can send to several apps, so Apple needs the topic.
		return req, &apnsError{400, "MissingTopic"}
	}
	if !isDeviceToken(deviceToken) {
		return req, &apnsError{400, "BadDeviceToken"}
	}
	return req, nil
}

// isDeviceToken accepts hex of even length; today's tokens are 64 hex digits, and Apple warns
// the length may change.
func isDeviceToken(t string) bool {
	if len(t) < 16 || len(t) > 200 || len(t)%2 != 0 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// isUUID accepts the canonical 8-4-4-4-12 hex form apns-id uses.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// newUUID returns a random (version 4) UUID. math/rand/v2's generator is per-thread and
// lock-free, and these ids need to be unique, not secret.
func newUUID() string {
	var b [16]byte
	a, c := mrand.Uint64(), mrand.Uint64()
	for i := 0; i < 8; i++ {
		b[i], b[8+i] = byte(a>>(8*i)), byte(c>>(8*i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// checkProviderToken verifies the authorization header's JWT: ES256, kid = a known key id, iss =
// that key's team id, iat within the last hour. It returns the key that signed it, or the APNs
// reason for a refusal.
func (s *apnsServer) checkProviderToken(authz string, now time.Time) (apnsKey, string) {
	bearer, ok := strings.CutPrefix(authz, "bearer ")
	if !ok {
		bearer, ok = strings.CutPrefix(authz, "Bearer ")
	}
	if !ok || bearer == "" {
		return apnsKey{}, "MissingProviderToken"
	}
	if v, ok := s.verified.Load(bearer); ok {
		v := v.(apnsVerified)
		if now.Sub(time.Unix(v.iat, 0)) > apnsTokenMaxAge {
			return apnsKey{}, "ExpiredProviderToken"
		}
		return v.key, ""
	}
	j, err := parseJWT(bearer)
	if err != nil {
		return apnsKey{}, "InvalidProviderToken"
	}
	key, ok := s.key(j.Header.Kid)
	if !ok || j.Claims.Iss != key.teamID || !j.verifyES256(key.pub) {
		return apnsKey{}, "InvalidProviderToken"
	}
	iat := time.Unix(int64(j.Claims.Iat), 0)
	if iat.After(now.Add(apnsTokenMaxSkew)) {
		return apnsKey{}, "InvalidProviderToken"
	}
	if now.Sub(iat) > apnsTokenMaxAge {
		return apnsKey{}, "ExpiredProviderToken"
	}
	if s.nVerified.Add(1) > 10_000 {
		s.verified.Clear()
		s.nVerified.Store(0)
	}
	s.verified.Store(bearer, apnsVerified{iat: iat.Unix(), key: key})
	return key, ""
}

func (s *apnsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	received := time.Now()
	id := r.Header.Get("apns-id")
	if id == "" || !isUUID(id) {
		id = newUUID()
	}
	w.Header().Set("apns-id", id)
	deviceToken, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if !ok || strings.Contains(deviceToken, "/") {
		s.fail(w, &apnsError{404, "BadPath"}, 0)
		return
	}
	if r.Method != http.MethodPost {
		s.fail(w, &apnsError{405, "MethodNotAllowed"}, 0)
		return
	}
	rec := &Record{To: deviceToken, ReceivedAt: received, Headers: apnsHeaders(r.Header)}
	answer := func(e *apnsError, retryAfter int) {
		rec.Status, rec.Error = e.status, e.reason
		s.records.Add(rec)
		s.fail(w, e, retryAfter)
	}

	key, reason := s.checkProviderToken(r.Header.Get("Authorization"), received)
	if reason != "" {
		answer(&apnsError{403, reason}, 0)
		return
	}
	// Which account the push came in on: a refused token names none.
	rec.Headers["sim-team-id"], rec.Headers["sim-key-id"] = key.teamID, key.keyID
	if err := s.faults.Wait(r.Context()); err != nil {
		return // the client went away
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, apnsMaxVoIPPayload+1))
	if err != nil {
		return
	}
	rec.Payload = jsonPayload(body)
	switch d := s.faults.Decide(); d.Kind {
	case Outage:
		answer(&apnsError{503, "ServiceUnavailable"}, d.RetryAfter)
		return
	case RateLimited:
		answer(&apnsError{429, "TooManyRequests"}, d.RetryAfter)
		return
	case ServerError:
		if d.Status == 503 {
			answer(&apnsError{503, "ServiceUnavailable"}, d.RetryAfter)
		} else {
			answer(&apnsError{500, "InternalServerError"}, 0)
		}
		return
	}
	req, perr := parseAPNsRequest(deviceToken, r.Header)
	if perr != nil {
		answer(perr, 0)
		return
	}
	if s.topics != nil && !s.topics[req.topic] {
		answer(&apnsError{400, "BadTopic"}, 0)
		return
	}
	limit := apnsMaxPayload
	if req.pushType == "voip" {
		limit = apnsMaxVoIPPayload
	}
	switch {
	case len(body) == 0:
		answer(&apnsError{400, "PayloadEmpty"}, 0)
		return
	case len(body) > limit:
		answer(&apnsError{413, "PayloadTooLarge"}, 0)
		return
	}
	switch s.faults.Recipient(deviceToken) {
	case RecipientUnregistered:
		rec.Status, rec.Error = 410, "Unregistered"
		s.records.Add(rec)
		// 410 carries the last time APNs knew the token valid, in milliseconds.
		writeJSON(w, 410, map[string]any{"reason": "Unregistered", "timestamp": received.UnixMilli()})
		return
	case RecipientInvalid:
		answer(&apnsError{400, "BadDeviceToken"}, 0)
		return
	}
	rec.ID, rec.Status = id, 200
	s.records.Add(rec)
	// Apple sends apns-unique-id in the development environment, which this stands in for.
	w.Header().Set("apns-unique-id", newUUID())
	w.WriteHeader(200)
}

func (s *apnsServer) fail(w http.ResponseWriter, e *apnsError, retryAfter int) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	// A fixed shape, so no encoder is needed on the hot path.
	_, _ = io.WriteString(w, `{"reason":"`+e.reason+`"}`) // the client went away: nothing to tell
}

// apnsHeaders keeps the request headers that matter for a test (never the token itself).
func apnsHeaders(h http.Header) map[string]string {
	out := make(map[string]string, 8)
	for _, k := range []string{"apns-topic", "apns-push-type", "apns-priority", "apns-expiration", "apns-id", "apns-collapse-id"} {
		if v := h.Get(k); v != "" {
			out[k] = v
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
