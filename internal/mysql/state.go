package mysql

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/go-mysql-org/go-mysql/client"
)

// The migration's own record on a MySQL target, beside progress and snapshot: its phase, the
// post-data statements to run after the copy and how many have run.
const migrationSQL = "CREATE TABLE IF NOT EXISTS `" + StateDB + "`.`migration` (\n" +
	"  `name` varchar(64) NOT NULL PRIMARY KEY,\n" +
	"  `phase` varchar(32) NOT NULL,\n" +
	"  `failed_in` varchar(32) NULL,\n" +
	"  `error` text NULL,\n" +
	"  `post_data` longtext NOT NULL,\n" +
	"  `post_done` int NOT NULL DEFAULT 0,\n" +
	"  `started_at` datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),\n" +
	"  `updated_at` datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)\n" +
	") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

// Migration is a migration's record on a MySQL target.
type Migration struct {
	Phase, FailedIn, Error string
	PostData               []string
	PostDone               int
}

// ResumePhase is the phase to run: the one a failed migration failed in.
func (m *Migration) ResumePhase() string {
	if m.Phase == "failed" && m.FailedIn != "" {
		return m.FailedIn
	}
	return m.Phase
}

// LoadMigration reads the named migration; ok is false when there is none.
func LoadMigration(c *client.Conn, name string) (m *Migration, ok bool, err error) {
	rows, err := QueryStrings(c, "SELECT `phase`, coalesce(`failed_in`, ''), coalesce(`error`, ''), `post_data`, `post_done` FROM `"+StateDB+"`.`migration` WHERE `name` = ?", name)
	if noState(err) || (err == nil && len(rows) == 0) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read the migration state on the target: %w", err)
	}
	r := rows[0]
	m = &Migration{Phase: *r[0], FailedIn: *r[1], Error: *r[2]}
	if err := json.Unmarshal([]byte(*r[3]), &m.PostData); err != nil {
		return nil, false, fmt.Errorf("read the migration state on the target: post-data: %w", err)
	}
	m.PostDone, _ = strconv.Atoi(*r[4])
	return m, true, nil
}

// CreateMigration records a new migration in phase snapshotting, with its stream starting at
// start, in one transaction.
func CreateMigration(c *client.Conn, name, stream, start string, post []string) error {
	if _, err := c.Execute(migrationSQL); err != nil {
		return fmt.Errorf("create migrated's state on the target: %w", err)
	}
	postJSON, err := json.Marshal(post)
	if err != nil {
		return err
	}
	if post == nil {
		postJSON = []byte("[]")
	}
	if err := c.Begin(); err != nil {
		return err
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"INSERT INTO `" + StateDB + "`.`migration` (`name`, `phase`, `post_data`) VALUES (?, 'snapshotting', ?)", []any{name, string(postJSON)}},
		{"INSERT INTO `" + StateDB + "`.`progress` (`migration`, `stream`, `position`, `updated_at`) VALUES (?, ?, ?, UTC_TIMESTAMP(6)) ON DUPLICATE KEY UPDATE `position` = VALUES(`position`), `updated_at` = VALUES(`updated_at`)", []any{name, stream, start}},
		{"DELETE FROM `" + StateDB + "`.`snapshot` WHERE `migration` = ?", []any{name}},
	} {
		if r, err := c.Execute(q.sql, q.args...); err != nil {
			_ = c.Rollback()
			return fmt.Errorf("record the new migration on the target: %w", err)
		} else {
			r.Close()
		}
	}
	return c.Commit()
}

// SetPhase records a phase; a failed phase also records where it failed and why.
func SetPhase(c *client.Conn, name, phase, failedIn, reason string) error {
	var err error
	if phase == "failed" {
		_, err = c.Execute("UPDATE `"+StateDB+"`.`migration` SET `phase` = ?, `failed_in` = ?, `error` = ? WHERE `name` = ?", phase, failedIn, reason, name)
	} else {
		_, err = c.Execute("UPDATE `"+StateDB+"`.`migration` SET `phase` = ?, `failed_in` = NULL, `error` = NULL WHERE `name` = ?", phase, name)
	}
	if err != nil {
		return fmt.Errorf("record phase %s on the target: %w", phase, err)
	}
	return nil
}

// SetPostDone records that the first n post-data statements have run.
func SetPostDone(c *client.Conn, name string, n int) error {
	if _, err := c.Execute("UPDATE `"+StateDB+"`.`migration` SET `post_done` = ? WHERE `name` = ?", n, name); err != nil {
		return fmt.Errorf("record post-data progress on the target: %w", err)
	}
	return nil
}

// The newest verify result of each migration, as JSON, so that a restart keeps it.
const verifySQL = "CREATE TABLE IF NOT EXISTS `" + StateDB + "`.`verify_result` (\n" +
	"  `migration` varchar(64) NOT NULL PRIMARY KEY,\n" +
	"  `result` longtext NOT NULL,\n" +
	"  `updated_at` datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)\n" +
	") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

// SaveVerify records the newest verify result of a migration.
func SaveVerify(c *client.Conn, name, result string) error {
	if _, err := c.Execute(verifySQL); err != nil {
		return fmt.Errorf("create the verify record on the target: %w", err)
	}
	if _, err := c.Execute("INSERT INTO `"+StateDB+"`.`verify_result` (`migration`, `result`) VALUES (?, ?) ON DUPLICATE KEY UPDATE `result` = VALUES(`result`)", name, result); err != nil {
		return fmt.Errorf("record the verify result on the target: %w", err)
	}
	return nil
}

// LoadVerify reads the newest verify result of a migration; ok is false when there is none.
func LoadVerify(c *client.Conn, name string) (result string, ok bool, err error) {
	s, ok, err := QueryString(c, "SELECT `result` FROM `"+StateDB+"`.`verify_result` WHERE `migration` = ?", name)
	if noState(err) {
		return "", false, nil
	}
	return s, ok, err
}
