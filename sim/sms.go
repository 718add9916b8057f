package sim

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/herald-notify/herald/platform/wire"
)

const (
	twilioAPIVersion = "2010-04-01"
	// Twilio refuses bodies over 1600 characters (10 concatenated segments).
	twilioMaxBody = 1600
)

// smsServer is a Twilio-compatible Messages API: POST
// /2010-04-01/Accounts/{AccountSid}/Messages.json, form-encoded, HTTP basic auth with the
// account SID and auth token. It also posts status callbacks (sent, then delivered; or
// undelivered with ErrorCode 30005 for an undeliverable number) like Twilio, signed with
// X-Twilio-Signature.
type smsServer struct {
	cfg       SMSConfig
	accountMu sync.RWMutex
	accounts  map[string]string // account SID -> auth token; only ever added to
	records   *Ring
	faults    *Injector
	log       *slog.Logger
	callbacks chan smsCallback
	// droppedCallbacks counts callbacks not sent because the queue was full.
	droppedCallbacks atomic.Int64
	client           *http.Client
}

type smsCallback struct {
	url    string
	params url.Values
	// authToken signs it: the token of the account that sent the message.
	authToken string
}

func newSMSServer(cfg SMSConfig, records *Ring, faults *Injector, log *slog.Logger) *smsServer {
	return &smsServer{cfg: cfg, records: records, faults: faults, log: log,
		accounts:  map[string]string{cfg.AccountSID: cfg.AuthToken},
		callbacks: make(chan smsCallback, 4096), client: &http.Client{Timeout: 5 * time.Second}}
}

// addAccount lets sid send with authToken. A SID already known keeps its token.
func (s *smsServer) addAccount(sid, authToken string) bool {
	s.accountMu.Lock()
	defer s.accountMu.Unlock()
	if _, dup := s.accounts[sid]; dup {
		return false
	}
	s.accounts[sid] = authToken
	return true
}

func (s *smsServer) hasAccount(sid string) bool {
	s.accountMu.RLock()
	defer s.accountMu.RUnlock()
	_, ok := s.accounts[sid]
	return ok
}

// authenticate checks HTTP basic credentials: the user is an account SID, the password its
// auth token. It returns the account SID and its token.
func (s *smsServer) authenticate(r *http.Request) (sid, authToken string, ok bool) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return "", "", false
	}
	s.accountMu.RLock()
	want, known := s.accounts[user]
	s.accountMu.RUnlock()
	if !known || subtle.ConstantTimeCompare([]byte(pass), []byte(want)) != 1 {
		return "", "", false
	}
	return user, want, true
}

func (s *smsServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2010-04-01/Accounts/{sid}/Messages.json", s.create)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		twilioFail(w, &twilioError{Code: 20404, Status: 404, Message: "The requested resource " + r.URL.Path + " was not found"}, 0)
	})
	return mux
}

// twilioError is Twilio's error body.
type twilioError struct {
	Code     int    `json:"code"`
	Message  string `json:"message"`
	MoreInfo string `json:"more_info"`
	Status   int    `json:"status"`
}

func twilioFail(w http.ResponseWriter, e *twilioError, retryAfter int) {
	e.MoreInfo = "https://www.twilio.com/docs/errors/" + strconv.Itoa(e.Code)
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	if e.Status == 401 {
		w.Header().Set("WWW-Authenticate", `Basic realm="Twilio API"`)
	}
	writeJSON(w, e.Status, e)
}

// smsRequest is a decoded Messages.json form.
type smsRequest struct {
	To, From, Body, StatusCallback, MessagingServiceSid string
}

var (
	e164RE      = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	shortCodeRE = regexp.MustCompile(`^[0-9]{3,6}$`)
	// Alphanumeric sender ids: up to 11 characters, at least one letter.
	alphaSenderRE = regexp.MustCompile(`^[A-Za-z0-9 ]{1,11}$`)
	serviceSIDRE  = regexp.MustCompile(`^MG[0-9a-f]{32}$`)
)

// decodeSMSForm checks a Messages.json form as Twilio does. Pure, so it is fuzzed on its own.
func decodeSMSForm(form url.Values) (smsRequest, *twilioError) {
	req := smsRequest{
		To: strings.TrimSpace(form.Get("To")), From: strings.TrimSpace(form.Get("From")), Body: form.Get("Body"),
		StatusCallback: form.Get("StatusCallback"), MessagingServiceSid: form.Get("MessagingServiceSid"),
	}
	bad := func(code int, msg string) (smsRequest, *twilioError) {
		return req, &twilioError{Code: code, Message: msg, Status: 400}
	}
	if req.To == "" {
		return bad(21604, "A 'To' phone number is required.")
	}
	if !e164RE.MatchString(req.To) {
		return bad(21211, "Invalid 'To' Phone Number: "+req.To)
	}
	switch {
	case req.From == "" && req.MessagingServiceSid == "":
		return bad(21603, "A 'From' phone number is required.")
	case req.From == "":
		if !serviceSIDRE.MatchString(req.MessagingServiceSid) {
			return bad(21701, "The Messaging Service Sid "+req.MessagingServiceSid+" is invalid.")
		}
	case !e164RE.MatchString(req.From) && !shortCodeRE.MatchString(req.From) &&
		!(alphaSenderRE.MatchString(req.From) && strings.ContainsAny(strings.ToLower(req.From), "abcdefghijklmnopqrstuvwxyz")):
		return bad(21212, "Invalid 'From' Phone Number: "+req.From)
	}
	if req.Body == "" && form.Get("MediaUrl") == "" {
		return bad(21602, "Message body is required.")
	}
	if !utf8.ValidString(req.Body) {
		return bad(21602, "Message body must be valid UTF-8.")
	}
	if utf8.RuneCountInString(req.Body) > twilioMaxBody {
		return bad(21617, "The concatenated message body exceeds the 1600 character limit.")
	}
	if req.StatusCallback != "" {
		u, err := url.Parse(req.StatusCallback)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad(21609, "Invalid StatusCallback url: "+req.StatusCallback)
		}
	}
	return req, nil
}

