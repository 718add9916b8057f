// Package audit is a region's tamper-evident record of the gateway's routing decisions. Entries
// form one hash chain per region: each entry's hash covers the previous entry's hash and every
// field of the entry, and a head row records the last (seq, hash), so Verify finds a changed,
// removed or inserted entry and a truncated tail. Users are named only by their user key
// (residency.UserKey), never by id.
package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Reasons of a routing decision. A failover's reason names the home region it left:
// "failover-from-eu-west-1".
const (
	ReasonHome         = "home"
	ReasonRedirect     = "redirect"
	ReasonRefused      = "refused"
	ReasonFailoverFrom = "failover-from-"
	// ReasonRefusedNotResident is a region's own entry: it refused a request naming a user who
	// is not a registered resident of its jurisdiction (Region is the refusing region; the user
	// is not named: UserKey is 64 zeros).
	ReasonRefusedNotResident = "refused-not-resident"
)

// Entry is one routing decision. The gateway chooses ID, so a retried batch is recognised; Seq,
// PrevHash and Hash are set by the region when it appends the entry.
type Entry struct {
	ID            string
	At            time.Time
	App           string
	UserKey       string
	Jurisdiction  string
	Region        string // the region chosen; empty when the request was refused
	Reason        string
	PolicyVersion int64
	RequestID     string

	Seq      int64
	PrevHash []byte
	Hash     []byte
}

var (
	appRE          = regexp.MustCompile(`^[A-Za-z0-9_.:@+-]{1,128}$`)
	userKeyRE      = regexp.MustCompile(`^[0-9a-f]{64}$`)
	jurisdictionRE = regexp.MustCompile(`^[A-Z]{2,8}$`)
	regionRE       = regexp.MustCompile(`^[a-z]{2}-[a-z]+-[0-9]$`)
	requestIDRE    = regexp.MustCompile(`^[\x21-\x7e]{1,128}$`)
)

// FieldError names the field of an entry that is wrong, by its JSON name.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Validate checks every field the gateway sets.
func (e Entry) Validate() *FieldError {
	bad := func(field, reason string) *FieldError { return &FieldError{Field: field, Reason: reason} }
	if u, err := uuid.Parse(e.ID); err != nil || u.String() != e.ID {
		return bad("id", "must be a UUID in its canonical lowercase form")
	}
	if e.At.IsZero() {
		return bad("at", "is required (RFC 3339)")
	}
	if !appRE.MatchString(e.App) {
		return bad("app", "must match "+appRE.String())
	}
	if !userKeyRE.MatchString(e.UserKey) {
		return bad("user_key", "must be the user key: 64 lowercase hex digits")
	}
	if !jurisdictionRE.MatchString(e.Jurisdiction) {
		return bad("jurisdiction", "must be a jurisdiction code like EU")
	}
	if e.Region != "" && !regionRE.MatchString(e.Region) {
		return bad("region", "must be a region name like eu-west-1, or empty when refused")
	}
	switch {
	case e.Reason == ReasonHome:
		if e.Region == "" {
			return bad("region", "is required when the reason is home")
		}
	case strings.HasPrefix(e.Reason, ReasonFailoverFrom):
		if !regionRE.MatchString(strings.TrimPrefix(e.Reason, ReasonFailoverFrom)) {
			return bad("reason", "failover-from- must be followed by a region name")
		}
		if e.Region == "" {
			return bad("region", "is required on a failover")
		}
	case e.Reason == ReasonRefused:
		if e.Region != "" {
			return bad("region", "must be empty when the request was refused")
		}
	case e.Reason == ReasonRedirect:
	case e.Reason == ReasonRefusedNotResident:
		if e.Region == "" {
			return bad("region", "is required: the region that refused")
		}
	default:
		return bad("reason", "must be home, failover-from-<region>, redirect, refused or refused-not-resident")
	}
	if e.PolicyVersion < 0 {
		return bad("policy_version", "must not be negative")
	}
	if !requestIDRE.MatchString(e.RequestID) {
		return bad("request_id", "must be 1-128 printable ASCII characters without spaces")
	}
	return nil
}

// Postgres keeps timestamps to the microsecond; the hash covers the stored value, so an entry
// is normalised before it is hashed.
func normalise(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// hashVersion starts every hashed message, so a later encoding cannot be confused with this one.
const hashVersion = "herald-audit-v1"

// ComputeHash is SHA-256 over the previous hash and an unambiguous encoding of every field
// (each string length-prefixed, each number fixed-width), so no two different entries encode
// alike.
func ComputeHash(prev []byte, e Entry) []byte {
	h := sha256.New()
	var n [8]byte
	writeBytes := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	writeInt := func(v int64) {
		binary.BigEndian.PutUint64(n[:], uint64(v))
		h.Write(n[:])
	}
	writeBytes([]byte(hashVersion))
	writeBytes(prev)
	writeInt(e.Seq)
	writeBytes([]byte(e.ID))
	writeInt(normalise(e.At).UnixMicro())
	writeBytes([]byte(e.App))
	writeBytes([]byte(e.UserKey))
	writeBytes([]byte(e.Jurisdiction))
	writeBytes([]byte(e.Region))
	writeBytes([]byte(e.Reason))
	writeInt(e.PolicyVersion)
	writeBytes([]byte(e.RequestID))
	return h.Sum(nil)
}

// Genesis is the previous hash of the first entry: 32 zero bytes.
var Genesis = make([]byte, sha256.Size)

func short(b []byte) string {
	s := fmt.Sprintf("%x", b)
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}
