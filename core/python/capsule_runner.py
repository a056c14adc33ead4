"""Runs inside the sandbox: executes the task file, lists its tasks, or runs one of them.
Replies with one JSON text; the runtime checks its shape before it believes any of it."""

import inspect
import json
import linecache
import os
import traceback

import capsule

TASK_MODULE = "__capsule_task__"


def _failure(error, file_name, kind="task"):
    # The traceback from the task file's first frame on: the runner's own frames are noise.
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != file_name:
        tb = tb.tb_next
    lines = traceback.format_exception(type(error), error, tb if tb is not None else error.__traceback__)
    if isinstance(error, SyntaxError):
        kind = "syntax"
        lines = traceback.format_exception_only(type(error), error)
    elif isinstance(error, MemoryError):
        kind = "memory"
    return {
        "ok": False,
        "error": {"kind": kind, "name": type(error).__name__, "message": "".join(lines).rstrip()},
    }


def _load(job):
    # Tracebacks quote the task file's lines: linecache has no file to read them from.
    lines = job["source"].splitlines(True)
    linecache.cache[job["file_name"]] = (len(job["source"]), None, lines, job["file_name"])
    namespace = {"__name__": TASK_MODULE, "__file__": job["file_name"]}
    code = compile(job["source"], job["file_name"], "exec")
    exec(code, namespace)
    return namespace


async def main(job_json):
    job = json.loads(job_json)
    os.environ.clear()
    os.environ.update(job["env"])
    try:
        namespace = _load(job)
    except BaseException as error:  # noqa: BLE001 - every failure is the task's, reported as such
        return json.dumps(_failure(error, job["file_name"]))
    if job["mode"] == "discover":
        tasks = [{"name": name, "options": options} for name, (_, options) in capsule._registry.items()]
        plain_main = "main" not in capsule._registry and callable(namespace.get("main"))
        return json.dumps({"ok": True, "tasks": tasks, "plain_main": plain_main})
    name = job["task_name"]
    if name in capsule._registry:
        function = capsule._registry[name][0]
    else:
        function = namespace.get("main")
    capsule._running[0] = True
    try:
        args = json.loads(job["args_json"])
        value = function(*args)
        if inspect.isawaitable(value):
            value = await value
    except BaseException as error:  # noqa: BLE001
        return json.dumps(_failure(error, job["file_name"]))
    try:
        value_json = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        return json.dumps(
            {"ok": False, "error": {"kind": "task", "name": "TypeError", "message": f"TypeError: task result is not JSON-serializable: {error}"}}
        )
    return json.dumps({"ok": True, "value_json": value_json})
