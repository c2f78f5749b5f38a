package metricstore

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// TestRemoteWriteReceiver sends real remote-write requests of both protocol versions with the
// client library Prometheus uses, and reads the samples back through PromQL.
func TestRemoteWriteReceiver(t *testing.T) {
	s := openStore(t, Options{})
	// The hub's authentication marks requests with the sender's labels; the "hub-side" header
	// stands in for it here.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host := r.Header.Get("X-Test-Host"); host != "" {
			r = r.WithContext(WithTargetLabels(r.Context(), map[string]string{"host": host, "job": "pushed"}))
		}
		s.RemoteWriteHandler().ServeHTTP(w, r)
	}))
	defer srv.Close()
	now := time.Now().Truncate(time.Second)

	client, err := remoteapi.NewAPI(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	v1 := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels: []prompb.Label{{Name: "__name__", Value: "pushed_v1"}, {Name: "host", Value: "nat1"}},
		Samples: []prompb.Sample{
			{Value: 1, Timestamp: now.Add(-2 * time.Second).UnixMilli()},
			{Value: 2, Timestamp: now.Add(-time.Second).UnixMilli()},
		},
	}}}
	if _, err := client.Write(ctx, remoteapi.WriteV1MessageType, v1); err != nil {
		t.Fatalf("v1 write: %v", err)
	}

	st := writev2.NewSymbolTable()
	refs := st.SymbolizeLabels(labels.FromStrings("__name__", "pushed_v2", "host", "nat2"), nil)
	v2 := &writev2.Request{
		Timeseries: []writev2.TimeSeries{{
			LabelsRefs: refs,
			Samples:    []writev2.Sample{{Value: 3, Timestamp: now.Add(-time.Second).UnixMilli()}},
			Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, HelpRef: st.Symbolize("pushed through v2")},
		}},
	}
	v2.Symbols = st.Symbols()
	stats, err := client.Write(ctx, remoteapi.WriteV2MessageType, v2)
	if err != nil {
		t.Fatalf("v2 write: %v", err)
	}
	if stats.Samples != 1 {
		t.Errorf("v2 response reports %d samples written, want 1", stats.Samples)
	}

	got := map[string]float64{}
	for _, smpl := range instant(t, s, `{__name__=~"pushed_.*"}`, now) {
		got[smpl.Metric.String()] = smpl.F
	}
	want := map[string]float64{`{__name__="pushed_v1", host="nat1"}`: 2, `{__name__="pushed_v2", host="nat2"}`: 3}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %v, want %v", k, got[k], w)
		}
	}

	t.Run("sender labels win", func(t *testing.T) {
		req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  []prompb.Label{{Name: "__name__", Value: "spoofed"}, {Name: "host", Value: "someone-else"}},
			Samples: []prompb.Sample{{Value: 5, Timestamp: now.Add(-time.Second).UnixMilli()}},
		}}}
		body, _ := req.Marshal()
		resp := post(t, srv.URL, "application/x-protobuf", snappy.Encode(nil, body), http.Header{"X-Test-Host": {"nat3"}})
		if resp != http.StatusNoContent {
			t.Fatalf("status %d", resp)
		}
		v := instant(t, s, `spoofed`, now)
		if len(v) != 1 || v[0].Metric.String() != `{__name__="spoofed", host="nat3", job="pushed"}` {
			t.Errorf("got %v", v)
		}
	})

	body, _ := v1.Marshal()
	last := *v1
	last.Timeseries = []prompb.TimeSeries{v1.Timeseries[0]}
	last.Timeseries[0].Samples = v1.Timeseries[0].Samples[1:]
	lastOnly, _ := last.Marshal()
	tests := []struct {
		name        string
		contentType string
		body        []byte
		want        int
	}{
		{"not snappy", "application/x-protobuf", body, http.StatusBadRequest},
		{"not protobuf", "application/x-protobuf", snappy.Encode(nil, []byte("\xff\xff\xff")), http.StatusBadRequest},
		{"wrong content type", "application/json", snappy.Encode(nil, body), http.StatusUnsupportedMediaType},
		// The newest sample again: an identical duplicate is accepted, as Prometheus does.
		{"duplicate", "application/x-protobuf", snappy.Encode(nil, lastOnly), http.StatusNoContent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := post(t, srv.URL, tt.contentType, tt.body, nil); got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
		})
	}
	t.Run("out of order", func(t *testing.T) {
		req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  []prompb.Label{{Name: "__name__", Value: "pushed_v1"}, {Name: "host", Value: "nat1"}},
			Samples: []prompb.Sample{{Value: 0, Timestamp: now.Add(-time.Hour).UnixMilli()}},
		}}}
		b, _ := req.Marshal()
		// 400, not 5xx, so that the sender drops the sample instead of retrying it forever.
		if got := post(t, srv.URL, "application/x-protobuf", snappy.Encode(nil, b), nil); got != http.StatusBadRequest {
			t.Errorf("status %d, want 400", got)
		}
	})
}

func post(t *testing.T, url, contentType string, body []byte, h http.Header) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
