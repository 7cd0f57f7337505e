package target

import (
	"context"

	"tandem/shared/precedence"
	"tandem/shared/schema"
)

// RemoveStale deletes the items of the given keys that are still snapshot rows read before
// the fence (precedence.StaleSnapshot): what a snapshot chunk a TRUNCATE overtook may have
// written after the TRUNCATE's tombstones. Anything else at those keys (a tombstone, a row
// streamed or read after the fence) stays. It returns how many items it removed.
func (w *Writer) RemoveStale(ctx context.Context, t *schema.Table, keys []Item, fenceLSN uint64) (int, error) {
	guard, err := buildGuard(t, nil, precedence.StaleSnapshot(fenceLSN))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, key := range keys {
		removed, err := w.deleteIf(ctx, t, key, guard, "removing stale snapshot rows of")
		if err != nil {
			return n, err
		}
		if removed {
			n++
		}
	}
	return n, nil
}
