package sim

import (
	"crypto/rand"
	"crypto/rsa"
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
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// jwtBearerGrant is the OAuth2 grant a service account uses to trade its signed assertion
	// for an access token (RFC 7523).
	jwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	fcmTokenTTL    = time.Hour
	// FCM refuses messages whose payload exceeds 4 KB.
	fcmMaxPayload = 4096
	fcmErrorType  = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
)

// serviceAccount is the JSON key file Google hands out for a service account, with the fields
// google.golang.org/api and golang.org/x/oauth2/google read.
type serviceAccount struct {
	Type                    string `json:"type"`
	ProjectID               string `json:"project_id"`
	PrivateKeyID            string `json:"private_key_id"`
	PrivateKey              string `json:"private_key"`
	ClientEmail             string `json:"client_email"`
	ClientID                string `json:"client_id"`
	AuthURI                 string `json:"auth_uri"`
	TokenURI                string `json:"token_uri"`
	AuthProviderX509CertURL string `json:"auth_provider_x509_cert_url"`
	ClientX509CertURL       string `json:"client_x509_cert_url"`
	UniverseDomain          string `json:"universe_domain"`
}

// fcmServer answers the FCM HTTP v1 send API and the OAuth2 token endpoint that the service
// accounts' token_uri points at.
type fcmServer struct {
	tokenURI string
	records  *Ring
	faults   *Injector
	log      *slog.Logger

	// accounts are the service accounts by client_email: the configured one and those made
	// over the admin API; projects are their project ids. Both are only ever added to.
	mu       sync.RWMutex
	accounts map[string]*fcmAccount
	projects map[string]bool

	// tokens holds issued access tokens (token -> fcmAccessToken).
	tokens  sync.Map
	nTokens atomic.Int64
}

// fcmAccount is a service account the simulator knows: its project, its email and the public
// half of its key.
type fcmAccount struct {
	projectID, clientEmail string
	pub                    *rsa.PublicKey
}

// fcmAccessToken is an issued access token: when it expires (unix seconds) and whose it is.
type fcmAccessToken struct {
	exp     int64
	account *fcmAccount
}

func newFCMServer(cfg FCMConfig, credFile, tokenURI string, records *Ring, faults *Injector, log *slog.Logger) (*fcmServer, error) {
	sa, key, err := loadOrCreateServiceAccount(credFile, cfg.ProjectID, tokenURI)
	if err != nil {
		return nil, err
	}
	s := &fcmServer{tokenURI: tokenURI, records: records, faults: faults, log: log,
		accounts: map[string]*fcmAccount{}, projects: map[string]bool{}}
	s.addAccount(sa.ProjectID, sa.ClientEmail, &key.PublicKey)
	return s, nil
}

// addAccount lets the service account get tokens and send to its project's messages. It
// refuses a project that already has one.
func (s *fcmServer) addAccount(projectID, clientEmail string, pub *rsa.PublicKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.projects[projectID] || s.accounts[clientEmail] != nil {
		return false
	}
	s.projects[projectID] = true
	s.accounts[clientEmail] = &fcmAccount{projectID: projectID, clientEmail: clientEmail, pub: pub}
	return true
}

func (s *fcmServer) hasProject(projectID string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.projects[projectID]
}

func (s *fcmServer) account(clientEmail string) *fcmAccount {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.accounts[clientEmail]
}

