// Package analyze is the log engine behind `headroom logs analyze`: it reads
// access logs in parallel and aggregates them, in memory bounded whatever the
// input size, into what a person needs to explain traffic (seed 01: "NetworkOut
// doubled overnight; which clients, paths, agents?").
//
// # Pipeline
//
// One reader goroutine streams each input (accesslog.Open: files, gzip,
// stdin; rotated sets oldest first) in chunks of whole lines; each worker
// goroutine parses chunks with its own zero-allocation parser, applies the
// filters (--where, --since, --until) and folds records into its own shard
// (an aggregate, and a Sink when Options.NewSink is set). Shards are merged
// when all input is read. Malformed lines are counted per input and the
// first few kept with file and line number; an input whose first lines do
// not parse is reported and skipped rather than yielding an empty report.
//
// # Aggregates
//
// Time series (requests, bytes out, worker time, 5xx) with a bucket that
// widens from minute to hour to day as the span grows; top tables by
// requests, bytes and worker time for client, /24 or /48 network, key,
// endpoint (path template), user agent and its family, referer domain,
// method and pool (bounded heavy-hitter tables, see topTable); request and
// upstream time quantiles (DDSketch, mergeable); distinct clients
// (HyperLogLog); and an optional --by table over any field or pair,
// including the variables of a custom nginx log_format.
//
// # Extending: Sink
//
// Other per-record consumers (the findings detectors of internal/findings)
// plug in as a Sink: one per worker, merged at the end, exactly like the
// engine's own shards. Sink is a plain interface rather than a generic
// parameter so that a consumer package need not import analyze: a type with
// Observe(*accesslog.Record) and a typed Merge is adapted in cmd/headroom with
// a few lines:
//
//	type findingsSink struct{ *findings.Collector }
//
//	func (s findingsSink) Merge(o analyze.Sink) { s.Collector.Merge(o.(findingsSink).Collector) }
//
// Records alias the line buffer: a Sink copies what it keeps.
//
// The JSON report (Result.Report) carries records, malformed (with examples),
// findings (given by the caller; an empty list when none) and the
// aggregates.
package analyze
