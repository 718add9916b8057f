package sim

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// smtpServer is an SMTP submission server: STARTTLS with the local CA, AUTH PLAIN and LOGIN with
// the configured account or one made over the admin API, and replies a real MTA would give for
// faults.
type smtpServer struct {
	cfg     SMTPConfig
	usersMu sync.RWMutex
	users   map[string]string // user name -> password; only ever added to
	srv     *smtp.Server
	records *Ring
	faults  *Injector
	log     *slog.Logger
	ctx     context.Context // ends at shutdown, so injected latency does not hold it up
	dkim    *dkimReceiver   // checks arriving signatures against the sender key the simulator made
	events  *eventPoster    // posts SendGrid events for each mail taken (nil: off)
}

func newSMTPServer(cfg SMTPConfig, tlsConfig *tls.Config, records *Ring, faults *Injector, log *slog.Logger) *smtpServer {
	s := &smtpServer{cfg: cfg, records: records, faults: faults, log: log, ctx: context.Background(),
		users: map[string]string{cfg.Username: cfg.Password}}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &smtpSession{s: s}, nil
	}))
	srv.Domain = cfg.Domain
	srv.TLSConfig = tlsConfig
	srv.AllowInsecureAuth = cfg.AllowInsecureAuth
	srv.MaxMessageBytes = int64(cfg.MaxMessageBytes)
	srv.MaxRecipients = 100
	srv.ReadTimeout, srv.WriteTimeout = time.Minute, time.Minute
	srv.ErrorLog = smtpLog{log}
	s.srv = srv
	return s
}

// addUser lets user log in with password. A user name already known keeps its password.
func (s *smtpServer) addUser(user, password string) bool {
	s.usersMu.Lock()
	defer s.usersMu.Unlock()
	if _, dup := s.users[user]; dup {
		return false
	}
	s.users[user] = password
	return true
}

func (s *smtpServer) hasUser(user string) bool {
	s.usersMu.RLock()
	defer s.usersMu.RUnlock()
	_, ok := s.users[user]
	return ok
}

// checkLogin reports whether user and password are an account's.
func (s *smtpServer) checkLogin(user, password string) bool {
	s.usersMu.RLock()
	want, ok := s.users[user]
	s.usersMu.RUnlock()
	return ok && subtle.ConstantTimeCompare([]byte(password), []byte(want)) == 1
}

// run serves until ctx ends, then lets open sessions finish for up to drain before closing them.
func (s *smtpServer) run(ctx context.Context, ln net.Listener, drain time.Duration) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.ctx = sctx
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()
	s.log.Info("smtp server listening", "server", "sim-smtp", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("sim-smtp: %w", err)
	case <-ctx.Done():
	}
	dctx, dcancel := context.WithTimeout(context.Background(), drain)
	defer dcancel()
	if err := s.srv.Shutdown(dctx); err != nil {
		s.srv.Close() // idle clients keep sessions open; cut them
	}
	return nil
}

type smtpLog struct{ log *slog.Logger }

func (l smtpLog) Printf(format string, v ...any) { l.log.Debug("smtp: " + fmt.Sprintf(format, v...)) }
func (l smtpLog) Println(v ...any)               { l.log.Debug("smtp: " + fmt.Sprintln(v...)) }

// smtpSession is one client's SMTP conversation.
type smtpSession struct {
	s      *smtpServer
	authed bool
	user   string // who logged in
	from   string
	rcpts  []string
}

var errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}

func (ss *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

func (ss *smtpSession) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if !ss.s.checkLogin(user, pass) {
			return smtp.ErrAuthFailed
		}
		ss.authed, ss.user = true, user
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return smtp.ErrAuthFailed
			}
			return check(user, pass)
		}), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// loginServer is the server side of AUTH LOGIN (go-sasl ships only the client): it asks for the
// user name, then the password, each base64 on its own line.
type loginServer struct {
	check func(user, pass string) error
	step  int
	user  string
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if response == nil { // no initial response: ask for the user name
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		l.user, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.user, string(response))
	}
	return nil, true, errors.New("unexpected response")
}

