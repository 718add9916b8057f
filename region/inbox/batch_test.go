package inbox

import (
	"strings"
	"testing"
)

func TestBatchesRespectRowAndByteLimits(t *testing.T) {
	small := Item{UserID: "u", Body: "hi"}
	big := Item{UserID: "u", Body: strings.Repeat("x", MaxBatchBytes)}
	many := func(n int, it Item) []Item {
		out := make([]Item, n)
		for i := range out {
			out[i] = it
		}
		return out
	}
	tests := []struct {
		name  string
		items []Item
		rows  int
		want  []int // sizes of the batches
	}{
		{"empty", nil, 10, nil},
		{"fewer than a batch", many(3, small), 10, []int{3}},
		{"row limit splits", many(25, small), 10, []int{10, 10, 5}},
		{"one row per batch", many(3, small), 1, []int{1, 1, 1}},
		{"an oversized item stands alone", append(append(many(2, small), big), many(2, small)...), 10, []int{2, 1, 2}},
		{"byte limit splits before the row limit", many(40, Item{UserID: "u", Body: strings.Repeat("y", 1000)}), 10, []int{4, 4, 4, 4, 4, 4, 4, 4, 4, 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			total := 0
			for _, b := range Batches(tc.items, tc.rows) {
				got = append(got, len(b))
				total += len(b)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("batches %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("batches %v, want %v", got, tc.want)
				}
			}
			if total != len(tc.items) {
				t.Fatalf("%d items batched, want %d", total, len(tc.items))
			}
		})
	}
}
