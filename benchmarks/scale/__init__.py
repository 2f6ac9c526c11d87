"""Helpers of `benchmarks/bench_scale.py`.

- `client.py`: a load client process driven over stdin/stdout by the benchmark: bidders and
  watchers spread round-robin over several gateway ports, phases started at a wall-clock time the
  benchmark gives (so several client processes measure the same window). It reuses the websocket
  client, bidder pairs and phase logic of `benchmarks/e2e/loadgen.py`.
"""
