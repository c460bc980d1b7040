package mysql

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/migrated/migrated/internal/state"
)

// The cutover and rollback journal on a MySQL target, the same record state.Store keeps on a
// PostgreSQL one: an operation's facts, and its journal entries in order. Each write that moves
// the migration to a new phase does it in the same transaction.
var operationSQL = []string{
	"CREATE TABLE IF NOT EXISTS `" + StateDB + "`.`operations` (\n" +
		"  `id` bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,\n" +
		"  `migration` varchar(64) NOT NULL,\n" +
		"  `op` varchar(16) NOT NULL,\n" +
		"  `outcome` varchar(16) NOT NULL DEFAULT 'running',\n" +
		"  `started_at` datetime(6) NOT NULL,\n" +
		"  `finished_at` datetime(6) NULL,\n" +
		"  `fence_position` text NOT NULL,\n" +
		"  `write_unavailable_seconds` double NOT NULL DEFAULT 0,\n" +
		"  `step_seconds` text NOT NULL,\n" +
		"  `error` text NOT NULL,\n" +
		"  `hook_error` text NOT NULL,\n" +
		"  KEY (`migration`, `id`)\n" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
	"CREATE TABLE IF NOT EXISTS `" + StateDB + "`.`journal` (\n" +
		"  `operation` bigint NOT NULL,\n" +
		"  `seq` int NOT NULL,\n" +
		"  `step` varchar(32) NOT NULL,\n" +
		"  `state` varchar(16) NOT NULL,\n" +
		"  `at` datetime(6) NOT NULL,\n" +
		"  `detail` text NOT NULL,\n" +
		"  PRIMARY KEY (`operation`, `seq`)\n" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
}

// OpStore keeps the operations of one migration on a MySQL target. Do runs a function on the
// target's state session, one caller at a time.
type OpStore struct {
	Do        func(func(c *client.Conn) error) error
	Migration string
}

// EnsureOperations creates the operation tables if missing.
func EnsureOperations(c *client.Conn) error {
	for _, q := range operationSQL {
		if _, err := c.Execute(q); err != nil {
			return fmt.Errorf("create migrated's operation journal in %s on the target: %w", Quote(StateDB), err)
		}
	}
	return nil
}

// tx runs stmts in one transaction on the state session.
func (s *OpStore) tx(stmts func(c *client.Conn) error) error {
	return s.Do(func(c *client.Conn) error {
		if err := c.Begin(); err != nil {
			return err
		}
		if err := stmts(c); err != nil {
			_ = c.Rollback()
			return err
		}
		return c.Commit()
	})
}

func (s *OpStore) setPhase(c *client.Conn, phase state.Phase) error {
	_, err := c.Execute("UPDATE `"+StateDB+"`.`migration` SET `phase` = ?, `failed_in` = NULL, `error` = NULL WHERE `name` = ?", string(phase), s.Migration)
	return err
}

// BeginOperation records a new running operation and moves the migration to phase.
func (s *OpStore) BeginOperation(_ context.Context, op string, phase state.Phase) (*state.Operation, error) {
	o := &state.Operation{Op: op, Outcome: "running", StepSeconds: map[string]float64{}, StartedAt: time.Now().UTC().Truncate(time.Microsecond)}
	err := s.tx(func(c *client.Conn) error {
		r, err := c.Execute("INSERT INTO `"+StateDB+"`.`operations` (`migration`, `op`, `started_at`, `fence_position`, `step_seconds`, `error`, `hook_error`) VALUES (?, ?, ?, '', '{}', '', '')",
			s.Migration, op, o.StartedAt.Format(timeLayout))
		if err != nil {
			return err
		}
		o.ID = int64(r.InsertId)
		return s.setPhase(c, phase)
	})
	if err != nil {
		return nil, fmt.Errorf("record the start of the %s: %w", op, err)
	}
	return o, nil
}

