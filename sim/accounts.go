package sim

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"sync"

	"github.com/herald-notify/herald/platform/apierr"
)

// The admin API makes provider accounts at run time, beside the configured ones, so a test can
// give each app its own credentials and check that one app's never send another's messages:
//
//	POST /sim/apns/keys         {"team_id"?}    201 apnsKeyAccount: a new .p8 and key id
//	POST /sim/fcm/projects      {"project_id"}  201 serviceAccount: the project's key file
//	POST /sim/smtp/accounts     {"username"?}   201 smtpAccount
//	POST /sim/twilio/accounts                   201 twilioAccount
//
// They are kept in <dir>/accounts.json (0600, rewritten whole and renamed into place), and a
// simulator started on the same directory accepts them again.

// accountsFile is what accounts.json holds: the accounts made over the admin API, oldest
// first, exactly as they were answered.
type accountsFile struct {
	APNsKeys        []apnsKeyAccount `json:"apns_keys,omitempty"`
	ServiceAccounts []serviceAccount `json:"fcm_service_accounts,omitempty"`
	SMTPAccounts    []smtpAccount    `json:"smtp_accounts,omitempty"`
	TwilioAccounts  []twilioAccount  `json:"twilio_accounts,omitempty"`
}

// apnsKeyAccount is a provider-token signing key: Key is the .p8 Apple lets a team download
// (PKCS#8 EC P-256 in PEM).
type apnsKeyAccount struct {
	TeamID string `json:"team_id"`
	KeyID  string `json:"key_id"`
	Key    string `json:"key"`
}

type smtpAccount struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type twilioAccount struct {
	AccountSID string `json:"account_sid"`
	AuthToken  string `json:"auth_token"`
}

// accountStore keeps the made accounts on disk. Its lock also serialises making them, so an id
// is checked for uniqueness and taken in one step.
type accountStore struct {
	path string
	mu   sync.Mutex
	data accountsFile
}

func loadAccountStore(path string) (*accountStore, error) {
	st := &accountStore{path: path}
	raw, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return st, nil
	case err != nil:
		return nil, fmt.Errorf("reading accounts: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st.data); err != nil {
		return nil, fmt.Errorf("accounts %s: %w", path, err)
	}
	return st, nil
}

// save writes next to disk and keeps it once it is there. Callers hold mu.
func (st *accountStore) save(next accountsFile) error {
	out, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding accounts: %w", err)
	}
	if err := writeFile(st.path, append(out, '\n'), 0o600); err != nil {
		return err
	}
	st.data = next
	return nil
}

// restoreAccounts gives each simulator the accounts made before a restart. One whose id the
// configuration now uses is skipped: the configured account wins.
func (s *Sim) restoreAccounts() error {
	d := s.accounts.data
	skip := func(kind, id string) {
		s.log.Warn("account kept in accounts.json clashes with the config; skipped", "kind", kind, "id", id)
	}
	for _, a := range d.APNsKeys {
		key, err := parseP8([]byte(a.Key))
		if err != nil {
			return fmt.Errorf("accounts %s: APNs key %s: %w", s.accounts.path, a.KeyID, err)
		}
		if !s.apns.addKey(apnsKey{teamID: a.TeamID, keyID: a.KeyID, pub: &key.PublicKey}) {
			skip("apns key", a.KeyID)
		}
	}
	for _, sa := range d.ServiceAccounts {
		key, err := serviceAccountKey(sa)
		if err != nil {
			return fmt.Errorf("accounts %s: service account %s: %w", s.accounts.path, sa.ClientEmail, err)
		}
		if !s.fcm.addAccount(sa.ProjectID, sa.ClientEmail, &key.PublicKey) {
			skip("fcm project", sa.ProjectID)
		}
	}
	for _, a := range d.SMTPAccounts {
		if !s.smtp.addUser(a.Username, a.Password) {
			skip("smtp user", a.Username)
		}
	}
	for _, a := range d.TwilioAccounts {
		if !s.sms.addAccount(a.AccountSID, a.AuthToken) {
			skip("twilio account", a.AccountSID)
		}
	}
	return nil
}

