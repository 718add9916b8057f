// Package export is the region's exporter role: it consumes the region's delivery events
// (<region>.events) with its own consumer group, stores each outcome once in the region's
// Postgres (analytics_events, keyed by notification|user|channel|stage), and ships every closed
// 1-minute window to central analytics as k-anonymous counts (analytics/kanon, analytics/wire).
//
// Exactness: a record's offset is committed only after its rows are stored, so none is lost; a
// redelivered record inserts nothing (the event key), so none counts twice. A window is shipped
// whole, recomputed from the rows, under the key (region, window, seq): central replaces what it
// had, so shipping it again after late rows or a crash leaves the exact count.
package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/herald-notify/herald/analytics/kanon"
	"github.com/herald-notify/herald/analytics/wire"
	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/region/deadletter"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/userkeys"
)

// maxCellsPerBatch keeps one request well under central's 8 MiB body limit (a cell is about
// 150 bytes of JSON); a larger window is split into seq 0, 1, ... in the cells' sorted order.
const maxCellsPerBatch = 40_000

// windowsPerPass bounds how many windows one closer pass ships.
const windowsPerPass = 20

// Exporter is the exporter role of one region.
type Exporter struct {
	region string
	cfg    Config
	kafka  kafka.Config
	store  store
	keys   notify.Sealer // opens the sealed records (the region's data keys)
	client *wire.Client
	// categories are central's registered ones; the closer folds any other into "other".
	categories categoryCache
	log        *slog.Logger
	now        func() time.Time
	// deadLetters takes the records that can never be stored (opened by Run).
	deadLetters *deadletter.Writer
}

// centralTimeout bounds one call to central analytics.
const centralTimeout = 30 * time.Second

// New returns an exporter; it reads the token file, if any, and the TLS files. keys opens the
// sealed delivery events (the region's data keys).
func New(region string, cfg Config, kc kafka.Config, db *pgxpool.Pool, keys *userkeys.Keys, log *slog.Logger) (*Exporter, error) {
	tok, err := cfg.token()
	if err != nil {
		return nil, err
	}
	tc, err := cfg.TLS.clientTLS()
	if err != nil {
		return nil, err
	}
	// Mutual TLS to analytics' ingest listener: the certificate is the region's identity there.
	hc := &http.Client{Timeout: centralTimeout, Transport: &http.Transport{
		TLSClientConfig: tc, ForceAttemptHTTP2: true, TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second,
	}}
	client := &wire.Client{BaseURL: cfg.CentralURL, Token: tok, HTTP: hc}
	return &Exporter{region: region, cfg: cfg, kafka: kc, store: store{db: db, region: region}, keys: keys, log: log.With("role", "exporter"), now: time.Now,
		client: client, categories: categoryCache{fetch: client.Categories}}, nil
}

// Group is the exporter's consumer group: its own, so analytics never holds up delivery.
func Group(region string) string { return region + ".exporter" }

// Run consumes the events and closes windows until ctx ends.
func (e *Exporter) Run(ctx context.Context) error {
	p, err := kafka.NewProducer(e.kafka)
	if err != nil {
		return fmt.Errorf("exporter: %w", err)
	}
	defer p.Close()
	e.deadLetters = &deadletter.Writer{Region: e.region, Producer: p, Log: e.log}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return e.consume(ctx) })
	g.Go(func() error { e.closeLoop(ctx); return nil })
	return g.Wait()
}

func (e *Exporter) consume(ctx context.Context) error {
	sc, err := e.kafka.Sarama()
	if err != nil {
		return err
	}
	sc.ClientID = e.kafka.ClientID + "-exporter"
	return kafka.RunGroup(ctx, e.kafka.Brokers, sc, Group(e.region), []string{notify.EventsTopic(e.region)}, handler{e}, e.log)
}

type handler struct{ e *Exporter }

