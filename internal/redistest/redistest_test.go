package redistest

import (
	"context"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(Main(m))
}

func TestSharedServerAnswersAndKeepsPrefixesApart(t *testing.T) {
	s := Shared(t)
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, b := s.Prefix(t), s.Prefix(t)
	if a == b {
		t.Fatalf("two calls got the same prefix %q", a)
	}
	if err := c.Set(ctx, a+":k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(ctx, a+":k").Result(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v; want v", got, err)
	}
}

func TestStopServerLosesDataAndStartServerComesBackOnTheSameAddress(t *testing.T) {
	s := Own(t, Options{TCP: true})
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.StopServer()
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	err := c.Ping(short).Err()
	cancelShort()
	if err == nil {
		t.Fatal("PING answered while the server was stopped")
	}
	if err := s.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS k after a restart = %d, %v; want 0 (nothing is persisted)", n, err)
	}
}

func TestPausedServerDoesNotAnswerUntilResumed(t *testing.T) {
	s := Own(t, Options{})
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	err := c.Ping(short).Err()
	cancelShort()
	if err == nil {
		t.Fatal("a paused server answered PING")
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
}

func TestStopRemovesEverything(t *testing.T) {
	Skip(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := s.dir
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Stop (err %v)", dir, err)
	}
	if err := s.StartServer(ctx); err == nil {
		t.Error("StartServer after Stop succeeded")
	}
}
