"""Helpers of `benchmarks/bench_e2e.py`: the load client process and the servers it compares Gavel with.

- `loadgen.py`: the load client (asyncio + uvloop, a minimal websocket client, thousands of
  connections in one process); closed-loop or paced bidders and open watchers.
- `echo_server.py`: the transport limit, a bare Tornado websocket server under uvloop.
- `redis_lua_server.py`: the peer design, a Tornado gateway over an atomic Redis Lua script and
  Redis PUBLISH.
- `gavel_server.py`: `run.py`'s `main()` with benchmark limits and the A/B variants (subclasses).
- `procstat.py`: CPU seconds of a process from `/proc/<pid>/stat`.
"""
