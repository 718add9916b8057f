//go:build integration

package inbox

import (
	"maps"
	"testing"
	"time"
)

// TestEmptyLinkAndMetadataAreStoredAsNothing writes items with and without a link and metadata,
// alone and in a batch: the empty ones must read back empty and hold no cell for either column
// (binding a null map writes a collection tombstone into every row), the others in full.
func TestEmptyLinkAndMetadataAreStoredAsNothing(t *testing.T) {
	in, _ := newTestInbox(t)
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Millisecond)
	user := "unset-" + now.Format("150405.000")
	full := Item{AppID: "a", UserID: user, NotificationID: "full", CreatedAt: now.Add(-time.Second), Tier: "social", Category: "c",
		Title: "t", Body: "b", Link: "https://example.com/x", Metadata: map[string]string{"k": "v"}}
	bare := Item{AppID: "a", UserID: user, NotificationID: "bare", CreatedAt: now.Add(-2 * time.Second), Tier: "social", Category: "c", Title: "t", Body: "b"}
	if err := in.Write(ctx, full); err != nil {
		t.Fatal(err)
	}
	if err := in.Write(ctx, bare); err != nil {
		t.Fatal(err)
	}
	batched := []Item{bare, full}
	batched[0].NotificationID, batched[0].CreatedAt = "bare-batched", now.Add(-3*time.Second)
	batched[1].NotificationID, batched[1].CreatedAt = "full-batched", now.Add(-4*time.Second)
	if err := in.WriteBatch(ctx, batched); err != nil {
		t.Fatal(err)
	}

	items, _, err := in.Page(ctx, "a", user, nil, nil, 10, false, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 4 {
		t.Fatalf("read %d items, want 4", len(items))
	}
	for _, it := range items {
		wantFull := it.NotificationID == "full" || it.NotificationID == "full-batched"
		if wantFull != (it.Link == full.Link && maps.Equal(it.Metadata, full.Metadata)) || (!wantFull && (it.Link != "" || len(it.Metadata) != 0)) {
			t.Errorf("%s: link %q metadata %v", it.NotificationID, it.Link, it.Metadata)
		}
		var linkWritten *int64
		var meta map[string]string
		if err := in.s.Query(`SELECT WRITETIME(link), metadata FROM notification_log WHERE app_id = ? AND user_id = ? AND bucket = ? AND created_at = ? AND notification_id = ?`,
			"a", user, Bucket(it.CreatedAt), it.CreatedAt, it.NotificationID).WithContext(ctx).Scan(&linkWritten, &meta); err != nil {
			t.Fatal(err)
		}
		if !wantFull && (linkWritten != nil || meta != nil) {
			t.Errorf("%s: a link cell written (%v), metadata %v; want neither", it.NotificationID, linkWritten != nil, meta)
		}
	}
}
