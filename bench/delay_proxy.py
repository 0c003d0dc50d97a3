"""A TCP proxy that holds each request for a fixed delay before passing it on.

    python3 bench/delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS

Object storage answers every request after a round trip; on loopback there is none. The
proxy waits DELAY_MS whenever a client starts sending after the server has answered (a new
HTTP request on a kept-alive connection) or opens a connection, then forwards the bytes both
ways unchanged. Bodies stream at full speed; only the start of each request waits.
"""
import asyncio
import sys


async def pipe(reader, writer, on_data=None):
    try:
        while True:
            data = await reader.read(1 << 18)
            if not data:
                break
            if on_data:
                await on_data()
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def handle(client_reader, client_writer, target_port, delay):
    server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
    state = {"answered": True}

    async def request_starts():
        if state["answered"]:
            state["answered"] = False
            await asyncio.sleep(delay)

    async def answer_flows():
        state["answered"] = True

    await asyncio.gather(
        pipe(client_reader, server_writer, request_starts),
        pipe(server_reader, client_writer, answer_flows),
    )


async def main():
    listen, target, delay_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, target, delay_ms / 1000), "127.0.0.1", listen
    )
    async with server:
        await server.serve_forever()


asyncio.run(main())
