package inbox

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"slices"
	"time"
)

// A stream's items do not reach it in the inbox order: a marketing-tier item (large topics
// usually are) waits behind its tier's backlog while a transactional one overtakes it, and a
// deferred item is written hours after the time it is listed under. So the id a stream sends
// cannot be the cursor of the last item alone: a client resuming from it would never get an
// older item written after it. The id is a Position instead: a floor, and the items sent above
// it. Resuming sends every item above the floor that is not among them.
const (
	// PositionWindow is how far below the newest item sent the floor stays: items written up
	// to this late are still replayed to a client that reconnects.
	PositionWindow = 5 * time.Minute
	// positionItems caps the items a position names, so the id stays short (about 160
	// characters); a burst raises the floor to keep the newest.
	positionItems = 16
)

// Position is what a stream has sent: nothing at or below Floor is replayed on resume, and
// every item above it that the client received is named in it. The zero Position is not valid;
// use NewPosition or ParsePosition.
type Position struct {
	floor int64  // Unix milliseconds
	sent  []mark // ascending, all above floor
}

// mark names one sent item compactly: its time and a hash of its id. Two distinct items of one
// user in the same millisecond with the same 32-bit hash are, in practice, not a case.
type mark struct {
	at   int64
	hash uint32
}

func markOf(it Item) mark {
	h := fnv.New32a()
	h.Write([]byte(it.NotificationID))
	return mark{at: it.CreatedAt.UnixMilli(), hash: h.Sum32()}
}

func (m mark) less(o mark) bool { return m.at < o.at || m.at == o.at && m.hash < o.hash }

// NewPosition is the position of a stream opened at t: it has sent nothing, and what was
// written before it opened is not its to replay.
func NewPosition(t time.Time) Position { return Position{floor: t.UnixMilli()} }

// Floor is the time a resume reads from: items created after it.
func (p Position) Floor() time.Time { return time.UnixMilli(p.floor).UTC() }

// Above reports whether the item is above the floor, where resuming replays what was not sent.
func (p Position) Above(it Item) bool { return it.CreatedAt.UnixMilli() > p.floor }

// Has reports whether the position names the item as sent.
func (p Position) Has(it Item) bool {
	m := markOf(it)
	_, found := slices.BinarySearchFunc(p.sent, m, cmpMark)
	return found
}

func cmpMark(a, b mark) int {
	switch {
	case a.less(b):
		return -1
	case b.less(a):
		return 1
	}
	return 0
}

// Add records an item above the floor as sent (others are ignored: no resume replays them).
// The floor then rises to keep at most PositionWindow below the newest item and at most
// positionItems named; it never passes an item that is still named.
func (p *Position) Add(it Item) {
	if !p.Above(it) || p.Has(it) {
		return
	}
	m := markOf(it)
	i, _ := slices.BinarySearchFunc(p.sent, m, cmpMark)
	p.sent = slices.Insert(p.sent, i, m)
	newest := p.sent[len(p.sent)-1].at
	drop := 0
	for drop < len(p.sent) && (len(p.sent)-drop > positionItems || p.sent[drop].at < newest-PositionWindow.Milliseconds()) {
		p.floor = max(p.floor, p.sent[drop].at)
		drop++
	}
	// Items in the floor's millisecond are below it now, named or not.
	for drop < len(p.sent) && p.sent[drop].at <= p.floor {
		drop++
	}
	p.sent = slices.Delete(p.sent, 0, drop)
}

const positionVersion = 1

// String is the opaque id: base64url of a version byte, the floor, and the named items as
// (milliseconds above the floor, hash).
func (p Position) String() string {
	b := make([]byte, 0, 2+binary.MaxVarintLen64*2+len(p.sent)*(binary.MaxVarintLen64+4))
	b = append(b, positionVersion)
	b = binary.AppendUvarint(b, uint64(p.floor))
	b = binary.AppendUvarint(b, uint64(len(p.sent)))
	for _, m := range p.sent {
		b = binary.AppendUvarint(b, uint64(m.at-p.floor))
		b = binary.BigEndian.AppendUint32(b, m.hash)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// ErrBadPosition means an id that no stream sent.
var ErrBadPosition = errors.New("invalid stream position")

// ParsePosition reads an id a stream sent. It also takes the plain cursors streams sent before
// positions, so clients connected across an upgrade resume: nothing at or below the cursor's
// millisecond is replayed.
func ParsePosition(s string) (Position, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) == 0 {
		return Position{}, ErrBadPosition
	}
	if raw[0] != positionVersion {
		cur, err := DecodeCursor(s)
		if err != nil || cur == nil {
			return Position{}, ErrBadPosition
		}
		return Position{floor: cur.At.UnixMilli()}, nil
	}
	raw = raw[1:]
	floor, k := binary.Uvarint(raw)
	if k <= 0 || floor == 0 || floor > 1<<62 {
		return Position{}, ErrBadPosition
	}
	raw = raw[k:]
	n, k := binary.Uvarint(raw)
	if k <= 0 || n > positionItems {
		return Position{}, ErrBadPosition
	}
	raw = raw[k:]
	p := Position{floor: int64(floor)}
	for range n {
		d, k := binary.Uvarint(raw)
		if k <= 0 || d == 0 || d > 1<<62 || len(raw) < k+4 {
			return Position{}, ErrBadPosition
		}
		m := mark{at: p.floor + int64(d), hash: binary.BigEndian.Uint32(raw[k:])}
		if len(p.sent) > 0 && !p.sent[len(p.sent)-1].less(m) {
			return Position{}, ErrBadPosition
		}
		p.sent = append(p.sent, m)
		raw = raw[k+4:]
	}
	if len(raw) != 0 {
		return Position{}, ErrBadPosition
	}
	return p, nil
}

// Sent is what one stream connection has sent: its Position, carried over from the connection
// it resumes, and the ids of the last items it sent. The ids catch what the position cannot
// name: an item at or below the floor coming twice on the connection (in the catch-up and
// live, or announced again by a redelivered fan-out).
type Sent struct {
	Position
	recent []string
}

// recentItems is how many sent ids a connection remembers besides its position.
const recentItems = 32

// Admit reports whether the stream sends the item, and records it if so: an item is sent once.
// One at or below the floor (a deferred delivery, written long after the time it is listed
// under) is sent all the same, live; no resume replays it, so it cannot come twice.
func (s *Sent) Admit(it Item) bool {
	if s.Has(it) || slices.Contains(s.recent, it.NotificationID) {
		return false
	}
	s.Add(it)
	s.remember(it)
	return true
}

// Seen records items at or below the floor as ones the client has without the stream sending
// them: items already in the inbox when a new stream opened, whose announcements may still
// come. Items are newest first, as an inbox page; the newest are remembered.
func (s *Sent) Seen(items []Item) {
	for i := min(len(items), recentItems) - 1; i >= 0; i-- {
		if it := items[i]; !s.Above(it) && !slices.Contains(s.recent, it.NotificationID) {
			s.remember(it)
		}
	}
}

func (s *Sent) remember(it Item) {
	if len(s.recent) == recentItems {
		s.recent = append(s.recent[:0], s.recent[1:]...)
	}
	s.recent = append(s.recent, it.NotificationID)
}
