/** Capsule's README Python task file, as it is printed there: it must run unchanged on every host. */
export const CAPSULE_README_PYTHON = `from capsule import task

@task(name="analyze_data", compute="MEDIUM", ram="512MB", timeout="30s", max_retries=1)
def analyze_data(dataset: list) -> dict:
    """Process data in an isolated, resource-controlled environment."""
    # Your code runs safely in a Wasm sandbox
    return {"processed": len(dataset), "status": "complete"}

# The "main" task is required as the entrypoint
@task(name="main", compute="HIGH")
def main():
    return analyze_data([1, 2, 3, 4, 5])
`;

/** What examples/files.py returns; its writer (and files.ts's) leaves FILES_EXAMPLE_OUTPUT. */
export const FILES_PY_RESULT = {
  words: 9,
  written: 44,
  refused: {
    "/etc/passwd": "FileNotFoundError",
    "./examples/data/../../package.json": "FileNotFoundError",
    "write to read-only ./examples/data": "Read-only file system",
  },
};
export const FILES_EXAMPLE_OUTPUT = "THE QUICK BROWN FOX\nJUMPS OVER THE LAZY DOG\n";
