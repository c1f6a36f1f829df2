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
// (an aggregate, and a findings collector when Options.Findings is set). Shards are merged
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
// # Findings
//
// The detectors of internal/findings are consumers of the same pass: with
// Options.Findings set, each worker feeds its records to its own
// findings.Collector as well as to its aggregate, the collectors merge with
// the shards, and Result.Report returns one typed Report holding the tables
// and the findings, so a command only wires flags to Options and writes the
// Report (WriteText, WriteJSON). Both sides name endpoints, networks,
// referers and agents through internal/dims, so a finding and a table call
// the same endpoint the same way.
//
// The JSON report (Result.Report) carries records, malformed (with
// examples), findings (an empty list without detectors) and the aggregates.
package analyze
