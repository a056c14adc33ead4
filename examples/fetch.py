import urllib.request

from capsule import task


# Network access is denied unless a host is listed. Loopback and private addresses are refused
# even under "*", unless named literally, as 127.0.0.1 is here so the example can run offline
# against a local server:  npx capsule run examples/fetch.py http://127.0.0.1:8000/
@task(name="main", allowed_hosts=["127.0.0.1", "*.example.com"], timeout="10s")
def main(url: str = "http://127.0.0.1:8000/") -> dict:
    with urllib.request.urlopen(url) as response:
        status = response.status
        body = response.read()

    denied = ""
    try:
        urllib.request.urlopen("https://evil.test/steal")
    except PermissionError as error:
        denied = str(error)
    return {"status": status, "bytes": len(body), "denied": denied}