// loadOrCreateServiceAccount keeps the key of an existing credentials file and rewrites the
// file with this run's project and token URI, so clients always find the simulator.
func loadOrCreateServiceAccount(path, projectID, tokenURI string) (serviceAccount, *rsa.PrivateKey, error) {
	var sa serviceAccount
	var key *rsa.PrivateKey
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(raw, &sa); err != nil {
			return sa, nil, fmt.Errorf("FCM credentials %s: %w", path, err)
		}
		if key, err = serviceAccountKey(sa); err != nil {
			return sa, nil, fmt.Errorf("FCM credentials %s: %w", path, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		if sa, key, err = newServiceAccountKey(); err != nil {
			return sa, nil, err
		}
	default:
		return sa, nil, fmt.Errorf("reading FCM credentials: %w", err)
	}
	if sa.ProjectID != projectID {
		sa.ClientEmail = ""
	}
	fillServiceAccount(&sa, projectID, tokenURI)
	out, _ := json.MarshalIndent(sa, "", "  ")
	return sa, key, writeFile(path, append(out, '\n'), 0o600)
}

// newServiceAccountKey makes the key half of a service account: an RSA 2048 key (PKCS#8 PEM),
// its id, and a client id.
func newServiceAccountKey() (serviceAccount, *rsa.PrivateKey, error) {
	var sa serviceAccount
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return sa, nil, fmt.Errorf("generating a service-account key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return sa, nil, fmt.Errorf("encoding a service-account key: %w", err)
	}
	var kid [20]byte
	rand.Read(kid[:])
	sa.PrivateKey = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	sa.PrivateKeyID = hex.EncodeToString(kid[:])
	sa.ClientID = fmt.Sprintf("10%019d", mrand.Uint64()%1e19)
	return sa, key, nil
}

// fillServiceAccount sets the fields that follow from the project and the token endpoint; a
// client_email already set is kept.
func fillServiceAccount(sa *serviceAccount, projectID, tokenURI string) {
	if sa.ClientEmail == "" {
		sa.ClientEmail = "firebase-adminsdk-sim@" + projectID + ".iam.gserviceaccount.com"
	}
	sa.Type, sa.ProjectID, sa.TokenURI = "service_account", projectID, tokenURI
	sa.AuthURI = "https://accounts.google.com/o/oauth2/auth"
	sa.AuthProviderX509CertURL = "https://www.googleapis.com/oauth2/v1/certs"
	sa.ClientX509CertURL = "https://www.googleapis.com/robot/v1/metadata/x509/" + sa.ClientEmail
	sa.UniverseDomain = "googleapis.com"
}

// serviceAccountKey reads a service account's private_key: RSA, PKCS#8 (what Google issues) or
// PKCS#1, in PEM.
func serviceAccountKey(sa serviceAccount) (*rsa.PrivateKey, error) {
	b, _ := pem.Decode([]byte(sa.PrivateKey))
	if b == nil {
		return nil, errors.New("private_key is not PEM")
	}
	if key, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
		return key, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	key, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("private_key is not RSA")
	}
	return key, nil
}

func (s *fcmServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("POST /v1/projects/{project}/messages:send", s.send)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeGoogleError(w, 404, "NOT_FOUND", "The requested URL "+r.URL.Path+" was not found on this server.", "", 0)
	})
	return mux
}

// token is Google's OAuth2 token endpoint for the JWT-bearer grant: it checks the assertion's
// RS256 signature against the service account's key, its issuer, audience and lifetime.
func (s *fcmServer) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, 400, "invalid_request", "Could not parse the request body.")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != jwtBearerGrant {
		oauthError(w, 400, "unsupported_grant_type", "Invalid grant_type: "+gt)
		return
	}
	j, err := parseJWT(r.PostForm.Get("assertion"))
	if err != nil {
		oauthError(w, 400, "invalid_grant", "Invalid JWT: Failed to parse the assertion.")
		return
	}
	acct := s.account(j.Claims.Iss)
	if acct == nil {
		oauthError(w, 400, "invalid_grant", "Invalid JWT: the issuer is not a known service account.")
		return
	}
	if !j.verifyRS256(acct.pub) {
		oauthError(w, 400, "invalid_grant", "Invalid JWT Signature.")
		return
	}
	if j.Claims.Aud != s.tokenURI {
		oauthError(w, 400, "invalid_grant", "Invalid JWT: Failed audience check. The right audience is "+s.tokenURI)
		return
	}
	now := time.Now()
	iat, exp := time.Unix(int64(j.Claims.Iat), 0), time.Unix(int64(j.Claims.Exp), 0)
	if exp.Before(now) || iat.After(now.Add(5*time.Minute)) || exp.Sub(iat) > fcmTokenTTL {
		oauthError(w, 400, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
		return
	}
	tok := "ya29.c.sim" + randomHex(48)
	if s.nTokens.Add(1) > 100_000 {
		s.tokens.Clear() // clients refetch on 401; this only bounds memory
		s.nTokens.Store(0)
	}
	s.tokens.Store(tok, fcmAccessToken{exp: now.Add(fcmTokenTTL).Unix(), account: acct})
	writeJSON(w, 200, map[string]any{"access_token": tok, "expires_in": int(fcmTokenTTL.Seconds()) - 1, "token_type": "Bearer"})
}

