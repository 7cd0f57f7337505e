package human

import (
	"testing"
	"time"
)

func TestFormats(t *testing.T) {
	for got, want := range map[string]string{
		Count(0): "0", Count(999): "999", Count(1000): "1,000", Count(-1234567): "-1,234,567",
		Rate(0.25): "0.2", Rate(9.96): "10.0", Rate(1234.5): "1,235",
		Bytes(512): "512 B", Bytes(1536): "1.5 KiB", Bytes(16 << 20): "16.0 MiB",
		Duration(0): "0s", Duration(850 * time.Millisecond): "850ms", Duration(42 * time.Second): "42s",
		Duration(185 * time.Second): "3m05s", Duration(124 * time.Minute): "2h04m", Duration(76 * time.Hour): "3d04h",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}
