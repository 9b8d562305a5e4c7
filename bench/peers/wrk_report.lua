-- wrk `done` hook for bench/peers/run.sh: prints one machine-readable line.
--
-- Latencies are in microseconds. `non2xx` is wrk's `errors.status`, the count
-- of responses with a status of 400 or more (wrk does not count 3xx there).
-- No `request`/`response` hooks are defined, so wrk keeps its fast path and
-- the script costs nothing during the run.
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d"
      .. " connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    errors.status, errors.connect, errors.read, errors.write, errors.timeout))
end
