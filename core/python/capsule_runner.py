"""Runs inside the sandbox: executes the task file, lists its tasks, or runs one of them.
Replies with one JSON text; the runtime checks its shape before it believes any of it."""

import inspect
import io
import json
import linecache
import os
import time
import traceback
import urllib.request

import _capsule_host
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
    elif isinstance(error, OSError) and _capsule_host.last_file_error():
        # The errno says little ("Permission denied"); the policy says which rule refused it.
        lines.append(f"\nThe runtime refused it: {_capsule_host.last_file_error()}")
    return {
        "ok": False,
        "error": {"kind": kind, "name": type(error).__name__, "message": "".join(lines).rstrip()},
    }


def _load(job):
    # A session's sandbox starts from the memory of its last call: the tasks that call's file
    # declared are still registered.
    capsule._registry.clear()
    capsule._running[0] = False
    # Tracebacks quote the task file's lines: linecache has no file to read them from.
    lines = job["source"].splitlines(True)
    linecache.cache[job["file_name"]] = (len(job["source"]), None, lines, job["file_name"])
    namespace = {"__name__": TASK_MODULE, "__file__": job["file_name"]}
    code = compile(job["source"], job["file_name"], "exec")
    exec(code, namespace)
    return namespace


def _sleep(seconds):
    """time.sleep on the host's timer: the task waits without spending fuel, and its clock moves
    on by exactly the time asked for."""
    if not isinstance(seconds, (int, float)):
        raise TypeError(f"'{type(seconds).__name__}' object cannot be interpreted as an integer or float")
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    capsule._call_and_wait(_capsule_host.sleep, _capsule_host.sleep_async, float(seconds))


def _timers_move_the_clock():
    """The clock a task reads moves with its work (fuel), not with the wall: a timer that fires
    moves it to the time the timer was set for, so loops that wait on the clock take the same
    steps on every run."""
    from pyodide.webloop import WebLoop

    schedule = WebLoop.call_later

    def call_later(self, delay, callback, *args, context=None):
        due = self.time() + delay

        def on_time(*callback_args):
            _capsule_host.advance_clock(due)
            return callback(*callback_args)

        return schedule(self, delay, on_time, *args, context=context)

    WebLoop.call_later = call_later


class _HostHandler(urllib.request.BaseHandler):
    """urllib.request through capsule.fetch: the task's allowed_hosts decide, as for fetch()."""

    handler_order = 100

    def _open(self, request):
        import http.client

        reply = capsule.fetch(
            request.full_url,
            method=request.get_method(),
            headers=dict(request.header_items()),
            body=request.data,
        )
        headers = http.client.HTTPMessage()
        for name, value in reply["headers"]:
            headers[name] = value
        response = urllib.response.addinfourl(
            io.BytesIO(reply["body"]), headers, reply["url"], reply["status"]
        )
        response.msg = reply.get("statusText", "")
        return response

    http_open = _open
    https_open = _open


_prepared = [False]


def prepare():
    """Installs what every job needs; the host calls it while the sandbox waits for a job (building
    urllib's opener alone costs ~5M fuel), else the first job does."""
    if _prepared[0]:
        return
    time.sleep = _sleep
    _timers_move_the_clock()
    urllib.request.install_opener(urllib.request.build_opener(_HostHandler))
    _prepared[0] = True


async def main(job_json):
    job = json.loads(job_json)
    prepare()
    os.environ.clear()
    os.environ.update(job["env"])
    # The fuel a task reports is its own work, from its file's first line to its outcome's text.
    _capsule_host.task_started()
    try:
        return await _run(job)
    finally:
        _capsule_host.task_finished()


async def _run(job):
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
    elif callable(namespace.get("main")) or not capsule._registry:
        function = namespace.get("main")
    else:
        # As in Capsule's SDK: a file without a main runs its first declared task.
        function = next(iter(capsule._registry.values()))[0]
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
