package mysql

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/migrated/migrated/internal/testenv"
)

// A MariaDB 10.11 SHOW CREATE TABLE, with one of each kind of definition.
const showCreateSample = "CREATE TABLE `t` (\n" +
	"  `id` int(11) NOT NULL AUTO_INCREMENT,\n" +
	"  `a` varchar(10) DEFAULT NULL COMMENT 'KEY `x`,\\nUNIQUE',\n" +
	"  `p` int(11) DEFAULT NULL,\n" +
	"  `j` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT NULL CHECK (json_valid(`j`)),\n" +
	"  `g` int(11) GENERATED ALWAYS AS (`p` * 2) VIRTUAL,\n" +
	"  `geo` point NOT NULL,\n" +
	"  PRIMARY KEY (`id`),\n" +
	"  UNIQUE KEY `ua` (`a`),\n" +
	"  UNIQUE KEY `we``ird` (`p`,`a`),\n" +
	"  KEY `ka` (`a`),\n" +
	"  KEY `fk` (`p`),\n" +
	"  SPATIAL KEY `sp` (`geo`),\n" +
	"  FULLTEXT KEY `ft` (`a`),\n" +
	"  FULLTEXT KEY `ft2` (`a`),\n" +
	"  CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `p` (`id`) ON DELETE CASCADE,\n" +
	"  CONSTRAINT `j2` CHECK (json_valid(`j`)),\n" +
	"  CONSTRAINT `chk` CHECK (`p` > 0)\n" +
	") ENGINE=InnoDB AUTO_INCREMENT=3 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci COMMENT='hi\\nthere'\n" +
	" PARTITION BY HASH (`id`)\n" +
	"PARTITIONS 2"

func TestSplitCreateTable(t *testing.T) {
	for _, tt := range []struct {
		name, keep string
		create     string
		parts      createParts
	}{
		{
			name: "primary key",
			create: "CREATE TABLE `d`.`t` (\n" +
				"  `id` int(11) NOT NULL AUTO_INCREMENT,\n" +
				"  `a` varchar(10) DEFAULT NULL COMMENT 'KEY `x`,\\nUNIQUE',\n" +
				"  `p` int(11) DEFAULT NULL,\n" +
				"  `j` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT NULL CHECK (json_valid(`j`)),\n" +
				"  `g` int(11) GENERATED ALWAYS AS (`p` * 2) VIRTUAL,\n" +
				"  `geo` point NOT NULL,\n" +
				"  PRIMARY KEY (`id`),\n" +
				"  CONSTRAINT `j2` CHECK (json_valid(`j`)),\n" +
				"  CONSTRAINT `chk` CHECK (`p` > 0)\n" +
				") ENGINE=InnoDB AUTO_INCREMENT=3 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci COMMENT='hi\\nthere'\n" +
				" PARTITION BY HASH (`id`)\n" +
				"PARTITIONS 2",
			parts: createParts{
				indexes:     []string{"UNIQUE KEY `ua` (`a`)", "UNIQUE KEY `we``ird` (`p`,`a`)", "KEY `ka` (`a`)", "KEY `fk` (`p`)", "SPATIAL KEY `sp` (`geo`)"},
				fulltext:    []string{"FULLTEXT KEY `ft` (`a`)", "FULLTEXT KEY `ft2` (`a`)"},
				foreignKeys: []string{"CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `p` (`id`) ON DELETE CASCADE"},
			},
		},
		{
			name: "identifying unique key",
			keep: "we`ird",
			parts: createParts{
				indexes:     []string{"UNIQUE KEY `ua` (`a`)", "KEY `ka` (`a`)", "KEY `fk` (`p`)", "SPATIAL KEY `sp` (`geo`)"},
				fulltext:    []string{"FULLTEXT KEY `ft` (`a`)", "FULLTEXT KEY `ft2` (`a`)"},
				foreignKeys: []string{"CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `p` (`id`) ON DELETE CASCADE"},
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			create, parts, err := splitCreateTable(showCreateSample, "`d`.`t`", tt.keep)
			if err != nil {
				t.Fatal(err)
			}
			if tt.create != "" && create != tt.create {
				t.Errorf("create =\n%s\nwant\n%s", create, tt.create)
			}
			if tt.keep != "" && !strings.Contains(create, "  UNIQUE KEY `we``ird` (`p`,`a`),\n") {
				t.Errorf("the identifying key is not kept:\n%s", create)
			}
			if !slices.Equal(parts.indexes, tt.parts.indexes) || !slices.Equal(parts.fulltext, tt.parts.fulltext) || !slices.Equal(parts.foreignKeys, tt.parts.foreignKeys) {
				t.Errorf("parts = %q\nwant %q", parts, tt.parts)
			}
		})
	}
	for _, bad := range []string{"", "CREATE VIEW `v` AS select 1", "CREATE TABLE `t` (\n  `id` int\n"} {
		if _, _, err := splitCreateTable(bad, "`d`.`t`", ""); err == nil {
			t.Errorf("splitCreateTable(%q) succeeded", bad)
		}
	}
}

var autoIncrementOption = regexp.MustCompile(` AUTO_INCREMENT=\d+`)

