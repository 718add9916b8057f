// Package wire is the contract between a region's analytics exporter and central analytics:
// the JSON batch a region posts to POST /v1/aggregates, its closed vocabularies (stages, tiers,
// channels, reasons) and the fixed latency buckets. Both sides import it; it imports nothing of
// Herald's, so the region never links central code and central never links region code.
//
// A batch carries counts only. It has no field that can hold a user id, device token, address
// or message content, and central refuses any field not defined here (docs/analytics.md).
//
//	{
//	  "version": 1,
//	  "region": "eu-west-1",
//	  "window_start": "2026-11-25T04:00:00Z",      // a 1-minute window, UTC, on the minute
//	  "seq": 0,                                    // batch number within (region, window)
//	  "cells": [{"app": "demo", "tier": "transactional", "category": "security",
//	             "channel": "sms", "country": "DE", "stage": "delivered", "reason": "",
//	             "count": 120, "distinct_recipients": 118}],
//	  "latency": [{"tier": "transactional", "channel": "sms",
//	               "bounds_ms": [50, 100, ...], "counts": [0, 3, ...],
//	               "distinct_recipients": 12}],
//	  "withheld": 7,                               // events in cells below k, no dimensions
//	  "latency_withheld": 0                        // observations in histograms below k recipients
//	}
//
// (region, window_start, seq) is the batch's idempotency key: central replaces a batch it has
// already stored under that key, so re-sending counts once, and a batch with a new seq for the
// same window adds to it. Client posts a batch and tells a refusal (do not retry) from a
// failure (retry the same batch). analytics/kanon makes a window's cells k-anonymous first.
package wire

import (
	"slices"
	"time"
)

// Version is the batch format's version; central refuses any other.
const Version = 1

// Window is the aggregation window: every window_start is a multiple of it, in UTC.
const Window = time.Minute

// DefaultK is the k-anonymity threshold: no cell leaves a region, and none is stored centrally,
// with fewer distinct recipients than k.
const DefaultK = 10

// Batch is one POST /v1/aggregates body.
type Batch struct {
	Version     int         `json:"version"`
	Region      string      `json:"region"`
	WindowStart time.Time   `json:"window_start"`
	Seq         int         `json:"seq"`
	Cells       []Cell      `json:"cells"`
	Latency     []Histogram `json:"latency,omitempty"`
	// Withheld is how many events were in cells still below k after folding: reported as a
	// total only, so no dimension of a small group leaves the region.
	Withheld int64 `json:"withheld"`
	// LatencyWithheld is how many latency observations were in histograms still below k
	// distinct recipients after folding.
	LatencyWithheld int64 `json:"latency_withheld"`
}

// Key is a cell's dimensions.
type Key struct {
	App      string `json:"app"`
	Tier     string `json:"tier"`
	Category string `json:"category"`
	Channel  string `json:"channel"`
	// Country is the ISO 3166-1 alpha-2 code of an SMS recipient's number (it sets the SMS
	// price); empty for every other channel, and for SMS cells folded above country.
	Country string `json:"country,omitempty"`
	Stage   string `json:"stage"`
	// Reason says why, for the stages that have one (ReasonsFor).
	Reason string `json:"reason,omitempty"`
}

// Cell is the count of events with one Key in one window, and how many distinct recipients
// they concern (k-anonymity is about the latter).
type Cell struct {
	Key
	Count              int64 `json:"count"`
	DistinctRecipients int64 `json:"distinct_recipients"`
}

// Histogram counts accept-to-delivered latencies of one tier and channel in the fixed buckets:
// Counts[i] is the number of observations <= BoundsMS[i] and > BoundsMS[i-1]; the last entry,
// one past the bounds, counts those above the last bound. DistinctRecipients is how many
// different users the observations concern: like a cell's, it is what k-anonymity is judged
// on (one user with a thousand deliveries is one recipient, not a thousand observations).
type Histogram struct {
	Tier               string  `json:"tier"`
	Channel            string  `json:"channel"`
	BoundsMS           []int64 `json:"bounds_ms"`
	Counts             []int64 `json:"counts"`
	DistinctRecipients int64   `json:"distinct_recipients"`
}