func (ss *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if !ss.authed {
		return errAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !ss.authed {
		return errAuthRequired
	}
	reject := func(code int, ec smtp.EnhancedCode, msg string) error {
		ss.s.records.Add(&Record{To: to, ReceivedAt: time.Now(), Status: code, Error: fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2]),
			Headers: map[string]string{"mail_from": ss.from, "sim-auth-user": ss.user}})
		return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: msg}
	}
	if _, err := mail.ParseAddress(to); err != nil {
		return reject(553, smtp.EnhancedCode{5, 1, 3}, "<"+to+">: Recipient address rejected: bad address syntax")
	}
	switch ss.s.faults.Recipient(to) {
	case RecipientUnregistered:
		return reject(550, smtp.EnhancedCode{5, 1, 1}, "<"+to+">: Recipient address rejected: User unknown in virtual mailbox table")
	case RecipientInvalid:
		return reject(550, smtp.EnhancedCode{5, 1, 3}, "<"+to+">: Recipient address rejected: invalid mailbox")
	case RecipientFull:
		return reject(452, smtp.EnhancedCode{4, 2, 2}, "<"+to+">: Recipient address rejected: mailbox full")
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

// Data takes the message. Faults are decided here, after the content arrived, the way a busy
// MTA defers at end of data; one record is kept per recipient.
func (ss *smtpSession) Data(r io.Reader) error {
	received := time.Now()
	raw, err := io.ReadAll(r)
	record := func(id string, code int, ec smtp.EnhancedCode, payload json.RawMessage, headers map[string]string) {
		if headers == nil {
			headers = map[string]string{}
		}
		headers["sim-auth-user"] = ss.user
		for _, to := range ss.rcpts {
			rec := &Record{ID: id, To: to, ReceivedAt: received, Status: code, Payload: payload, Headers: headers}
			if code >= 400 {
				rec.Error = fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
			}
			ss.s.records.Add(rec)
		}
	}
	var serr *smtp.SMTPError
	if errors.As(err, &serr) { // 552: over the SIZE limit
		record("", serr.Code, serr.EnhancedCode, nil, nil)
		return serr
	}
	if err != nil {
		return err
	}
	if err := ss.s.faults.Wait(ss.s.ctx); err != nil {
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down"}
	}
	fail := func(code int, ec smtp.EnhancedCode, msg string) error {
		record("", code, ec, nil, nil)
		return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: msg}
	}
	switch d := ss.s.faults.Decide(); {
	case d.Kind == Outage || d.Kind == ServerError && d.Status == 503:
		return fail(421, smtp.EnhancedCode{4, 3, 2}, "Service not available, try again later")
	case d.Kind == RateLimited:
		return fail(451, smtp.EnhancedCode{4, 7, 1}, "Rate limit exceeded, try again later")
	case d.Kind == ServerError:
		return fail(451, smtp.EnhancedCode{4, 3, 0}, "Local error in processing, try again later")
	}
	msg, headers := parseMail(ss.from, ss.rcpts, raw)
	// What a receiving MTA adds as Authentication-Results: the DKIM verdict, and which header
	// fields the signature covers.
	if ss.s.dkim != nil {
		headers["dkim"], headers["dkim-signed-headers"] = ss.s.dkim.verify(raw)
	}
	if headers["dkim-signed-headers"] == "" {
		delete(headers, "dkim-signed-headers")
	}
	id := strings.ToUpper(randomHex(12))
	record(id, 250, smtp.EnhancedCode{2, 0, 0}, msg, headers)
	if ss.s.events != nil {
		args := uniqueArgs(raw)
		for _, to := range ss.rcpts {
			ss.s.events.mailTaken(to, id, headers["message-id"], args, ss.s.faults.Recipient(to))
		}
	}
	// go-smtp writes an *SMTPError's code and text as the reply; this is how the queue id, which
	// senders log to trace a message, gets into the 250 reply.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + id}
}

func (ss *smtpSession) Reset() { ss.from, ss.rcpts = "", nil }

func (ss *smtpSession) Logout() error { return nil }

// smtpMessage is a stored mail: envelope and the parts a test asserts on.
type smtpMessage struct {
	MailFrom  string   `json:"mail_from"`
	RcptTo    []string `json:"rcpt_to"`
	From      string   `json:"from,omitempty"`
	To        string   `json:"to,omitempty"`
	Subject   string   `json:"subject,omitempty"`
	MessageID string   `json:"message_id,omitempty"`
	Body      string   `json:"body"`
}

// parseMail reads the headers and body; a single-part body is decoded from quoted-printable or
// base64, a multipart one is kept as sent.
func parseMail(from string, rcpts []string, raw []byte) (json.RawMessage, map[string]string) {
	m := smtpMessage{MailFrom: from, RcptTo: rcpts}
	headers := map[string]string{}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		m.Body = string(raw)
	} else {
		dec := new(mime.WordDecoder)
		get := func(k string) string {
			v := msg.Header.Get(k)
			if d, err := dec.DecodeHeader(v); err == nil {
				return d
			}
			return v
		}
		m.From, m.To, m.Subject, m.MessageID = get("From"), get("To"), get("Subject"), msg.Header.Get("Message-Id")
		for _, k := range []string{"From", "Subject", "Message-Id", "Content-Type", "List-Unsubscribe", "List-Unsubscribe-Post", "X-Smtpapi"} {
			if v := get(k); v != "" {
				headers[strings.ToLower(k)] = v
			}
		}
		var body io.Reader = msg.Body
		switch strings.ToLower(msg.Header.Get("Content-Transfer-Encoding")) {
		case "quoted-printable":
			body = quotedprintable.NewReader(body)
		case "base64":
			body = base64.NewDecoder(base64.StdEncoding, newlineStripper{body})
		}
		b, err := io.ReadAll(body)
		if err != nil {
			b, _ = io.ReadAll(msg.Body)
		}
		m.Body = string(b)
	}
	out, _ := json.Marshal(m)
	return out, headers
}

// newlineStripper drops CR and LF, which base64 bodies wrap with.
type newlineStripper struct{ r io.Reader }

func (n newlineStripper) Read(p []byte) (int, error) {
	for {
		k, err := n.r.Read(p)
		j := 0
		for _, c := range p[:k] {
			if c != '\r' && c != '\n' {
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}
