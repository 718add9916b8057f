package scan

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// WriteTextfile writes the report as Prometheus metrics in the text exposition format, for
// node_exporter's textfile collector (a scheduled scan runs `herald audit residency
// --textfile DIR/herald_residency.prom`): herald_residency_scan_violations per region and store
// (0 for every store read, so a fixed violation clears the alert), the unregistered users, and
// the time of the scan. The file is replaced atomically.
func WriteTextfile(path string, rep *Report, at time.Time) error {
	type key struct{ region, store string }
	counts := map[key]int{}
	for _, s := range rep.Stores {
		counts[key{s.Region, s.Store}] = 0
	}
	for _, f := range rep.Misplaced {
		counts[key{f.Region, f.Store}]++
	}
	keys := make([]key, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		if a.region != b.region {
			return cmpString(a.region, b.region)
		}
		return cmpString(a.store, b.store)
	})
	var b bytes.Buffer
	b.WriteString("# HELP herald_residency_scan_violations Sightings of users' data in a region outside their jurisdiction, at the last scan.\n")
	b.WriteString("# TYPE herald_residency_scan_violations gauge\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "herald_residency_scan_violations{region=%q,store=%q} %d\n", k.region, k.store, counts[k])
	}
	b.WriteString("# HELP herald_residency_scan_unregistered_users Users found in region stores that the directory does not know, at the last scan.\n")
	b.WriteString("# TYPE herald_residency_scan_unregistered_users gauge\n")
	fmt.Fprintf(&b, "herald_residency_scan_unregistered_users %d\n", rep.UnregisteredUsers)
	b.WriteString("# HELP herald_residency_scan_timestamp_seconds When the last residency scan finished.\n")
	b.WriteString("# TYPE herald_residency_scan_timestamp_seconds gauge\n")
	fmt.Fprintf(&b, "herald_residency_scan_timestamp_seconds %d\n", at.Unix())

	tmp, err := os.CreateTemp(filepath.Dir(path), ".herald_residency-*.prom")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
