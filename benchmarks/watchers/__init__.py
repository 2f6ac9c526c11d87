"""The load client of `benchmarks/bench_watchers.py`: ten thousand watchers over several processes."""
