import asyncio

from capsule import task


# Each call to analyze_data runs in a NEW sandbox with its own limits and returns its envelope
# as a dict. From an async def task, calls gathered together run at the same time.
@task(name="analyze_data", compute="MEDIUM", ram="512MB", timeout="30s", max_retries=1)
async def analyze_data(dataset: list) -> dict:
    return {"processed": len(dataset), "status": "complete"}


@task(name="main", compute="HIGH")
async def main() -> list:
    batches = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10]]
    envelopes = await asyncio.gather(*(analyze_data(batch) for batch in batches))
    return [envelope["result"] for envelope in envelopes]