func (handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim stores each record, then marks and commits its offset: a crash before the
// commit re-reads records whose rows are stored, and the event keys make that harmless. A
// record that fails permanently, or transiently past failure_retry, is dead-lettered to
// "<region>.dlq.export" first, then marked like the others.
func (h handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	ctx := sess.Context()
	marked := 0
	for m := range claim.Messages() {
		attempts, err := h.e.storeRecord(ctx, m.Value)
		if notify.IsErased(err) {
			err = nil // its users were erased while it was stored: dropped
		}
		if err != nil {
			if deadletter.Stopped(err) || ctx.Err() != nil {
				return nil // leave the record uncommitted
			}
			l := deadletter.FromMessage(deadletter.StageExport, m, err, attempts, h.e.now())
			if err := h.e.deadLetters.Put(ctx, l); err != nil {
				return nil // ctx ended before the dead letter was durable
			}
			eventsStored.WithLabelValues(h.e.region, "dead_lettered").Inc()
		}
		sess.MarkMessage(m, "")
		// Commit once the records in hand are stored, and at least every 100 under a steady stream.
		if marked++; len(claim.Messages()) == 0 || marked >= 100 {
			sess.Commit()
			marked = 0
		}
	}
	return nil
}

// Store decodes one events record and stores its outcomes, retrying a transient failure under
// failure_retry. It returns nil once stored (or dropped: outcomes of erased users), the
// failure to dead-letter (deadletter.Classify: permanent, or transient past the policy), or,
// when ctx ended first, an error for which deadletter.Stopped is true.
func (e *Exporter) Store(ctx context.Context, value []byte) error {
	_, err := e.storeRecord(ctx, value)
	return err
}

func (e *Exporter) storeRecord(ctx context.Context, value []byte) (int, error) {
	var rs []row
	decoded := false
	return e.cfg.FailureRetry.Do(ctx, func(ctx context.Context) error {
		if !decoded {
			b, erased, err := notify.DecodeEventBatch(ctx, e.keys, value)
			// Outcomes of erased users (their keys destroyed) are unreadable: dropped, never stored.
			notify.DroppedErased("export", erased)
			switch {
			case notify.IsErased(err):
				return nil
			case errors.Is(err, envelope.ErrUnavailable):
				return err
			case err != nil:
				return deadletter.MarkPermanent(fmt.Errorf("decoding delivery events: %w", err), deadletter.ReasonUndecodable)
			}
			var dropped int
			rs, dropped = rows(b)
			if dropped > 0 {
				e.log.Warn("dropping outcomes outside analytics' vocabularies", "notification_id", b.NotificationID, "outcomes", dropped)
				eventsStored.WithLabelValues(e.region, "dropped").Add(float64(dropped))
			}
			decoded = true
		}
		n, err := e.store.insert(ctx, rs)
		if err != nil {
			return err
		}
		eventsStored.WithLabelValues(e.region, "stored").Add(float64(n))
		eventsStored.WithLabelValues(e.region, "duplicate").Add(float64(int64(len(rs)) - n))
		return nil
	}, func(err error, wait time.Duration) {
		eventsStored.WithLabelValues(e.region, "retry").Inc()
		e.log.Warn("storing delivery events failed; retrying", "err", err, "backoff", wait)
	})
}

func (e *Exporter) closeLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := e.CloseWindows(ctx); err != nil && ctx.Err() == nil {
			e.log.Warn("closing windows", "err", err)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// CloseWindows ships every window that ended more than the grace ago and is not shipped as it
// now stands, then sweeps windows past the retention. It returns how many windows central
// acknowledged.
func (e *Exporter) CloseWindows(ctx context.Context) (int, error) {
	now := e.now()
	windows, err := e.store.due(ctx, now.Add(-wire.Window-e.cfg.Grace), windowsPerPass)
	if err != nil {
		return 0, err
	}
	windowsPending.WithLabelValues(e.region).Set(float64(len(windows)))
	shipped := 0
	for _, w := range windows {
		if err := e.ship(ctx, w); err != nil {
			return shipped, err
		}
		shipped++
	}
	if unshipped, err := e.store.sweep(ctx, now.Add(-e.cfg.Retention)); err != nil {
		return shipped, err
	} else if unshipped > 0 {
		e.log.Error("windows past the retention were never acknowledged by central; their counts are lost", "windows", unshipped)
	}
	return shipped, nil
}

// codeUnknownCategory is central's refusal of a category it does not register.
const codeUnknownCategory = "unknown_category"

// ship folds one window and posts its batches; the window is marked shipped (at the version
// read) only after central acknowledged every batch, or refused one (4xx: not retried until
// the window changes).
func (e *Exporter) ship(ctx context.Context, w time.Time) error {
	snap, err := e.store.read(ctx, w)
	if err != nil {
		return err
	}
	refusal, err := e.deliver(ctx, w, snap)
	if err != nil {
		return err
	}
	return e.store.shipped(ctx, w, snap.version, refusal)
}

// deliver posts a window's snapshot to central. It returns "" once central acknowledged every
// batch, central's refusal ("400 below_k cells[0]...") when it refused one, or an error when
// the window must be shipped again later. Categories central does not register are folded
// into "other" first; a refusal naming one anyway (central's config changed since they were
// fetched) refreshes them and posts the window again, once.
func (e *Exporter) deliver(ctx context.Context, w time.Time, snap snapshot) (refusal string, err error) {
	for attempt := 0; ; attempt++ {
		cats, err := e.categories.get(ctx, e.now(), attempt > 0)
		if err != nil {
			windowsShipped.WithLabelValues(e.region, "failed").Inc()
			return "", fmt.Errorf("shipping window %s: %w", w.Format(time.RFC3339), err)
		}
		err = e.post(ctx, w, snap, cats)
		var re *wire.RefusedError
		switch {
		case errors.As(err, &re) && re.Code == codeUnknownCategory && attempt == 0:
			e.log.Info("central refused a category; refreshing its registered categories and shipping again", "window", w, "field", re.Field)
			continue
		case errors.As(err, &re):
			windowsShipped.WithLabelValues(e.region, "refused").Inc()
			e.log.Error("central analytics refused a window; not retried until it changes", "window", w, "err", err,
				"status", re.Status, "code", re.Code, "field", re.Field, "message", re.Message)
			return fmt.Sprintf("%d %s %s", re.Status, re.Code, re.Field), nil
		case err != nil:
			windowsShipped.WithLabelValues(e.region, "failed").Inc()
			return "", fmt.Errorf("shipping window %s: %w", w.Format(time.RFC3339), err)
		}
		return "", nil
	}
}

// post folds a window's snapshot, with cats as the categories central accepts, and posts its
// batches in order. A batch central refuses stops it (a *wire.RefusedError in the error).
func (e *Exporter) post(ctx context.Context, w time.Time, snap snapshot, cats wire.Categories) error {
	cells, unknown := FoldUnregistered(snap.cells, cats)
	if len(unknown) > 0 {
		var events int64
		for _, n := range unknown {
			events += n
		}
		unregistered.WithLabelValues(e.region).Add(float64(events))
		// The names stay in the region's log: central never sees them.
		e.log.Warn("categories central does not register are shipped as other; register them in central's categories",
			"window", w, "categories", slices.Sorted(maps.Keys(unknown)), "events", events)
	}
	for _, b := range Batches(e.region, w, cells, snap.latency, e.cfg.K) {
		ack, err := e.client.Post(ctx, b)
		if err != nil {
			return fmt.Errorf("batch seq %d: %w", b.Seq, err)
		}
		windowsShipped.WithLabelValues(e.region, ack.Result).Inc()
		e.log.Debug("window shipped", "window", w, "seq", b.Seq, "result", ack.Result, "cells", ack.Cells)
	}
	return nil
}

// Batches folds a window's cells and histograms with k (both on distinct recipients) and splits the result into batches of at
// most maxCellsPerBatch cells (seq 0, 1, ... in sorted order, so the same window always splits
// the same way). Seq 0 carries the histograms and the withheld totals. A window with nothing
// left after folding is still one batch, so central learns what was withheld.
func Batches(region string, w time.Time, cells []kanon.Cell, latency []kanon.Latency, k int) []wire.Batch {
	folded := kanon.Fold(cells, k)
	hs, lw := kanon.FoldLatency(latency, k)
	var out []wire.Batch
	for seq := 0; seq == 0 || seq*maxCellsPerBatch < len(folded.Cells); seq++ {
		part := folded.Cells[seq*maxCellsPerBatch : min((seq+1)*maxCellsPerBatch, len(folded.Cells))]
		b := wire.Batch{Version: wire.Version, Region: region, WindowStart: w.UTC(), Seq: seq, Cells: part}
		if seq == 0 {
			b.Latency, b.Withheld, b.LatencyWithheld = hs, folded.Withheld, lw
		}
		if b.Cells == nil {
			b.Cells = []wire.Cell{}
		}
		out = append(out, b)
	}
	return out
}
