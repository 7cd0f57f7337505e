package ident

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestStringRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		t    Table
		text string
	}{
		{Table{"public", "orders"}, "public.orders"},
		{Table{"audit", "Events_2$"}, "audit.Events_2$"},
		{Table{"public", "a.b"}, `public."a.b"`},
		{Table{"My Schema", `x "y"`}, `"My Schema"."x ""y"""`},
		{Table{"s.p ace", `Odd "Table".v1 #[x]:ü`}, `"s.p ace"."Odd ""Table"".v1 #[x]:ü"`},
		{Table{"public", "a,b"}, `public."a,b"`},
		{Table{"public", `"`}, `public.""""`},
		{Table{"ü", "1st"}, `"ü".1st`},
		{Table{"public", " lead"}, `public." lead"`},
	} {
		if got := tc.t.String(); got != tc.text {
			t.Errorf("%#v.String() = %s, want %s", tc.t, got, tc.text)
		}
		back, err := Parse(tc.text)
		if err != nil || back != tc.t {
			t.Errorf("Parse(%s) = %#v, %v; want %#v", tc.text, back, err, tc.t)
		}
	}
}

func TestParseForms(t *testing.T) {
	for in, want := range map[string]Table{
		"orders":                   {"public", "orders"},
		"  orders ":                {"public", "orders"},
		`"a.b"`:                    {"public", "a.b"},
		"audit.Events":             {"audit", "Events"},
		`audit."Events"`:           {"audit", "Events"},
		"schéma.tâble#1:[0]":       {"schéma", "tâble#1:[0]"},
		`"My Schema"."x ""y"" z"`:  {"My Schema", `x "y" z`},
		`public."with ""."" dot"`:  {"public", `with "." dot`},
		`"a,b".c`:                  {"a,b", "c"},
		`public."  spaced  "`:      {"public", "  spaced  "},
		`"public"."1leadingdigit"`: {"public", "1leadingdigit"},
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %#v, %v; want %#v", in, got, err, want)
		}
	}
}

func TestParseErrorsNameTheInput(t *testing.T) {
	for in, phrase := range map[string]string{
		"":              "missing name",
		"a.b.c":         "more than two",
		"public.":       "missing name",
		".orders":       "missing name",
		`public."a.b`:   "unterminated quote",
		`public.""`:     "empty quoted name",
		"my table":      "unexpected",
		`public."a"b`:   "unexpected",
		"public.a,b":    "unexpected",
		"public..x":     "missing name",
		"pub\x00lic.x":  "unexpected",
		`"a"."b"."c"`:   "more than two",
		"public.ord\"x": "unexpected",
	} {
		_, err := Parse(in)
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want an error", in)
			continue
		}
		if !strings.Contains(err.Error(), phrase) || !strings.Contains(err.Error(), fmt.Sprintf("%q", in)) {
			t.Errorf("Parse(%q) error %q should contain %q and name the input", in, err, phrase)
		}
	}
}

func TestParseList(t *testing.T) {
	got, err := ParseList(` orders, audit.events ,"a,b"."c, d",, public."x ""y""" `)
	want := []Table{{"public", "orders"}, {"audit", "events"}, {"a,b", "c, d"}, {"public", `x "y"`}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseList = %#v, %v; want %#v", got, err, want)
	}
	if got, err := ParseList(""); err != nil || got != nil {
		t.Errorf("ParseList(\"\") = %v, %v", got, err)
	}
	if _, err := ParseList(`orders, "open`); err == nil || !strings.Contains(err.Error(), "unterminated quote") {
		t.Errorf("ParseList with an open quote: %v", err)
	}
	if _, err := ParseList(`orders "x"`); err == nil || !strings.Contains(err.Error(), "expected a comma") {
		t.Errorf("ParseList without a comma: %v", err)
	}
	// Every canonical form, listed, reads back.
	tables := []Table{{"s.p ace", `Odd "Table".v1 #[x]:ü`}, {"public", "a,b"}, {"public", "orders"}}
	var texts []string
	for _, tb := range tables {
		texts = append(texts, tb.String())
	}
	back, err := ParseList(strings.Join(texts, ","))
	if err != nil || !reflect.DeepEqual(back, tables) {
		t.Errorf("ParseList(%q) = %#v, %v", strings.Join(texts, ","), back, err)
	}
}

func TestSQL(t *testing.T) {
	if got := (Table{"My Schema", `x "y".z`}).SQL(); got != `"My Schema"."x ""y"".z"` {
		t.Errorf("SQL() = %s", got)
	}
	if got := Quote(`a"b`); got != `"a""b"` {
		t.Errorf("Quote = %s", got)
	}
}
