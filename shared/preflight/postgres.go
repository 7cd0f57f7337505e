package preflight

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"tandem/shared/pg"
	"tandem/shared/pipeline"
)

// connect opens the database as the handlers do and reports where and how (TLS).
func (c *checker) connect(ctx context.Context) bool {
	src, err := pipeline.SourceFor(ctx, c.cfg, c.o.AWS)
	if err != nil {
		c.r.add(Fail, "postgres", err.Error())
		return false
	}
	parsed, err := pgconn.ParseConfig(src.URL)
	if err != nil {
		c.r.add(Fail, "postgres", "invalid connection string (postgres_url): "+c.scrub(err.Error()))
		return false
	}
	c.password = parsed.Password
	where := src.Endpoint()
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	pool, err := pg.Open(cctx, src, 4)
	if err != nil {
		c.r.add(Fail, "postgres", "cannot connect to "+where+": "+c.scrub(err.Error()))
		return false
	}
	c.pg = pool
	var version string
	if err := pool.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		c.r.add(Fail, "postgres", "connected to "+where+" but cannot query it: "+c.scrub(err.Error()))
		return false
	}
	c.r.add(OK, "postgres", "connected to "+where+" (PostgreSQL "+version+")")

	mode := src.TLSMode()
	tls, err := pg.ReadTLS(ctx, pool)
	if err != nil {
		c.r.add(Warn, "tls", fmt.Sprintf("sslmode=%s; cannot tell whether the connection is encrypted: %v", mode, err))
	} else {
		local := parsed.Host == "localhost" || strings.HasPrefix(parsed.Host, "/") || net.ParseIP(parsed.Host).IsLoopback()
		level, msg := tlsFinding(mode, tls, local, parsed.Host)
		c.r.add(level, "tls", msg)
	}
	return true
}

// checkServer checks what logical replication needs of the server (pg.CheckServer's
// rules, one finding each), its capacity for one more slot and WAL sender, Tandem's slot
// if it exists and the encoding.
func (c *checker) checkServer(ctx context.Context) {
	level, err := pg.WALLevel(ctx, c.pg)
	if err == nil {
		err = pg.CheckWALLevel(level)
	}
	c.r.check("wal_level", err, "logical")

	c.r.check("replication privilege", pg.CheckReplicationRole(ctx, c.pg), "the role may create and stream a replication slot")

	slot := c.cfg.Slot
	capacity, err := pg.ReadCapacity(ctx, c.pg, slot)
	if err != nil {
		c.r.add(Fail, "max_replication_slots", err.Error())
	} else {
		used := fmt.Sprintf("%d of %d used by other slots", len(capacity.OtherSlots), capacity.MaxSlots)
		if len(capacity.OtherSlots) > 0 {
			used += " (" + strings.Join(capacity.OtherSlots, ", ") + ")"
		}
		if capacity.OwnSlot {
			used += "; Tandem's slot " + slot + " exists"
		} else {
			used += "; Tandem needs one for slot " + slot
		}
		c.r.check("max_replication_slots", capacity.CheckSlots(slot), used)
		c.r.check("max_wal_senders", capacity.CheckSenders(),
			fmt.Sprintf("%d of %d WAL senders used by other connections; the streamer needs one", capacity.OtherSenders, capacity.MaxSenders))
	}

	s, err := pg.ReadSlot(ctx, c.pg, slot)
	switch {
	case errors.Is(err, pg.ErrSlotMissing):
		c.r.add(OK, "slot "+slot, "does not exist yet: plan creates it")
	case err != nil:
		c.r.add(Fail, "slot "+slot, err.Error())
	default:
		msg := fmt.Sprintf("exists (pgoutput), confirmed up to %s, retains %d bytes of WAL", s.ConfirmedFlushLSN, s.RetainedBytes())
		if s.Active {
			msg += fmt.Sprintf("; in use by PID %d (a streamer is running)", s.ActivePID)
		}
		c.r.add(OK, "slot "+slot, msg)
	}

	var encoding string
	if err := c.pg.QueryRow(ctx, "SHOW server_encoding").Scan(&encoding); err == nil {
		if encoding == "SQL_ASCII" {
			c.r.add(Warn, "server_encoding", "SQL_ASCII: text is not checked by PostgreSQL, and a value that is not valid UTF-8 cannot be a DynamoDB string: such rows become dead letters")
		} else {
			c.r.add(OK, "server_encoding", encoding)
		}
	}
}

// tlsFinding judges a connection's TLS: anything weaker than verify-full is a warning,
// except on this machine (loopback or a unix socket), where nothing crosses a network.
func tlsFinding(mode string, tls pg.TLS, local bool, host string) (Level, string) {
	weak := Warn
	if local {
		weak = OK
	}
	switch {
	case tls.Encrypted && mode == "verify-full":
		return OK, fmt.Sprintf("encrypted (%s, %s), sslmode=verify-full: the server's certificate and host name are verified", tls.Version, tls.Cipher)
	case tls.Encrypted && mode == "verify-ca":
		return weak, fmt.Sprintf("encrypted (%s, %s), sslmode=verify-ca: the server's certificate is verified but not its host name (sslmode=verify-full would)", tls.Version, tls.Cipher)
	case tls.Encrypted:
		return weak, fmt.Sprintf("encrypted (%s, %s), sslmode=%s: the server's certificate is not verified (sslmode=verify-full with sslrootcert would)", tls.Version, tls.Cipher, mode)
	case local:
		return OK, fmt.Sprintf("not encrypted (sslmode=%s): a local connection (%s); use sslmode=verify-full for a database across a network", mode, host)
	}
	return Warn, fmt.Sprintf("the connection is NOT encrypted (sslmode=%s): the database's traffic, passwords included, crosses the network in clear; enable TLS on the server and use sslmode=verify-full", mode)
}
