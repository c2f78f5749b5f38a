package metricstore

import (
	"context"
	"net/http"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
)

type targetLabelsKey struct{}

// WithTargetLabels marks a remote-write request's context with the labels of the agent that sent
// it (job, instance, client, site, host, as the hub's authentication established them). Every
// series the request writes gets these labels, replacing any the agent sent under the same names,
// so that an agent can only write its own series, just as target labels win over scraped ones.
func WithTargetLabels(ctx context.Context, l map[string]string) context.Context {
	return context.WithValue(ctx, targetLabelsKey{}, labels.FromMap(l))
}

// newRemoteWriteHandler is upstream Prometheus's receiver, accepting both remote-write protocol
// versions as Prometheus does by default, over an appendable that applies WithTargetLabels.
func newRemoteWriteHandler(o Options, db storage.Appendable) http.Handler {
	return remote.NewWriteHandler(o.Logger.With("component", "remote write receiver"), o.Registerer,
		targetLabelAppendable{db},
		remoteapi.MessageTypes{remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType}, false, false, false)
}

type targetLabelAppendable struct{ storage.Appendable }

func (a targetLabelAppendable) Appender(ctx context.Context) storage.Appender {
	app := a.Appendable.Appender(ctx)
	set, ok := ctx.Value(targetLabelsKey{}).(labels.Labels)
	if !ok || set.IsEmpty() {
		return app
	}
	return &targetLabelAppender{Appender: app, set: set, b: labels.NewBuilder(labels.EmptyLabels())}
}

// targetLabelAppender overrides every method that takes a series' labels; the rest (Commit,
// Rollback, SetOptions) pass through.
type targetLabelAppender struct {
	storage.Appender
	set labels.Labels
	b   *labels.Builder
}

func (a *targetLabelAppender) relabel(l labels.Labels) labels.Labels {
	a.b.Reset(l)
	a.set.Range(func(t labels.Label) { a.b.Set(t.Name, t.Value) })
	return a.b.Labels()
}

func (a *targetLabelAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	return a.Appender.Append(ref, a.relabel(l), t, v)
}

func (a *targetLabelAppender) AppendExemplar(ref storage.SeriesRef, l labels.Labels, e exemplar.Exemplar) (storage.SeriesRef, error) {
	return a.Appender.AppendExemplar(ref, a.relabel(l), e)
}

func (a *targetLabelAppender) AppendHistogram(ref storage.SeriesRef, l labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return a.Appender.AppendHistogram(ref, a.relabel(l), t, h, fh)
}

func (a *targetLabelAppender) AppendHistogramSTZeroSample(ref storage.SeriesRef, l labels.Labels, t, st int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return a.Appender.AppendHistogramSTZeroSample(ref, a.relabel(l), t, st, h, fh)
}

func (a *targetLabelAppender) UpdateMetadata(ref storage.SeriesRef, l labels.Labels, m metadata.Metadata) (storage.SeriesRef, error) {
	return a.Appender.UpdateMetadata(ref, a.relabel(l), m)
}

func (a *targetLabelAppender) AppendSTZeroSample(ref storage.SeriesRef, l labels.Labels, t, st int64) (storage.SeriesRef, error) {
	return a.Appender.AppendSTZeroSample(ref, a.relabel(l), t, st)
}
