// Package metrics writes CloudWatch embedded-metric-format (EMF) records: one JSON line
// per record, which the Lambda and awslogs log drivers ship to CloudWatch Logs and
// CloudWatch turns into metrics without any API call.
package metrics

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Namespace is Tandem's CloudWatch namespace.
const Namespace = "Tandem"

// Metric is one value of a record.
type Metric struct {
	Name  string
	Unit  string // CloudWatch unit: "Count", "Bytes", "Seconds", "Count/Second"
	Value float64
}

// Emit writes one record with the given dimensions (e.g. {"Slot": "tandem"}).
func Emit(w io.Writer, dimensions map[string]string, ms ...Metric) error {
	type def struct{ Name, Unit string }
	defs := make([]def, len(ms))
	names := make([]string, 0, len(dimensions))
	rec := map[string]any{}
	for k, v := range dimensions {
		names = append(names, k)
		rec[k] = v
	}
	for i, m := range ms {
		defs[i] = def{m.Name, m.Unit}
		rec[m.Name] = m.Value
	}
	rec["_aws"] = map[string]any{
		"Timestamp": time.Now().UnixMilli(),
		"CloudWatchMetrics": []any{map[string]any{
			"Namespace": Namespace, "Dimensions": [][]string{names}, "Metrics": defs,
		}},
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}