// errAccountExists is a requested id some account already has.
var errAccountExists = errors.New("already exists")

// newAPNsKey makes a signing key for teamID under a fresh key id.
func (s *Sim) newAPNsKey(teamID string) (apnsKeyAccount, error) {
	key, p8, err := newP8()
	if err != nil {
		return apnsKeyAccount{}, err
	}
	s.accounts.mu.Lock()
	defer s.accounts.mu.Unlock()
	keyID := randomAppleID()
	for _, taken := s.apns.key(keyID); taken; _, taken = s.apns.key(keyID) {
		keyID = randomAppleID()
	}
	a := apnsKeyAccount{TeamID: teamID, KeyID: keyID, Key: string(p8)}
	next := s.accounts.data
	next.APNsKeys = append(next.APNsKeys[:len(next.APNsKeys):len(next.APNsKeys)], a)
	if err := s.accounts.save(next); err != nil {
		return apnsKeyAccount{}, err
	}
	s.apns.addKey(apnsKey{teamID: teamID, keyID: keyID, pub: &key.PublicKey})
	return a, nil
}

// newServiceAccount makes projectID and a service account of it that gets tokens from this
// simulator's token endpoint.
func (s *Sim) newServiceAccount(projectID string) (serviceAccount, error) {
	if s.fcm.hasProject(projectID) { // spares making a key for nothing; checked again below
		return serviceAccount{}, errAccountExists
	}
	sa, key, err := newServiceAccountKey()
	if err != nil {
		return serviceAccount{}, err
	}
	fillServiceAccount(&sa, projectID, s.fcm.tokenURI)
	s.accounts.mu.Lock()
	defer s.accounts.mu.Unlock()
	if s.fcm.hasProject(projectID) || s.fcm.account(sa.ClientEmail) != nil {
		return serviceAccount{}, errAccountExists
	}
	next := s.accounts.data
	next.ServiceAccounts = append(next.ServiceAccounts[:len(next.ServiceAccounts):len(next.ServiceAccounts)], sa)
	if err := s.accounts.save(next); err != nil {
		return serviceAccount{}, err
	}
	s.fcm.addAccount(projectID, sa.ClientEmail, &key.PublicKey)
	return sa, nil
}

// newSMTPAccount makes a login for username ("": a generated one) with a generated password.
func (s *Sim) newSMTPAccount(username string) (smtpAccount, error) {
	s.accounts.mu.Lock()
	defer s.accounts.mu.Unlock()
	if username == "" {
		username = "sim-" + randomHex(12)
		for s.smtp.hasUser(username) {
			username = "sim-" + randomHex(12)
		}
	} else if s.smtp.hasUser(username) {
		return smtpAccount{}, errAccountExists
	}
	a := smtpAccount{Username: username, Password: randomHex(32)}
	next := s.accounts.data
	next.SMTPAccounts = append(next.SMTPAccounts[:len(next.SMTPAccounts):len(next.SMTPAccounts)], a)
	if err := s.accounts.save(next); err != nil {
		return smtpAccount{}, err
	}
	s.smtp.addUser(a.Username, a.Password)
	return a, nil
}

// newTwilioAccount makes an account SID and its auth token.
func (s *Sim) newTwilioAccount() (twilioAccount, error) {
	s.accounts.mu.Lock()
	defer s.accounts.mu.Unlock()
	sid := "AC" + randomHex(32)
	for s.sms.hasAccount(sid) {
		sid = "AC" + randomHex(32)
	}
	a := twilioAccount{AccountSID: sid, AuthToken: randomHex(32)}
	next := s.accounts.data
	next.TwilioAccounts = append(next.TwilioAccounts[:len(next.TwilioAccounts):len(next.TwilioAccounts)], a)
	if err := s.accounts.save(next); err != nil {
		return twilioAccount{}, err
	}
	s.sms.addAccount(a.AccountSID, a.AuthToken)
	return a, nil
}

const appleIDChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// randomAppleID is 10 upper-case letters or digits, like Apple's key and team ids.
func randomAppleID() string {
	var b [10]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = appleIDChars[int(b[i])%len(appleIDChars)]
	}
	return string(b[:])
}