// Total is the number of observations in h.
func (h Histogram) Total() int64 {
	var n int64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// LatencyBoundsMS are the fixed upper bounds of the latency buckets, in milliseconds. 5 s and
// 30 s are bounds so the SLOs (transactional p99 < 5 s, social p99 < 30 s) are judged exactly.
var LatencyBoundsMS = []int64{50, 100, 250, 500, 1000, 2000, 5000, 10000, 30000, 60000, 120000, 300000, 900000, 3600000}

// NewHistogram returns an empty histogram with the fixed bounds.
func NewHistogram(tier, channel string) Histogram {
	return Histogram{Tier: tier, Channel: channel, BoundsMS: slices.Clone(LatencyBoundsMS), Counts: make([]int64, len(LatencyBoundsMS)+1)}
}

// Observe adds one latency to h.
func (h *Histogram) Observe(d time.Duration) {
	ms := d.Milliseconds()
	i, _ := slices.BinarySearch(h.BoundsMS, ms)
	h.Counts[i]++
}

// Stages of a delivery, in funnel order.
const (
	// StageAccepted counts recipients of accepted events (channels are chosen later, at
	// fan-out, so accepted cells have channel ChannelAll).
	StageAccepted = "accepted"
	// StageFannedOut counts recipient x channel deliveries handed on by fan-out.
	StageFannedOut    = "fanned_out"
	StageSuppressed   = "suppressed"
	StageDeferred     = "deferred"
	StageExpired      = "expired"
	StageDispatched   = "dispatched"
	StageDelivered    = "delivered"
	StageFailed       = "failed"
	StageDeadLettered = "dead_lettered"
	StageRead         = "read"
)

// Stages lists every stage in funnel order.
var Stages = []string{StageAccepted, StageFannedOut, StageSuppressed, StageDeferred, StageExpired, StageDispatched, StageDelivered, StageFailed, StageDeadLettered, StageRead}

// Tiers (region/notify's).
var Tiers = []string{"transactional", "social", "marketing"}

// Channels (region/notify's).
var Channels = []string{"in_app", "push", "email", "sms"}

// ChannelAll is a cell not attributed to one channel: accepted events, and cells folded above
// channel for k-anonymity.
const ChannelAll = "all"

// CategoryOther is a cell folded above category for k-anonymity. No app may register it.
const CategoryOther = "other"

// Categories are the categories central accepts in a cell: Global for every app, Apps for one
// app each (GET /v1/categories). Central refuses a batch with any other category (400
// unknown_category), so an exporter folds a category central does not know into CategoryOther
// before shipping, rather than have one unexpected category hold the whole window back.
type Categories struct {
	Global []string            `json:"global"`
	Apps   map[string][]string `json:"apps"`
}

// Allows reports whether a cell of app may name category. CategoryOther always may.
func (c Categories) Allows(app, category string) bool {
	return category == CategoryOther || slices.Contains(c.Global, category) || slices.Contains(c.Apps[app], category)
}

// Reasons per stage; a stage absent here has no reason (empty). The exporter maps region
// states to these: fan-out's suppressed/expired becomes stage expired; a dispatcher's failure
// class (permanent, gone, no provider) the failed reason; retries exhausted on transient errors
// dead_lettered/transient.
var reasons = map[string][]string{
	StageSuppressed:   {"duplicate", "hard_stop", "channel_disabled", "category_disabled", "no_address", "no_device", "erased", "bounced", "complained", "unsubscribed"},
	StageDeferred:     {"send_at", "quiet_hours"},
	StageFailed:       {"permanent", "gone", "no_provider", "bounced"},
	StageDeadLettered: {"transient"},
}

// ReasonsFor returns the reasons a stage allows (nil: the reason must be empty).
func ReasonsFor(stage string) []string { return reasons[stage] }

// ValidTier, ValidChannel and ValidStage check the closed vocabularies.
func ValidTier(s string) bool    { return slices.Contains(Tiers, s) }
func ValidChannel(s string) bool { return s == ChannelAll || slices.Contains(Channels, s) }
func ValidStage(s string) bool   { return slices.Contains(Stages, s) }

// ValidReason reports whether reason is allowed for stage.
func ValidReason(stage, reason string) bool {
	allowed := reasons[stage]
	if allowed == nil {
		return reason == ""
	}
	return slices.Contains(allowed, reason)
}
