"""A child server for tests/gateway/test_edge.py: the edge with only 64 file descriptors.

Prints its port on stdout, logs on stderr. `GET /` answers how many accept() calls failed.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket

import tornado.netutil
import tornado.web

from composition.bootstrap import edge_config
from composition.settings import Settings
from gateway.edge import EdgeServer, build_edge_server

FILE_LIMIT = 64


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))

    async def serve() -> None:
        server: EdgeServer

        class Count(tornado.web.RequestHandler):
            def get(self) -> None:
                self.write(str(server.accept_errors))

        # The per-address cap is out of the way: here the descriptors run out first.
        settings = Settings(max_connections_per_ip=100_000)
        server = build_edge_server(tornado.web.Application([(r"/", Count)]), edge_config(settings))
        [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
        server.add_sockets([sock])
        print(sock.getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