func TestAddsForeignKey(t *testing.T) {
	for q, want := range map[string]bool{
		"ALTER TABLE `d`.`t` ADD CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `p` (`id`)":                             true,
		"ALTER TABLE `d`.`t` ADD FOREIGN KEY (`p`) REFERENCES `p` (`id`)":                                             true,
		"ALTER TABLE `d``x`.`a.b ADD c` ADD CONSTRAINT `x FOREIGN KEY` FOREIGN KEY (`p`) REFERENCES `p`":              true,
		"ALTER TABLE `d`.`t` ADD KEY `FOREIGN KEY` (`p`), ADD CONSTRAINT `f` FOREIGN KEY (`p`) REFERENCES `p` (`id`)": false,
		"ALTER TABLE `d`.`FOREIGN KEY` ADD UNIQUE KEY `u` (`p`)":                                                      false,
		"ALTER TABLE `d`.`t` ADD FULLTEXT KEY `body` (`body`)":                                                        false,
		"CREATE INDEX x ON t (p)": false,
	} {
		if got := AddsForeignKey(q); got != want {
			t.Errorf("AddsForeignKey(%q) = %v, want %v", q, got, want)
		}
	}
}

func TestCreateTables(t *testing.T) {
	m := testenv.RequireMariaDB(t)
	ctx := context.Background()
	const srcDB, dstDB = "ddl_src", "ddl_dst"
	for _, db := range []string{srcDB, dstDB} {
		if err := m.CreateDB(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	src, dst := dialTestDB(t, m, srcDB), dialTestDB(t, m, dstDB)
	for _, q := range []string{
		"CREATE TABLE parent (id int NOT NULL AUTO_INCREMENT, code varchar(20) NOT NULL, PRIMARY KEY (id), UNIQUE KEY code (code)) ENGINE=InnoDB COMMENT 'parents'",
		"CREATE TABLE child (" +
			"id bigint unsigned NOT NULL AUTO_INCREMENT, parent_id int, email varchar(100) NOT NULL, body text," +
			" doc json, total decimal(10,2) NOT NULL DEFAULT 0, twice decimal(11,2) AS (total * 2) STORED," +
			" PRIMARY KEY (id), KEY by_total (total), UNIQUE KEY email (email), FULLTEXT KEY body (body)," +
			" KEY by_twice (twice), CONSTRAINT to_parent FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE SET NULL," +
			" CONSTRAINT positive CHECK (total >= 0)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci ROW_FORMAT=DYNAMIC",
		// No primary key: the unique key on NOT NULL columns identifies rows and stays.
		"CREATE TABLE nopk (a int NOT NULL, b int NOT NULL, c int, UNIQUE KEY ab (a, b), UNIQUE KEY c (c), KEY b (b))",
		"INSERT INTO parent (code) VALUES ('x'), ('y')",
		"INSERT INTO child (parent_id, email, total) VALUES (1, 'a@b', 5)",
	} {
		if _, err := src.Execute(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	tables, err := Tables(src, srcDB, nil)
	if err != nil {
		t.Fatal(err)
	}
	// An existing empty table is created again.
	if _, err := dst.Execute("CREATE TABLE nopk (x int)"); err != nil {
		t.Fatal(err)
	}
	post, err := CreateTables(src, srcDB, dst, dstDB, tables)
	if err != nil {
		t.Fatal(err)
	}
	indexes := func(table string) []string {
		rows, err := QueryStrings(dst, "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY INDEX_NAME", dstDB, table)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range rows {
			names = append(names, *r[0])
		}
		return names
	}
	for table, want := range map[string][]string{"parent": {"PRIMARY"}, "child": {"PRIMARY"}, "nopk": {"ab"}} {
		if got := indexes(table); !slices.Equal(got, want) {
			t.Errorf("before post, %s has indexes %q, want %q", table, got, want)
		}
	}
	if n, _, _ := QueryString(dst, "SELECT count(*) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ?", dstDB); n != "0" {
		t.Errorf("before post, the target has %s foreign keys", n)
	}
	if len(post) == 0 || !strings.Contains(post[len(post)-1], "FOREIGN KEY") {
		t.Errorf("foreign keys must come last in post: %q", post)
	}
	// The keys build in parallel, the foreign keys after them: each statement is told apart.
	var fks []bool
	for _, q := range post {
		fks = append(fks, AddsForeignKey(q))
		if table := AlteredTable(q); !strings.HasPrefix(q, "ALTER TABLE "+table+" ADD ") || !strings.HasPrefix(table, "`"+dstDB+"`.`") {
			t.Errorf("AlteredTable(%q) = %q", q, table)
		}
	}
	if want := append(make([]bool, len(post)-1), true); !slices.Equal(fks, want) {
		t.Errorf("AddsForeignKey over post %q = %v, want %v", post, fks, want)
	}
	for _, q := range post {
		if _, err := dst.Execute(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, tbl := range tables {
		want, err := showCreateTable(src, QuoteTable(srcDB, tbl.ID.Name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := showCreateTable(dst, QuoteTable(dstDB, tbl.ID.Name))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := autoIncrementOption.ReplaceAllString(got, ""), autoIncrementOption.ReplaceAllString(want, ""); got != want {
			t.Errorf("after post, %s on the target is\n%s\nwant\n%s", tbl.ID.Name, got, want)
		}
	}

	// A target table with rows is refused, by name.
	if _, err := dst.Execute("INSERT INTO parent (code) VALUES ('z')"); err != nil {
		t.Fatal(err)
	}
	if _, err := CreateTables(src, srcDB, dst, dstDB, tables); err == nil || !strings.Contains(err.Error(), "`parent` already has rows") {
		t.Errorf("CreateTables over a table with rows: err = %v", err)
	}
	if v, _, _ := QueryString(dst, "SELECT @@SESSION.foreign_key_checks"); v != "1" {
		t.Errorf("foreign_key_checks left at %s", v)
	}
}
