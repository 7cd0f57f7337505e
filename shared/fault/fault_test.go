package fault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/smithy-go"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestClassify(t *testing.T) {
	api := func(code string) error { return &smithy.GenericAPIError{Code: code, Message: "m"} }
	pgErr := func(code string) error { return &pgconn.PgError{Code: code, Message: "m"} }
	cases := []struct {
		err  error
		want Class
	}{
		{nil, None},
		{api("ProvisionedThroughputExceededException"), Transient},
		{api("ThrottlingException"), Transient},
		{api("InternalServerError"), Transient},
		{api("ServiceUnavailable"), Transient},
		{api("ValidationException"), Poison},
		{fmt.Errorf("dynamodb: writing to t: %w", api("ValidationException")), Poison},
		{api("ResourceNotFoundException"), Poison},
		{pgErr("57P01"), Transient}, // admin shutdown
		{pgErr("08006"), Transient}, // connection failure
		{pgErr("40001"), Transient}, // serialization failure
		{pgErr("22P02"), Poison},    // invalid text representation
		{pgErr("42P01"), Poison},    // undefined table: a re-read after DROP TABLE
		{pgErr("42501"), Transient}, // insufficient privilege: the operator grants it
		{pgErr("42710"), Transient}, // duplicate object: a concurrent CREATE PUBLICATION
		{pgErr("42883"), Poison},    // undefined function: a key cast after ALTER COLUMN TYPE
		{&smithy.GenericAPIError{Code: "ConditionalCheckFailedException"}, Poison},
		{io.ErrUnexpectedEOF, Transient},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), Transient},
		{context.DeadlineExceeded, Transient},
		{Fatalf("wal_level is replica"), Fatal},
		{fmt.Errorf("plan: %w", Fatalf("x")), Fatal},
		{&PoisonError{Table: "public.t", Reason: "r"}, Poison},
		{errors.New("something nobody planned for"), Transient},
	}
	for _, c := range cases {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

func TestWithRowNamesTableKeyAndColumn(t *testing.T) {
	err := WithRow(Poisonf("empty key"), "public.t", "id=", "id")
	if got := err.Error(); got != "table public.t key id= column id: empty key" {
		t.Fatalf("message: %q", got)
	}
	long := WithRow(Poisonf("too long"), "public.t", "k="+strings.Repeat("x", 3000), "k")
	if n := len(long.Error()); n > 300 {
		t.Fatalf("a long key must be clipped in messages: %d bytes", n)
	}
	dynamo := WithRow(&smithy.GenericAPIError{Code: "ValidationException", Message: "Item size has exceeded"}, "public.t", "id=1", "")
	var p *PoisonError
	if !errors.As(dynamo, &p) || p.Table != "public.t" || !strings.Contains(dynamo.Error(), "Item size") {
		t.Fatalf("a DynamoDB validation error becomes a PoisonError: %v", dynamo)
	}
	transient := errors.New("throttled")
	if WithRow(transient, "public.t", "id=1", "") != transient {
		t.Fatal("a transient error is returned unchanged")
	}
}
