package analytics

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herald-notify/herald/analytics/kanon"
	"github.com/herald-notify/herald/analytics/wire"
)

// FieldError is a refused batch: a 400 (403 for a region mismatch) naming the field at fault
// by its JSON path, like "cells[3].category".
type FieldError struct {
	Status  int
	Code    string
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

func fieldErr(code, field, format string, args ...any) *FieldError {
	return &FieldError{Status: 400, Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Caps on one batch: a window of one region has at most a few thousand cells.
const (
	maxCells      = 100_000
	maxHistograms = 64
	maxCount      = 1 << 53 // exact in JavaScript, where the dashboard adds them up
)

// DecodeBatch reads a batch against the closed schema of package wire: every field must be
// known, present once and of its type; anything else (a "user_id", a nested object) is refused
// naming its path. It checks the form only; rules.check checks the values.
func DecodeBatch(r io.Reader) (wire.Batch, error) {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	p := &parser{dec: dec}
	var b wire.Batch
	required := []string{"version", "region", "window_start", "seq", "cells", "withheld"}
	err := p.object("", required, func(name, path string) error {
		var err error
		switch name {
		case "version":
			var v int64
			v, err = p.integer(path)
			b.Version = int(v)
		case "region":
			b.Region, err = p.str(path)
		case "window_start":
			var s string
			if s, err = p.str(path); err == nil {
				if b.WindowStart, err = time.Parse(time.RFC3339, s); err != nil {
					return fieldErr("invalid_field", path, "must be an RFC 3339 time like 2026-11-25T04:00:00Z")
				}
			}
		case "seq":
			var v int64
			v, err = p.integer(path)
			b.Seq = int(min(v, 1<<31-1))
		case "cells":
			b.Cells = []wire.Cell{}
			err = p.array(path, maxCells, func(path string) error {
				c, err := p.cell(path)
				b.Cells = append(b.Cells, c)
				return err
			})
		case "latency":
			b.Latency = []wire.Histogram{}
			err = p.array(path, maxHistograms, func(path string) error {
				h, err := p.histogram(path)
				b.Latency = append(b.Latency, h)
				return err
			})
		case "withheld":
			b.Withheld, err = p.integer(path)
		case "latency_withheld":
			b.LatencyWithheld, err = p.integer(path)
		default:
			return unknownField(path)
		}
		return err
	})
	if err != nil {
		return wire.Batch{}, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return wire.Batch{}, fieldErr("invalid_json", "", "the body must hold one JSON object and nothing after it")
	}
	return b, nil
}

func unknownField(path string) error {
	return fieldErr("unknown_field", path, "is not a field of an aggregate batch; batches carry counts only (docs/analytics.md)")
}

func (p *parser) cell(path string) (wire.Cell, error) {
	var c wire.Cell
	required := []string{"app", "tier", "category", "channel", "stage", "count", "distinct_recipients"}
	err := p.object(path, required, func(name, path string) error {
		var err error
		switch name {
		case "app":
			c.App, err = p.str(path)
		case "tier":
			c.Tier, err = p.str(path)
		case "category":
			c.Category, err = p.str(path)
		case "channel":
			c.Channel, err = p.str(path)
		case "country":
			c.Country, err = p.str(path)
		case "stage":
			c.Stage, err = p.str(path)
		case "reason":
			c.Reason, err = p.str(path)
		case "count":
			c.Count, err = p.integer(path)
		case "distinct_recipients":
			c.DistinctRecipients, err = p.integer(path)
		default:
			return unknownField(path)
		}
		return err
	})
	return c, err
}

func (p *parser) histogram(path string) (wire.Histogram, error) {
	var h wire.Histogram
	ints := func(path string, dst *[]int64) error {
		*dst = []int64{}
		return p.array(path, 64, func(path string) error {
			v, err := p.integer(path)
			*dst = append(*dst, v)
			return err
		})
	}
	err := p.object(path, []string{"tier", "channel", "bounds_ms", "counts", "distinct_recipients"}, func(name, path string) error {
		switch name {
		case "tier":
			s, err := p.str(path)
			h.Tier = s
			return err
		case "channel":
			s, err := p.str(path)
			h.Channel = s
			return err
		case "bounds_ms":
			return ints(path, &h.BoundsMS)
		case "counts":
			return ints(path, &h.Counts)
		case "distinct_recipients":
			v, err := p.integer(path)
			h.DistinctRecipients = v
			return err
		}
		return unknownField(path)
	})
	return h, err
}

// parser walks JSON tokens, so each error knows its path and duplicate keys are caught (a
// decoder into a struct keeps the last of two, which would let a payload say two things).
type parser struct{ dec *json.Decoder }

func (p *parser) token(path string) (json.Token, error) {
	tok, err := p.dec.Token()
	if err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fieldErr("invalid_json", path, "the body is not valid JSON: %v", err)
		}
		return nil, err // a read error (body too large, connection): not the client's JSON
	}
	return tok, nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func (p *parser) object(path string, required []string, field func(name, path string) error) error {
	tok, err := p.token(path)
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fieldErr("invalid_field", orBody(path), "must be an object")
	}
	seen := map[string]bool{}
	for p.dec.More() {
		tok, err := p.token(path)
		if err != nil {
			return err
		}
		name, _ := tok.(string)
		fp := join(path, name)
		if seen[name] {
			return fieldErr("duplicate_field", fp, "appears twice")
		}
		seen[name] = true
		if err := field(name, fp); err != nil {
			return err
		}
	}
	if _, err := p.token(path); err != nil { // '}'
		return err
	}
	for _, r := range required {
		if !seen[r] {
			return fieldErr("missing_field", join(path, r), "is required")
		}
	}
	return nil
}

func orBody(path string) string {
	if path == "" {
		return "body"
	}
	return path
}

func (p *parser) array(path string, limit int, elem func(path string) error) error {
	tok, err := p.token(path)
	if err != nil {
		return err
	}
	if tok == nil {
		return nil // null: what encoding/json writes for a nil slice, read as empty
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fieldErr("invalid_field", path, "must be an array")
	}
	for i := 0; p.dec.More(); i++ {
		if i == limit {
			return fieldErr("invalid_field", path, "has more than %d entries", limit)
		}
		if err := elem(fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return err
		}
	}
	_, err = p.token(path) // ']'
	return err
}

func (p *parser) str(path string) (string, error) {
	tok, err := p.token(path)
	if err != nil {
		return "", err
	}
	s, ok := tok.(string)
	if !ok {
		return "", fieldErr("invalid_field", path, "must be a string")
	}
	return s, nil
}

func (p *parser) integer(path string) (int64, error) {
	tok, err := p.token(path)
	if err != nil {
		return 0, err
	}
	n, ok := tok.(json.Number)
	if !ok {
		return 0, fieldErr("invalid_field", path, "must be a number")
	}
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil || v < 0 || v > maxCount {
		return 0, fieldErr("invalid_field", path, "must be a whole number from 0 to 2^53")
	}
	return v, nil
}

// rules are the value checks central applies to a decoded batch.
type rules struct {
	k          int
	categories CategoriesConfig
	now        func() time.Time
	// horizon: windows before it are refused (zero: none is too old).
	horizon time.Time
}

// check validates b as posted by region (the one its client certificate names).
func (r rules) check(b wire.Batch, region string) *FieldError {
	if b.Version != wire.Version {
		return fieldErr("unsupported_version", "version", "must be %d", wire.Version)
	}
	if b.Region != region {
		e := fieldErr("region_mismatch", "region", "the client certificate is %s's; a region posts its own aggregates only", region)
		e.Status = 403
		return e
	}
	ws := b.WindowStart
	if ws.IsZero() || !ws.Equal(ws.Truncate(wire.Window)) {
		return fieldErr("invalid_field", "window_start", "must be the start of a 1-minute window (seconds 0)")
	}
	if ws.After(r.now().Add(2 * wire.Window)) {
		return fieldErr("invalid_field", "window_start", "is in the future")
	}
	if !r.horizon.IsZero() && ws.Before(r.horizon) {
		return fieldErr("window_too_old", "window_start", "is older than central keeps minute data (minute_retention); drop the batch")
	}
	if b.Seq < 0 || b.Seq > 1_000_000 {
		return fieldErr("invalid_field", "seq", "must be from 0 to 1000000")
	}
	seen := make(map[wire.Key]bool, len(b.Cells))
	for i, c := range b.Cells {
		path := fmt.Sprintf("cells[%d]", i)
		if e := r.checkCell(c, path); e != nil {
			return e
		}
		if seen[c.Key] {
			return fieldErr("duplicate_cell", path, "repeats the dimensions of an earlier cell; merge them before sending")
		}
		seen[c.Key] = true
	}
	hseen := map[[2]string]bool{}
	for i, h := range b.Latency {
		path := fmt.Sprintf("latency[%d]", i)
		if !wire.ValidTier(h.Tier) {
			return fieldErr("invalid_field", path+".tier", "must be one of %s", strings.Join(wire.Tiers, ", "))
		}
		if !wire.ValidChannel(h.Channel) {
			return fieldErr("invalid_field", path+".channel", "must be one of %s or %s", strings.Join(wire.Channels, ", "), wire.ChannelAll)
		}
		if !slices.Equal(h.BoundsMS, wire.LatencyBoundsMS) {
			return fieldErr("invalid_field", path+".bounds_ms", "must be the fixed bounds %v", wire.LatencyBoundsMS)
		}
		if len(h.Counts) != len(wire.LatencyBoundsMS)+1 {
			return fieldErr("invalid_field", path+".counts", "must have %d entries (one per bound, then one above the last)", len(wire.LatencyBoundsMS)+1)
		}
		// Like a cell, a histogram is judged on the users it concerns, not on its observations:
		// a thousand deliveries to three users describe those three users.
		if h.DistinctRecipients > h.Total() {
			return fieldErr("invalid_field", path+".distinct_recipients", "must not exceed the observations (%d)", h.Total())
		}
		if h.DistinctRecipients < int64(r.k) {
			return fieldErr("below_k", path+".distinct_recipients", "is %d; histograms below k=%d distinct recipients must be folded or withheld by the region", h.DistinctRecipients, r.k)
		}
		if hseen[[2]string{h.Tier, h.Channel}] {
			return fieldErr("duplicate_cell", path, "repeats the tier and channel of an earlier histogram")
		}
		hseen[[2]string{h.Tier, h.Channel}] = true
	}
	return nil
}

func (r rules) checkCell(c wire.Cell, path string) *FieldError {
	switch {
	case !appRE.MatchString(c.App):
		return fieldErr("invalid_field", path+".app", "must be an app id (%s)", appRE)
	case !r.categories.AppAllowed(c.App):
		return fieldErr("unknown_app", path+".app", "is not an app listed in central's config (categories.apps)")
	case !wire.ValidTier(c.Tier):
		return fieldErr("invalid_field", path+".tier", "must be one of %s", strings.Join(wire.Tiers, ", "))
	case !wire.ValidChannel(c.Channel):
		return fieldErr("invalid_field", path+".channel", "must be one of %s or %s", strings.Join(wire.Channels, ", "), wire.ChannelAll)
	case !wire.ValidStage(c.Stage):
		return fieldErr("invalid_field", path+".stage", "must be one of %s", strings.Join(wire.Stages, ", "))
	case !wire.ValidReason(c.Stage, c.Reason):
		if rs := wire.ReasonsFor(c.Stage); rs != nil {
			return fieldErr("invalid_field", path+".reason", "must be one of %s for stage %s", strings.Join(rs, ", "), c.Stage)
		}
		return fieldErr("invalid_field", path+".reason", "must be empty for stage %s", c.Stage)
	case c.Country != "" && (c.Channel != "sms" || !countryRE.MatchString(c.Country)):
		return fieldErr("invalid_field", path+".country", "must be empty, or an ISO 3166-1 alpha-2 code on an sms cell")
	case !r.categories.Allowed(c.App, c.Category):
		return fieldErr("unknown_category", path+".category", "%q is not a registered category of app %s", truncate(c.Category, 64), c.App)
	case c.Count < 1:
		return fieldErr("invalid_field", path+".count", "must be at least 1")
	case c.DistinctRecipients > c.Count:
		return fieldErr("invalid_field", path+".distinct_recipients", "must not exceed count")
	case c.DistinctRecipients < int64(r.k):
		return fieldErr("below_k", path+".distinct_recipients", "is %d; cells below k=%d must be folded or withheld by the region", c.DistinctRecipients, r.k)
	}
	return nil
}

// truncate keeps an echoed value short: a refused value may be what must not be stored or
// logged at length.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// canonical is the batch's stored form, hashed to tell a repeat from a replacement: UTC, and
// cells and histograms in key order, so the same content always hashes the same.
func canonical(b wire.Batch) []byte {
	b.WindowStart = b.WindowStart.UTC()
	b.Cells = slices.Clone(b.Cells)
	slices.SortFunc(b.Cells, func(x, y wire.Cell) int { return kanon.CompareKeys(x.Key, y.Key) })
	b.Latency = slices.Clone(b.Latency)
	slices.SortFunc(b.Latency, func(x, y wire.Histogram) int {
		return cmp.Or(cmp.Compare(x.Tier, y.Tier), cmp.Compare(x.Channel, y.Channel))
	})
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(b)
	return buf.Bytes()
}
