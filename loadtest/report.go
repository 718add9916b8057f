package loadtest

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Print writes one table per scenario and returns whether every row passed.
func Print(w io.Writer, scenario string, rows []Row) bool {
	fmt.Fprintf(w, "\n%s\n", scenario)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "stream\tcount\terrors\tp50\tp99\tthreshold\tresult\t")
	all := true
	for _, r := range rows {
		th := "-"
		if r.Threshold > 0 {
			th = "p99 < " + r.Threshold.String()
		}
		th += fmt.Sprintf(", errors ≤ %.1f%%", r.MaxErrRate*100)
		res := "PASS"
		if !r.Pass() {
			res, all = "FAIL", false
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t\n", r.Stream, r.Count, r.Errors, dur(r.P50), dur(r.P99), th, res)
	}
	tw.Flush()
	for _, r := range rows {
		if r.Note != "" {
			fmt.Fprintf(w, "  %s: %s\n", r.Stream, r.Note)
		}
	}
	return all
}

func dur(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	if d < time.Second {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}
