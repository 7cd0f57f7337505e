package pipeline

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// A refused login makes the next connection read the secret again at once, whatever the
// cached password's age, and the connections refused together cause one read, not one
// each. A refusal of a password already replaced changes nothing.
func TestSecretReadAgainAfterRefusal(t *testing.T) {
	var reads atomic.Int32
	var current atomic.Value
	current.Store("first")
	s := &secretPassword{read: func(context.Context) (string, error) {
		reads.Add(1)
		return fmt.Sprintf("postgres://u:%s@db/app", current.Load()), nil
	}}
	ctx := context.Background()
	if _, err := s.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	password := func() string {
		t.Helper()
		pw, err := s.Password(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return pw
	}
	if pw := password(); pw != "first" || reads.Load() != 1 {
		t.Fatalf("before the rotation: %q after %d reads", pw, reads.Load())
	}

	current.Store("second") // rotated; the cache is fresh, so nothing reads it yet
	if pw := password(); pw != "first" || reads.Load() != 1 {
		t.Fatalf("a fresh cache was not used: %q after %d reads", pw, reads.Load())
	}
	// Eight connections refused with the old password, then eight new ones at once.
	for range 8 {
		s.Refused("first")
	}
	var wg sync.WaitGroup
	got := make(chan string, 8)
	for range 8 {
		wg.Go(func() {
			pw, err := s.Password(ctx)
			if err != nil {
				t.Error(err)
			}
			got <- pw
		})
	}
	wg.Wait()
	close(got)
	for pw := range got {
		if pw != "second" {
			t.Errorf("after the refusal a connection got %q", pw)
		}
	}
	if n := reads.Load(); n != 2 {
		t.Fatalf("the secret was read %d times in all, want 2 (once at start, once after the refusals)", n)
	}
	// A connection that set out with the old password is refused after the re-read:
	// the new password stays.
	s.Refused("first")
	if pw := password(); pw != "second" || reads.Load() != 2 {
		t.Fatalf("a late refusal of the old password: %q after %d reads", pw, reads.Load())
	}
}
