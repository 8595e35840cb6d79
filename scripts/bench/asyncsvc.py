"""asyncsvc.py - the benchmark's long-running Python service: an asyncio
loop handling requests, every finished task kept in a set that is never
pruned (the leak), a bounded cache of responses; runs until SIGTERM, then
returns from main as a clean shutdown does (the interpreter frees its heap:
a teardown, then the exit snapshot).

    python3 asyncsvc.py
"""
import asyncio
import json
import signal

tasks = set()
cache = {}


async def handle(i):
    body = json.dumps({"request": i, "items": list(range(i % 20))})
    cache[i % 500] = body
    await asyncio.sleep(0)
    return len(body)


async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    i = 0
    while not stop.is_set():
        for _ in range(200):
            tasks.add(asyncio.create_task(handle(i)))
            i += 1
        await asyncio.sleep(0.001)
    print(i)


asyncio.run(main())
