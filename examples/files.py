import os

from capsule import task


# Files are reachable only inside the directories a task lists, relative to the project root
# (run from the repository root). The writer gets its own grant; main's does not pass on.
@task(name="restricted_writer", allowed_files=["./examples/output"])
def restricted_writer(text: str) -> int:
    with open("./examples/output/result.txt", "w") as f:
        f.write(text)
    return len(text)


@task(name="main", allowed_files=[{"path": "./examples/data", "mode": "read-only"}])
def main() -> dict:
    with open("./examples/data/input.txt") as f:
        text = f.read()
    words = len(text.split())
    written = restricted_writer(text.upper())

    # Outside the grants nothing of the host exists; inside a read-only grant writes are refused.
    refused = {}
    for path in ["/etc/passwd", "./examples/data/../../package.json"]:
        try:
            open(path).read()
        except OSError as error:
            refused[path] = type(error).__name__
    try:
        with open("./examples/data/input.txt", "w") as f:
            f.write("overwritten?")
    except OSError as error:
        refused["write to read-only ./examples/data"] = os.strerror(error.errno)
    return {"words": words, "written": written["result"], "refused": refused}