// smtpUserRE is what a made SMTP user name may be: no spaces or NULs, which AUTH PLAIN and
// LOGIN could not carry.
var smtpUserRE = regexp.MustCompile(`^[A-Za-z0-9._@+-]{1,64}$`)

func (s *Sim) adminCreateAPNsKey(w http.ResponseWriter, r *http.Request) {
	var req struct {
		TeamID string `json:"team_id"`
	}
	if !decodeAdminBody(w, r, &req) {
		return
	}
	if req.TeamID == "" {
		req.TeamID = s.cfg.APNs.TeamID
	}
	if !appleIDRE.MatchString(req.TeamID) {
		apierr.Write(w, 400, "invalid_argument", "team_id must be 10 upper-case letters or digits, like an Apple team id", "team_id")
		return
	}
	a, err := s.newAPNsKey(req.TeamID)
	if err != nil {
		s.accountFailed(w, "apns", err)
		return
	}
	s.log.Info("account created", "sim", "apns", "team_id", a.TeamID, "key_id", a.KeyID)
	writeJSON(w, 201, a)
}

func (s *Sim) adminCreateFCMProject(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ProjectID string `json:"project_id"`
	}
	if !decodeAdminBody(w, r, &req) {
		return
	}
	if !gcpProjectRE.MatchString(req.ProjectID) {
		apierr.Write(w, 400, "invalid_argument", "project_id must be 6-30 lower-case letters, digits or hyphens, starting with a letter", "project_id")
		return
	}
	sa, err := s.newServiceAccount(req.ProjectID)
	if errors.Is(err, errAccountExists) {
		apierr.Write(w, 409, "already_exists", "project "+strconv.Quote(req.ProjectID)+" already exists", "project_id")
		return
	}
	if err != nil {
		s.accountFailed(w, "fcm", err)
		return
	}
	s.log.Info("account created", "sim", "fcm", "project_id", sa.ProjectID, "client_email", sa.ClientEmail)
	writeJSON(w, 201, sa)
}

func (s *Sim) adminCreateSMTPAccount(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username string `json:"username"`
	}
	if !decodeAdminBody(w, r, &req) {
		return
	}
	if req.Username != "" && !smtpUserRE.MatchString(req.Username) {
		apierr.Write(w, 400, "invalid_argument", "username must be 1-64 letters, digits or . _ @ + -", "username")
		return
	}
	a, err := s.newSMTPAccount(req.Username)
	if errors.Is(err, errAccountExists) {
		apierr.Write(w, 409, "already_exists", "user "+strconv.Quote(req.Username)+" already exists", "username")
		return
	}
	if err != nil {
		s.accountFailed(w, "smtp", err)
		return
	}
	s.log.Info("account created", "sim", "smtp", "username", a.Username)
	writeJSON(w, 201, a)
}

func (s *Sim) adminCreateTwilioAccount(w http.ResponseWriter, r *http.Request) {
	var req struct{}
	if !decodeAdminBody(w, r, &req) {
		return
	}
	a, err := s.newTwilioAccount()
	if err != nil {
		s.accountFailed(w, "sms", err)
		return
	}
	s.log.Info("account created", "sim", "sms", "account_sid", a.AccountSID)
	writeJSON(w, 201, a)
}

func (s *Sim) accountFailed(w http.ResponseWriter, sim string, err error) {
	s.log.Error("creating an account", "sim", sim, "err", err)
	apierr.Write(w, 500, "internal", "creating the account: "+err.Error(), "")
}

// decodeAdminBody reads an optional JSON object into dst: an empty body leaves dst as it is;
// unknown fields, anything after the object or over 64 KiB are refused (400, answered here).
func decodeAdminBody(w http.ResponseWriter, r *http.Request, dst any) bool {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		apierr.Write(w, 400, "invalid_argument", "body: "+err.Error(), "")
		return false
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		apierr.Write(w, 400, "invalid_argument", "body: "+err.Error(), "")
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		apierr.Write(w, 400, "invalid_argument", "body: one JSON object expected", "")
		return false
	}
	return true
}
