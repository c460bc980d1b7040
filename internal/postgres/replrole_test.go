package postgres

import (
	"context"
	"strings"
	"testing"
)

// TestCheckReplicationRole tells a role that may set session_replication_role from one that
// may not, and the GRANT it names makes the difference.
func TestCheckReplicationRole(t *testing.T) {
	ctx := context.Background()
	conn, _ := testDB(t, "replrole", `
DO $$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'migrated_test_weak') THEN CREATE ROLE migrated_test_weak; END IF;
END$$;
REVOKE SET ON PARAMETER session_replication_role FROM migrated_test_weak;`)
	if err := CheckReplicationRole(ctx, conn); err != nil {
		t.Fatalf("as a superuser: %v", err)
	}
	if _, err := conn.Exec(ctx, "SET ROLE migrated_test_weak"); err != nil {
		t.Fatal(err)
	}
	err := CheckReplicationRole(ctx, conn)
	if err == nil || !strings.Contains(err.Error(), "GRANT SET ON PARAMETER session_replication_role") {
		t.Fatalf("as a role without the grant: %v", err)
	}
	if _, err := conn.Exec(ctx, "RESET ROLE; GRANT SET ON PARAMETER session_replication_role TO migrated_test_weak; SET ROLE migrated_test_weak"); err != nil {
		t.Fatal(err)
	}
	if err := CheckReplicationRole(ctx, conn); err != nil {
		t.Errorf("after the GRANT: %v", err)
	}
	if _, err := conn.Exec(ctx, "RESET ROLE; REVOKE SET ON PARAMETER session_replication_role FROM migrated_test_weak"); err != nil {
		t.Fatal(err)
	}
}
