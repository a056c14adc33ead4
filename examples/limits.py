import asyncio
import time

from capsule import task


# A runaway loop under a small fuel budget: fuel ends it, after the same work on every run.
@task(name="spin", compute="LOW")
async def spin() -> int:
    count = 0
    while count >= 0:
        count += 1
    return count


# A task stuck waiting, under a wall-clock limit: the timeout ends it.
@task(name="stuck", timeout="500ms")
async def stuck() -> None:
    time.sleep(60)


@task(name="main", compute="LOW")
async def main() -> dict:
    fuel, timeout = await asyncio.gather(spin(), stuck())
    return {
        "spin": fuel["error"]["error_type"],  # "fuel_exhausted"
        "stuck": timeout["error"]["error_type"],  # "timeout"
    }
