package main

import (
	"context"
	"fmt"
)

// applyDecode measures the ceiling every logical-replication consumer shares: how long the
// source's walsender takes to decode the same backlog through pgoutput, with a client
// (pg_recvlogical) that writes what it receives to /dev/null and applies nothing.
func (b *bench) applyDecode(ctx context.Context, a *applyResults) error {
	defer b.dropDB(b.srcPG, "apply_dec_src")
	defer b.dropDB(b.dstPG, "apply_dec_dst")
	b.logf("apply: decode only: pgbench -i -s %d", a.scale)
	src, _, err := b.freshPair(ctx, "apply_dec", a.scale)
	if err != nil {
		return err
	}
	if err := execSQL(ctx, src, "CREATE PUBLICATION bench_dec FOR ALL TABLES",
		"SELECT pg_create_logical_replication_slot('bench_dec', 'pgoutput')"); err != nil {
		return err
	}
	defer execSQL(context.WithoutCancel(ctx), src, "SELECT pg_drop_replication_slot('bench_dec')")
	end, _, err := b.runBacklog(ctx, src, a)
	if err != nil {
		return err
	}
	b.logf("apply: decode only: pg_recvlogical to %s", end)
	a.decode.d, err = timed(func() error {
		return runTool(ctx, "pg_recvlogical", "--dbname", src, "--slot", "bench_dec", "--start",
			"-o", "proto_version=1", "-o", "publication_names=bench_dec", "--endpos", end, "--file", "/dev/null")
	})
	if err != nil {
		return fmt.Errorf("pg_recvlogical: %w", err)
	}
	b.logf("apply: decode only: %.1f s", a.decode.d.Seconds())
	return nil
}