// Journal appends an entry; a non-empty phase is recorded in the same transaction.
func (s *OpStore) Journal(_ context.Context, o *state.Operation, e state.JournalEntry, phase state.Phase) error {
	e.At = time.Now().UTC().Truncate(time.Microsecond)
	err := s.tx(func(c *client.Conn) error {
		if _, err := c.Execute("INSERT INTO `"+StateDB+"`.`journal` (`operation`, `seq`, `step`, `state`, `at`, `detail`) VALUES (?, ?, ?, ?, ?, ?)",
			o.ID, len(o.Journal), e.Step, e.State, e.At.Format(timeLayout), e.Detail); err != nil {
			return err
		}
		if phase != "" {
			return s.setPhase(c, phase)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write the %s journal (%s %s): %w", o.Op, e.Step, e.State, err)
	}
	o.Journal = append(o.Journal, e)
	return nil
}

func (s *OpStore) save(c *client.Conn, o *state.Operation) error {
	steps, err := json.Marshal(o.StepSeconds)
	if err != nil {
		return err
	}
	var finished any
	if o.FinishedAt != nil {
		finished = o.FinishedAt.UTC().Format(timeLayout)
	}
	_, err = c.Execute("UPDATE `"+StateDB+"`.`operations` SET `outcome` = ?, `finished_at` = ?, `fence_position` = ?, `write_unavailable_seconds` = ?, `step_seconds` = ?, `error` = ?, `hook_error` = ? WHERE `id` = ?",
		o.Outcome, finished, o.FencePosition, o.WriteUnavailableSeconds, string(steps), o.Error, o.HookError, o.ID)
	return err
}

// SaveOperation writes the operation's facts (not its journal).
func (s *OpStore) SaveOperation(_ context.Context, o *state.Operation) error {
	if err := s.Do(func(c *client.Conn) error { return s.save(c, o) }); err != nil {
		return fmt.Errorf("record the %s: %w", o.Op, err)
	}
	return nil
}

// FinishOperation records the outcome and moves the migration to phase, in one transaction.
func (s *OpStore) FinishOperation(_ context.Context, o *state.Operation, phase state.Phase) error {
	now := time.Now().UTC().Truncate(time.Microsecond)
	o.FinishedAt = &now
	if err := s.tx(func(c *client.Conn) error {
		if err := s.save(c, o); err != nil {
			return err
		}
		return s.setPhase(c, phase)
	}); err != nil {
		return fmt.Errorf("record the end of the %s: %w", o.Op, err)
	}
	return nil
}

// LastOperation returns the newest operation with its journal, or nil if there is none.
func (s *OpStore) LastOperation(_ context.Context) (*state.Operation, error) {
	var o *state.Operation
	err := s.Do(func(c *client.Conn) error {
		rows, err := QueryStrings(c, "SELECT `id`, `op`, `outcome`, DATE_FORMAT(`started_at`, '%Y-%m-%d %H:%i:%s.%f'), DATE_FORMAT(`finished_at`, '%Y-%m-%d %H:%i:%s.%f'), "+
			"`fence_position`, `write_unavailable_seconds`, `step_seconds`, `error`, `hook_error` FROM `"+StateDB+"`.`operations` WHERE `migration` = ? ORDER BY `id` DESC LIMIT 1", s.Migration)
		if noState(err) {
			return nil
		}
		if err != nil || len(rows) == 0 {
			return err
		}
		r := rows[0]
		o = &state.Operation{Op: deref(r[1]), Outcome: deref(r[2]), FencePosition: deref(r[5]), Error: deref(r[8]), HookError: deref(r[9])}
		o.ID, _ = strconv.ParseInt(deref(r[0]), 10, 64)
		if o.StartedAt, err = time.Parse(timeLayout, deref(r[3])); err != nil {
			return err
		}
		if r[4] != nil {
			at, err := time.Parse(timeLayout, *r[4])
			if err != nil {
				return err
			}
			o.FinishedAt = &at
		}
		o.WriteUnavailableSeconds, _ = strconv.ParseFloat(deref(r[6]), 64)
		if err := json.Unmarshal([]byte(deref(r[7])), &o.StepSeconds); err != nil || o.StepSeconds == nil {
			o.StepSeconds = map[string]float64{}
		}
		entries, err := QueryStrings(c, "SELECT `step`, `state`, DATE_FORMAT(`at`, '%Y-%m-%d %H:%i:%s.%f'), `detail` FROM `"+StateDB+"`.`journal` WHERE `operation` = ? ORDER BY `seq`", o.ID)
		if err != nil {
			return err
		}
		for _, e := range entries {
			at, _ := time.Parse(timeLayout, deref(e[2]))
			o.Journal = append(o.Journal, state.JournalEntry{Step: deref(e[0]), State: deref(e[1]), At: at, Detail: deref(e[3])})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the last operation: %w", err)
	}
	return o, nil
}
