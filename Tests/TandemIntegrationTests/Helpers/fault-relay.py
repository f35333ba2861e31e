#!/usr/bin/python3
"""A TCP relay that delays what it forwards, with jitter, as a long and uneven path would (this
kernel has no netem). Listens on LISTEN_PORT (127.0.0.1) and connects each accepted connection
to TARGET_PORT; bytes in each direction are released in order, each chunk no earlier than
DELAY_MS plus a random 0..JITTER_MS after it arrived. The delay can be changed while it runs:
CONTROL holds "DELAY_MS JITTER_MS" (read every 100 ms; "0 0" forwards at once). Prints
"listening" once it accepts. Writes "chunks bytes delayed-chunks" relayed to CONTROL.stats.LISTEN_PORT.

Usage: /usr/bin/python3 fault-relay.py LISTEN_PORT TARGET_PORT CONTROL
"""
import asyncio, os, random, sys, time

listen_port, target_port, control = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
setting = {"delay": 0.0, "jitter": 0.0}
stats = {"chunks": 0, "bytes": 0, "delayed": 0}


async def watch_control():
    while True:
        try:
            d, j = open(control).read().split()[:2]
            setting["delay"], setting["jitter"] = float(d) / 1000, float(j) / 1000
        except (OSError, ValueError):
            pass
        with open("%s.stats.%d.tmp" % (control, listen_port), "w") as f:
            f.write("%d %d %d\n" % (stats["chunks"], stats["bytes"], stats["delayed"]))
        os.replace("%s.stats.%d.tmp" % (control, listen_port), "%s.stats.%d" % (control, listen_port))
        await asyncio.sleep(0.1)


async def pipe(reader, writer):
    queue = asyncio.Queue()
    release = [0.0]

    async def sender():
        while True:
            at, data = await queue.get()
            if data is None:
                break
            wait = at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        try:
            writer.write_eof()
        except OSError:
            pass

    task = asyncio.ensure_future(sender())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            delay = setting["delay"] + random.random() * setting["jitter"]
            # In order: never before the chunk ahead of it.
            release[0] = max(release[0], time.monotonic() + delay)
            stats["chunks"] += 1
            stats["bytes"] += len(data)
            if delay > 0:
                stats["delayed"] += 1
            await queue.put((release[0], data))
    except (ConnectionError, OSError):
        pass
    await queue.put((0, None))
    try:
        await task
    except (ConnectionError, OSError):
        pass


async def handle(client_reader, client_writer):
    try:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))
    for w in (client_writer, server_writer):
        try:
            w.close()
        except OSError:
            pass


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port, reuse_address=True)
    asyncio.ensure_future(watch_control())
    print("listening", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