// authorized accepts an access token from the token endpoint, or a self-signed service-account
// JWT (what Google's libraries send instead when configured for it), and returns the service
// account it was issued to (nil: neither).
func (s *fcmServer) authorized(authz string, now time.Time) *fcmAccount {
	bearer, ok := strings.CutPrefix(authz, "Bearer ")
	if !ok || bearer == "" {
		return nil
	}
	if t, ok := s.tokens.Load(bearer); ok {
		if t := t.(fcmAccessToken); now.Unix() < t.exp {
			return t.account
		}
		return nil
	}
	if strings.Count(bearer, ".") != 2 {
		return nil
	}
	j, err := parseJWT(bearer)
	if err != nil {
		return nil
	}
	acct := s.account(j.Claims.Iss)
	if acct == nil || !j.verifyRS256(acct.pub) || !now.Before(time.Unix(int64(j.Claims.Exp), 0)) {
		return nil
	}
	return acct
}

// fcmSendRequest is the body of messages:send, as far as the simulator checks it.
type fcmSendRequest struct {
	ValidateOnly bool `json:"validate_only"`
	Message      *struct {
		Token        string                     `json:"token"`
		Topic        string                     `json:"topic"`
		Condition    string                     `json:"condition"`
		Data         map[string]json.RawMessage `json:"data"`
		Notification json.RawMessage            `json:"notification"`
	} `json:"message"`
}

var (
	fcmTokenRE = regexp.MustCompile(`^[A-Za-z0-9_:.\-]+$`)
	fcmTopicRE = regexp.MustCompile(`^[a-zA-Z0-9\-_.~%]+$`)
)

// fcmFault is an FCM refusal: HTTP status, the canonical status and the FcmError code.
type fcmFault struct {
	code      int
	status    string
	errorCode string
	message   string
}

// checkFCMMessage validates the send request as FCM does and returns the recipient (token,
// /topics/name or the condition).
func checkFCMMessage(body []byte) (string, *fcmSendRequest, *fcmFault) {
	invalid := func(msg string) *fcmFault { return &fcmFault{400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", msg} }
	var req fcmSendRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return "", nil, invalid("Invalid JSON payload received. " + err.Error())
	}
	m := req.Message
	if m == nil {
		return "", nil, invalid("Request contains an invalid argument: message is required.")
	}
	n := 0
	for _, v := range []string{m.Token, m.Topic, m.Condition} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return "", nil, invalid("Exactly one of token, topic or condition must be specified.")
	}
	for k, v := range m.Data {
		if len(v) == 0 || v[0] != '"' {
			return "", nil, invalid(fmt.Sprintf("Invalid value at 'message.data[%s].value' (TYPE_STRING)", k))
		}
		if k == "from" || k == "notification" || k == "message_type" || strings.HasPrefix(k, "google.") || strings.HasPrefix(k, "gcm.") {
			return "", nil, invalid("Invalid data payload key: " + k)
		}
	}
	data, _ := json.Marshal(m.Data)
	if len(m.Data) > 0 && len(data)+len(m.Notification) > fcmMaxPayload {
		return "", nil, invalid("Request contains an invalid argument: message is too big.")
	}
	switch {
	case m.Token != "":
		if len(m.Token) > 4096 || !fcmTokenRE.MatchString(m.Token) {
			return "", nil, invalid("The registration token is not a valid FCM registration token")
		}
		return m.Token, &req, nil
	case m.Topic != "":
		topic := strings.TrimPrefix(m.Topic, "/topics/")
		if len(topic) > 900 || !fcmTopicRE.MatchString(topic) {
			return "", nil, invalid("Invalid topic name: " + m.Topic)
		}
		return "/topics/" + topic, &req, nil
	}
	return m.Condition, &req, nil
}

