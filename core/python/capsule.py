"""The `capsule` module inside a Python sandbox: `task`, as Capsule's Python SDK has it.

A task declared with @task runs as the entry when it is named "main"; called from inside a
running task it runs as a sub-task in a NEW sandbox and returns that run's envelope as a dict.
An `async def` task returns an awaitable instead.
Everything that leaves the sandbox goes through `_capsule_host`, whose every message the host
checks.
"""

import functools
import inspect
import json

import _capsule_host

__all__ = ["task", "fetch", "fetch_async", "http"]

_OPTION_KEYS = (
    "name",
    "compute",
    "ram",
    "timeout",
    "max_retries",
    "allowed_files",
    "allowed_hosts",
    "env_variables",
)

# name -> (function, options); filled as the task file runs, read by the runner.
_registry = {}
# True while a task of this sandbox is running: calls to tasks then become sub-tasks.
_running = [False]


def task(
    name=None,
    compute=None,
    ram=None,
    timeout=None,
    max_retries=None,
    allowed_files=None,
    allowed_hosts=None,
    env_variables=None,
):
    """Declares a task. Options as in Capsule: compute "LOW"/"MEDIUM"/"HIGH" or a fuel amount,
    ram "64MB", timeout "30s", max_retries, allowed_files, allowed_hosts, env_variables."""
    if callable(name) and compute is None:
        # Used bare, as @task without arguments.
        return task()(name)
    given = {
        "compute": compute,
        "ram": ram,
        "timeout": timeout,
        "max_retries": max_retries,
        "allowed_files": allowed_files,
        "allowed_hosts": allowed_hosts,
        "env_variables": env_variables,
    }

    def decorate(function):
        task_name = name if name is not None else function.__name__
        options = {"name": task_name}
        options.update({key: value for key, value in given.items() if value is not None})
        if task_name in _registry:
            raise ValueError(
                f'task "{task_name}" is already declared; each task needs a unique name'
            )
        _registry[task_name] = (function, options)

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def call_async(*args):
                if not _running[0]:
                    return await function(*args)
                # The caller's other coroutines go on while it runs: asyncio.gather of sub-tasks
                # runs them at the same time, each in its own sandbox.
                reply = await _capsule_host.run_subtask_async(task_name, _args_json(task_name, args))
                return json.loads(reply)

            return call_async

        @functools.wraps(function)
        def call(*args):
            if not _running[0]:
                return function(*args)
            return json.loads(
                _call_and_wait(
                    _capsule_host.run_subtask,
                    _capsule_host.run_subtask_async,
                    task_name,
                    _args_json(task_name, args),
                )
            )

        return call

    return decorate


def _call_and_wait(blocking, awaitable, *args):
    """Calls the runtime and waits for its answer: blocking where the host can (Node), else by
    switching stacks while the page answers, where the engine can (JSPI). Where neither works
    the blocking call raises the host's own explanation."""
    if not _capsule_host.blocks and _capsule_host.switches_stacks:
        from pyodide.ffi import run_sync

        return run_sync(awaitable(*args))
    return blocking(*args)


def _args_json(task_name, args):
    try:
        return json.dumps(list(args), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f'arguments for task "{task_name}" are not JSON-serializable: {error}')


def _fetch_request(url, method, headers, body):
    import base64

    request = {
        "url": str(url),
        "method": str(method).upper(),
        "headers": [[str(key), str(value)] for key, value in dict(headers or {}).items()],
    }
    if body is not None:
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        request["body"] = base64.b64encode(data).decode("ascii")
    return json.dumps(request)


def _fetch_reply(text):
    import base64

    reply = json.loads(text)
    if "error" in reply:
        error = reply["error"]
        raise (PermissionError if error.get("denied") else OSError)(error["message"])
    reply["body"] = base64.b64decode(reply["body"])
    return reply


def fetch(url, method="GET", headers=None, body=None):
    """A small fetch through the task's allowed_hosts: returns {"status", "statusText",
    "headers" (list of [name, value]), "body" (bytes), "url", "redirected"}. A host the task may
    not reach raises PermissionError; other failures raise OSError. urllib.request goes the same
    way."""
    request = _fetch_request(url, method, headers, body)
    return _fetch_reply(_call_and_wait(_capsule_host.fetch, _capsule_host.fetch_async, request))


async def fetch_async(url, method="GET", headers=None, body=None):
    """fetch() for async def tasks: other coroutines run while the request is out."""
    return _fetch_reply(
        await _capsule_host.fetch_async(_fetch_request(url, method, headers, body))
    )


def _http_module():
    """`capsule.http`, as in Capsule's Python SDK: get, post, put, delete, patch and head, each
    returning a Response. Requests go through fetch(), so the task's allowed_hosts decide."""
    import sys
    import types

    module = types.ModuleType("capsule.http", _http_module.__doc__)

    class Response:
        """An HTTP response: status_code, headers (a dict), text, json() and ok()."""

        def __init__(self, status, headers, body):
            self.status_code = status
            self.headers = dict(headers)
            self.text = body

        def json(self):
            """The body parsed as JSON."""
            return json.loads(self.text)

        def ok(self):
            """Whether the status is 2xx."""
            return 200 <= self.status_code < 300

        def __repr__(self):
            return f"<Response [{self.status_code}]>"

    def request(method, url, headers=None, body=None, json_data=None):
        headers = dict(headers or {})
        if json_data is not None:
            body = json.dumps(json_data)
            headers["Content-Type"] = "application/json"
        reply = fetch(url, method=method, headers=headers, body=body)
        text = reply["body"].decode("utf-8", errors="replace")
        return Response(reply["status"], [tuple(pair) for pair in reply["headers"]], text)

    def get(url, headers=None):
        """An HTTP GET request."""
        return request("GET", url, headers)

    def post(url, body=None, json_data=None, headers=None):
        """An HTTP POST request; json_data is sent as JSON with its Content-Type."""
        return request("POST", url, headers, body, json_data)

    def put(url, body=None, json_data=None, headers=None):
        """An HTTP PUT request; json_data is sent as JSON with its Content-Type."""
        return request("PUT", url, headers, body, json_data)

    def delete(url, headers=None):
        """An HTTP DELETE request."""
        return request("DELETE", url, headers)

    def patch(url, body=None, json_data=None, headers=None):
        """An HTTP PATCH request; json_data is sent as JSON with its Content-Type."""
        return request("PATCH", url, headers, body, json_data)

    def head(url, headers=None):
        """An HTTP HEAD request."""
        return request("HEAD", url, headers)

    for value in (Response, get, post, put, delete, patch, head):
        value.__module__ = module.__name__
        setattr(module, value.__name__, value)
    sys.modules[module.__name__] = module
    return module


http = _http_module()
