"""bench_rest.py's servers and load client: the Tornado hello-world baseline and the paced HTTP client."""