func (s *fcmServer) send(w http.ResponseWriter, r *http.Request) {
	received := time.Now()
	acct := s.authorized(r.Header.Get("Authorization"), received)
	if acct == nil {
		writeGoogleError(w, 401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", "", 0)
		return
	}
	// A token only sends to its own service account's project, whichever projects exist.
	project := r.PathValue("project")
	if project != acct.projectID {
		writeGoogleError(w, 403, "PERMISSION_DENIED", fmt.Sprintf("Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/%s' (or it may not exist).", project), "", 0)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		writeGoogleError(w, 413, "INVALID_ARGUMENT", "Request payload too large.", "INVALID_ARGUMENT", 0)
		return
	}
	rec := &Record{ReceivedAt: received, Payload: jsonPayload(body),
		Headers: map[string]string{"sim-project-id": project, "sim-client-email": acct.clientEmail}}
	for _, k := range []string{"X-Firebase-Client", "X-Goog-Api-Format-Version"} {
		if v := r.Header.Get(k); v != "" {
			rec.Headers[strings.ToLower(k)] = v
		}
	}
	answer := func(f *fcmFault, retryAfter int) {
		rec.Status, rec.Error = f.code, orDefault(f.errorCode, f.status)
		s.records.Add(rec)
		writeGoogleError(w, f.code, f.status, f.message, f.errorCode, retryAfter)
	}
	if err := s.faults.Wait(r.Context()); err != nil {
		return
	}
	to, req, fault := checkFCMMessage(body)
	rec.To = to
	if req != nil && req.ValidateOnly {
		rec.Headers["validate_only"] = "true"
	}
	switch d := s.faults.Decide(); d.Kind {
	case Outage:
		answer(&fcmFault{503, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable."}, d.RetryAfter)
		return
	case RateLimited:
		answer(&fcmFault{429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded for quota metric 'Send requests' of service 'fcm.googleapis.com'."}, d.RetryAfter)
		return
	case ServerError:
		if d.Status == 503 {
			answer(&fcmFault{503, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable."}, d.RetryAfter)
		} else {
			answer(&fcmFault{500, "INTERNAL", "INTERNAL", "Internal error encountered."}, 0)
		}
		return
	}
	if fault != nil {
		answer(fault, 0)
		return
	}
	switch s.faults.Recipient(to) {
	case RecipientUnregistered:
		answer(&fcmFault{404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found."}, 0)
		return
	case RecipientInvalid:
		answer(&fcmFault{400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token"}, 0)
		return
	}
	// A dry run answers the fixed name FCM uses for it.
	id := "fake_message_id"
	if !req.ValidateOnly {
		id = fmt.Sprintf("0:%d%%%016x", received.UnixMicro(), mrand.Uint64())
	}
	name := "projects/" + project + "/messages/" + id
	rec.ID, rec.Status = name, 200
	s.records.Add(rec)
	writeJSON(w, 200, map[string]string{"name": name})
}

// googleErrorBody is Google's API error shape; FCM adds an FcmError detail with its own code,
// which is what the Admin SDK's messaging.IsUnregistered and friends look at.
type googleErrorBody struct {
	Error struct {
		Code    int              `json:"code"`
		Message string           `json:"message"`
		Status  string           `json:"status"`
		Details []map[string]any `json:"details,omitempty"`
	} `json:"error"`
}

func writeGoogleError(w http.ResponseWriter, code int, status, msg, fcmCode string, retryAfter int) {
	var b googleErrorBody
	b.Error.Code, b.Error.Message, b.Error.Status = code, msg, status
	if fcmCode != "" {
		b.Error.Details = []map[string]any{{"@type": fcmErrorType, "errorCode": fcmCode}}
	}
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	writeJSON(w, code, b)
}

func oauthError(w http.ResponseWriter, code int, errCode, desc string) {
	writeJSON(w, code, map[string]string{"error": errCode, "error_description": desc})
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}
