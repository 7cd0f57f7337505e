package snapshot

import (
	"context"
	"math/rand/v2"
	"sync"

	"tandem/shared/control"
	"tandem/shared/fault"
	"tandem/shared/pg"
	"tandem/shared/precedence"
	"tandem/shared/schema"
)

// write puts the chunk's rows with Writers requests in flight and returns once every
// write is durable (or lost to a stream write, which is the point). The rows go out in a
// random order: in key order, every writer would hit the same partition at once, and the
// next chunk the next one, a rolling hot partition.
func (c *Copier) write(ctx context.Context, t *schema.Table, ch pg.Chunk, st control.TableState) error {
	read := precedence.Read{LSN: uint64(ch.LSN), Epoch: st.Epoch, Floor: st.FloorLSN}
	rows := make(chan [][]byte)
	errs := make(chan error, c.Writers)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range c.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for row := range rows {
				if err := c.writeRow(ctx, t, row, read); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		}()
	}
send:
	for _, i := range rand.Perm(len(ch.Rows)) {
		select {
		case rows <- ch.Rows[i]:
		case <-ctx.Done():
			break send
		}
	}
	close(rows)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

// writeRow writes one row. A row DynamoDB can never hold (a poison value or key) is a
// dead letter naming the table, key and column, and the copy goes on: one bad row never
// fails a whole table, whichever limit it breaks.
func (c *Copier) writeRow(ctx context.Context, t *schema.Table, row [][]byte, read precedence.Read) error {
	item, err := t.Item(row)
	if err == nil {
		_, err = c.Writer.Snapshot(ctx, t, item, read)
	}
	if !fault.IsPoison(err) {
		return err
	}
	d := control.DeadLetterOf(err, t.Source(), t.KeyString(row), read.LSN, "snapshot")
	c.Log.Error("row cannot be written to DynamoDB, dead-lettered", "table", d.Table, "key", d.Key, "column", d.Column, "reason", d.Reason)
	return c.Control.AddDeadLetter(ctx, d)
}
