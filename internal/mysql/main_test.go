package mysql

import (
	"testing"

	"github.com/migrated/migrated/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
