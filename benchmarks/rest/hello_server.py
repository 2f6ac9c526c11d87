"""The baseline of bench_rest.py: a Tornado hello-world on uvloop, one process, a small JSON answer.

    python benchmarks/rest/hello_server.py PORT

The same Tornado HTTP server and the same headers Gavel's JSON handler sends (JSON content type,
`Cache-Control: no-store`), so the ratio measures what Gavel does per request beyond the transport.
"""

from __future__ import annotations

import asyncio
import sys

import orjson
import tornado.web
import uvloop

BODY = orjson.dumps({"hello": "world"})


class HelloHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(BODY)


async def serve(port: int) -> None:
    tornado.web.Application([(r"/", HelloHandler)]).listen(port, "127.0.0.1", xheaders=False)
    await asyncio.Event().wait()


def main() -> None:
    uvloop.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
