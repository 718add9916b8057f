package sim

import (
	"encoding/json"
	"slices"
	"sync/atomic"
	"time"
)

// Record is one request a simulator answered, as the records API returns it.
type Record struct {
	// Seq orders the records of one simulator; newer is larger.
	Seq uint64 `json:"seq"`
	// ID is what the simulator answered with: apns-id, the FCM message name, the Twilio sid or
	// the SMTP queue id. Empty when the request failed.
	ID         string    `json:"id,omitempty"`
	To         string    `json:"to"`
	ReceivedAt time.Time `json:"received_at"`
	// Status is the HTTP status or SMTP reply code answered.
	Status int `json:"status"`
	// Error is the provider's reason for a failure (BadDeviceToken, UNREGISTERED, 21211, ...).
	Error   string            `json:"error,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	// Payload is the request body: JSON as sent (APNs, FCM), or the parsed form or mail.
	Payload   json.RawMessage `json:"payload,omitempty"`
	Truncated bool            `json:"truncated,omitempty"`
}

// Ring keeps the last N records of one simulator. Adding is lock-free (one atomic increment and
// one atomic store), so recording never serialises the request path; queries scan the ring,
// which is fine for a test API.
type Ring struct {
	slots      []atomic.Pointer[Record]
	seq        atomic.Uint64
	floor      atomic.Uint64 // records with Seq <= floor were cleared
	maxPayload int
}

// NewRing returns a ring holding up to capacity records, payloads cut at maxPayload bytes.
func NewRing(capacity, maxPayload int) *Ring {
	return &Ring{slots: make([]atomic.Pointer[Record], capacity), maxPayload: maxPayload}
}

// Add stores rec, overwriting the oldest record when the ring is full.
func (r *Ring) Add(rec *Record) {
	if r.maxPayload > 0 && len(rec.Payload) > r.maxPayload {
		// Keep it valid JSON: a cut payload is stored as a string.
		cut, _ := json.Marshal(string(rec.Payload[:r.maxPayload]))
		rec.Payload, rec.Truncated = cut, true
	}
	n := r.seq.Add(1)
	rec.Seq = n
	r.slots[(n-1)%uint64(len(r.slots))].Store(rec)
}

// Query returns the records for to (all when to is empty), oldest first, at most the newest
// limit of them (limit <= 0: all).
func (r *Ring) Query(to string, limit int) []Record { return r.QueryAfter(to, 0, limit) }

// QueryAfter is Query for the records with Seq above after only: a reader that keeps the last
// Seq it saw reads each record once.
func (r *Ring) QueryAfter(to string, after uint64, limit int) []Record {
	floor := max(r.floor.Load(), after)
	var out []Record
	for i := range r.slots {
		rec := r.slots[i].Load()
		if rec == nil || rec.Seq <= floor || (to != "" && rec.To != to) {
			continue
		}
		out = append(out, *rec)
	}
	slices.SortFunc(out, func(a, b Record) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	if out == nil {
		out = []Record{}
	}
	return out
}

// Clear forgets every record added so far.
func (r *Ring) Clear() {
	floor := r.seq.Load()
	r.floor.Store(floor)
	for i := range r.slots {
		if rec := r.slots[i].Load(); rec != nil && rec.Seq <= floor {
			r.slots[i].CompareAndSwap(rec, nil)
		}
	}
}

// jsonPayload keeps a body that is valid JSON as is and stores anything else as a JSON string,
// so the records API always returns valid JSON.
func jsonPayload(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if json.Valid(b) {
		return json.RawMessage(slices.Clone(b))
	}
	s, _ := json.Marshal(string(b))
	return s
}