// segments counts SMS segments: GSM-7 fits 160 characters (153 when concatenated), anything
// else is UCS-2 at 70 (67). ASCII stands in for the GSM-7 alphabet here.
func segments(body string) int {
	per, single := 153, 160
	for _, r := range body {
		if r > 127 {
			per, single = 67, 70
			break
		}
	}
	n := utf8.RuneCountInString(body)
	if n <= single {
		return 1
	}
	return (n + per - 1) / per
}

func (s *smsServer) create(w http.ResponseWriter, r *http.Request) {
	received := time.Now()
	account, authToken, ok := s.authenticate(r)
	if !ok {
		twilioFail(w, &twilioError{Code: 20003, Message: "Authenticate", Status: 401}, 0)
		return
	}
	// Credentials only reach their own account's resources; another account's are not found.
	if sid := r.PathValue("sid"); sid != account {
		twilioFail(w, &twilioError{Code: 20404, Message: "The requested resource /2010-04-01/Accounts/" + sid + "/Messages.json was not found", Status: 404}, 0)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		twilioFail(w, &twilioError{Code: 20001, Message: "Could not parse the request body", Status: 400}, 0)
		return
	}
	payload, _ := json.Marshal(r.PostForm)
	rec := &Record{To: strings.TrimSpace(r.PostForm.Get("To")), ReceivedAt: received, Payload: payload,
		Headers: map[string]string{"sim-account-sid": account}}
	answer := func(e *twilioError, retryAfter int) {
		rec.Status, rec.Error = e.Status, strconv.Itoa(e.Code)
		s.records.Add(rec)
		twilioFail(w, e, retryAfter)
	}
	if err := s.faults.Wait(r.Context()); err != nil {
		return
	}
	switch d := s.faults.Decide(); d.Kind {
	case Outage:
		answer(&twilioError{Code: 20503, Message: "Service unavailable", Status: 503}, d.RetryAfter)
		return
	case RateLimited:
		answer(&twilioError{Code: 20429, Message: "Too Many Requests", Status: 429}, d.RetryAfter)
		return
	case ServerError:
		if d.Status == 503 {
			answer(&twilioError{Code: 20503, Message: "Service unavailable", Status: 503}, d.RetryAfter)
		} else {
			answer(&twilioError{Code: 20500, Message: "Internal Server Error", Status: 500}, 0)
		}
		return
	}
	req, terr := decodeSMSForm(r.PostForm)
	if terr != nil {
		answer(terr, 0)
		return
	}
	fault := s.faults.Recipient(req.To)
	switch fault {
	case RecipientUnregistered:
		answer(&twilioError{Code: 21610, Message: "Attempt to send to unsubscribed recipient", Status: 400}, 0)
		return
	case RecipientInvalid:
		answer(&twilioError{Code: 21211, Message: "Invalid 'To' Phone Number: " + req.To, Status: 400}, 0)
		return
	}
	sid := "SM" + randomHex(32)
	rec.ID, rec.Status = sid, 201
	s.records.Add(rec)

	date := received.UTC().Format(time.RFC1123Z)
	uri := "/2010-04-01/Accounts/" + account + "/Messages/" + sid
	var from, service any = req.From, nil
	if req.From == "" {
		from, service = nil, req.MessagingServiceSid
	}
	writeJSON(w, 201, map[string]any{
		"account_sid": account, "api_version": twilioAPIVersion, "body": req.Body,
		"date_created": date, "date_updated": date, "date_sent": nil, "direction": "outbound-api",
		"error_code": nil, "error_message": nil, "from": from, "messaging_service_sid": service,
		"num_media": "0", "num_segments": strconv.Itoa(segments(req.Body)), "price": nil, "price_unit": "USD",
		"sid": sid, "status": "queued", "to": req.To, "uri": uri + ".json",
		"subresource_uris": map[string]string{"media": uri + "/Media.json"},
	})
	if req.StatusCallback != "" {
		final := "delivered"
		if fault == RecipientUndeliverable {
			final = "undelivered"
		}
		for _, status := range []string{"sent", final} {
			p := url.Values{"MessageSid": {sid}, "SmsSid": {sid}, "AccountSid": {account}, "From": {req.From},
				"To": {req.To}, "MessageStatus": {status}, "SmsStatus": {status}, "ApiVersion": {twilioAPIVersion}}
			if status == "undelivered" {
				p.Set("ErrorCode", "30005") // unknown destination handset
			}
			select {
			case s.callbacks <- smsCallback{url: req.StatusCallback, params: p, authToken: authToken}:
			default:
				s.droppedCallbacks.Add(1)
			}
		}
	}
}

// runCallbacks posts queued status callbacks in order until ctx ends. Failures are logged and
// dropped: Twilio does not retry status callbacks either.
func (s *smsServer) runCallbacks(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case cb := <-s.callbacks:
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, cb.url, strings.NewReader(cb.params.Encode()))
			if err != nil {
				continue
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Twilio-Signature", TwilioSignature(cb.authToken, cb.url, cb.params))
			resp, err := s.client.Do(req)
			if err != nil {
				s.log.Debug("sms status callback failed", "url", cb.url, "err", err)
				continue
			}
			resp.Body.Close()
		}
	}
}

// TwilioSignature is Twilio's request signature (wire.TwilioSignature).
func TwilioSignature(authToken, u string, params url.Values) string {
	return wire.TwilioSignature(authToken, u, params)
}
