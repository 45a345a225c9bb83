package pgtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(Main(m))
}

func TestSharedClusterServesItsOwnDatabases(t *testing.T) {
	c := Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	connA, connB := c.NewDatabase(t), c.NewDatabase(t)
	if connA == connB {
		t.Fatalf("two tests got the same database: %s", connA)
	}
	conn, err := pgx.Connect(ctx, connA)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	if db == "postgres" || db == "" {
		t.Errorf("connected to %q, want the test's own database", db)
	}
	if c.Version == "" {
		t.Error("Version is empty")
	}
}

func TestStopRemovesEverything(t *testing.T) {
	if _, err := FindBinaries(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := c.dir
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Stop (err %v)", dir, err)
	}
	if _, err := pgx.Connect(ctx, c.ConnString("postgres")); err == nil {
		t.Error("the server still accepts connections after Stop")
	}
}

// A server stopped or crashed and started again keeps its data and answers
// on the same connection string; while it is down, connections are refused.
func TestServerStopsAndStartsOnTheSameData(t *testing.T) {
	if _, err := FindBinaries(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	conn := c.ConnString("postgres")
	exec := func(sql string) error {
		db, err := pgx.Connect(ctx, conn)
		if err != nil {
			return err
		}
		defer db.Close(ctx)
		_, err = db.Exec(ctx, sql)
		return err
	}
	count := func() int {
		t.Helper()
		db, err := pgx.Connect(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close(ctx)
		var n int
		if err := db.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := exec("CREATE TABLE t (id serial PRIMARY KEY); INSERT INTO t DEFAULT VALUES"); err != nil {
		t.Fatal(err)
	}
	for _, halt := range []struct {
		name string
		fn   func(context.Context) error
	}{{"StopServer", c.StopServer}, {"CrashServer", c.CrashServer}} {
		pid := c.PID()
		if err := halt.fn(ctx); err != nil {
			t.Fatalf("%s: %v", halt.name, err)
		}
		if c.PID() != 0 {
			t.Errorf("after %s, PID is %d, want 0", halt.name, c.PID())
		}
		if err := exec("SELECT 1"); err == nil {
			t.Fatalf("after %s, the server still accepts connections", halt.name)
		}
		if err := c.StartServer(ctx); err != nil {
			t.Fatalf("starting after %s: %v", halt.name, err)
		}
		if c.PID() == 0 || c.PID() == pid {
			t.Errorf("after restarting, PID is %d (was %d), want a new process", c.PID(), pid)
		}
		if err := exec("INSERT INTO t DEFAULT VALUES"); err != nil {
			t.Fatalf("after %s: %v", halt.name, err)
		}
	}
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 3 {
		t.Errorf("%d rows after the restarts, want 3", n)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.StartServer(ctx); err == nil {
		t.Error("StartServer after Stop succeeded")
	}
}
