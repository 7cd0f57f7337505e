package metrics

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestEmitIsValidEMF(t *testing.T) {
	var buf bytes.Buffer
	if err := Emit(&buf, map[string]string{"Table": "public.orders"}, Metric{"RowsCopied", "Count", 42}); err != nil {
		t.Fatal(err)
	}
	var rec struct {
		AWS struct {
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
		Table      string
		RowsCopied float64
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	m := rec.AWS.CloudWatchMetrics[0]
	if m.Namespace != "Tandem" || m.Dimensions[0][0] != "Table" || m.Metrics[0].Name != "RowsCopied" || rec.RowsCopied != 42 || rec.Table != "public.orders" {
		t.Fatalf("record: %s", buf.String())
	}
}
