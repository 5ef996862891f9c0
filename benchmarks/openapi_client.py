"""A client generated from the server's /openapi.json by a real generator searches a running `identity serve`.

    .venv/bin/python benchmarks/openapi_client.py [--dataset DIR] [--generator-venv DIR]

1. openapi-python-client goes into its own virtualenv under a temp dir (it pins older typer
   and httpx than ours); `--generator-venv` reuses one that has it.
2. A temp data dir gets a small gallery (`identity enroll`: 2 photos each of 3 lfw-dev
   people) and an API key (`identity keys create`).
3. `identity serve` starts on 127.0.0.1; the generator reads its /openapi.json.
4. The generated package, run by the generator's own Python (it has attrs and httpx),
   calls the API with the key: searchFaces on a third photo of one person, listPersons,
   listJobs with a JobState enum, and searchFaces without the key (a 401 parsed as ErrorBody).

Prints what it did; exits 0 when the generated client's search named the right person.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
LFW = REPO.parent / "shared" / "datasets" / "lfw-dev"
PEOPLE = ("Al_Gore", "Alejandro_Toledo", "Aaron_Peirsol")
PACKAGE = "identity_api_client"
CONFIG = f"project_name_override: identity-api-client\npackage_name_override: {PACKAGE}\npost_hooks: []\n"

# Run by the generator's Python, with the generated package on sys.path: only the generated code talks to the server.
CLIENT = """
import json, sys
from pathlib import Path

import httpx
from identity_api_client import AuthenticatedClient, Client
from identity_api_client.api.jobs import list_jobs
from identity_api_client.api.persons import list_persons
from identity_api_client.api.search import search_faces
from identity_api_client.models import BodySearchFaces, ErrorBody, JobState, SearchResponse
from identity_api_client.types import File

base, key, photo = sys.argv[1:4]
client = AuthenticatedClient(base_url=base, token=key, timeout=httpx.Timeout(120.0))


def body():
    return BodySearchFaces(image=[File(payload=Path(photo).open("rb"), file_name=Path(photo).name,
                                       mime_type="image/jpeg")], top_k=3)


found = search_faces.sync_detailed(client=client, body=body())
assert isinstance(found.parsed, SearchResponse), (found.status_code, found.content[:300])
face = found.parsed.results[0].faces[0]
people = list_persons.sync(client=client, limit=10)
done = list_jobs.sync(client=client, state=JobState.ENROLLED)
anonymous = search_faces.sync_detailed(client=Client(base_url=base, timeout=httpx.Timeout(120.0)), body=body())
assert isinstance(anonymous.parsed, ErrorBody), (anonymous.status_code, anonymous.content[:300])
print(json.dumps({
    "search": {"status": found.status_code, "decision": face.decision.value,
               "candidates": [[c.person.external_id, round(c.score, 3)] for c in face.candidates]},
    "persons": sorted(p.external_id for p in people.items),
    "jobs_enrolled": done.total,
    "without_key": {"status": anonymous.status_code, "error": anonymous.parsed.error},
}))
"""


def step(text: str) -> None:
    print(f"- {text}", flush=True)


def generator_python(tmp: Path, reuse: Path | None) -> Path:
    """A Python that has openapi-python-client: `reuse`'s, or a new virtualenv's under `tmp`."""
    if reuse:
        return reuse / "bin" / "python"
    started = time.perf_counter()
    venv.create(tmp / "generator", with_pip=True)
    python = tmp / "generator" / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "openapi-python-client"], check=True)
    step(f"installed openapi-python-client in its own virtualenv ({time.perf_counter() - started:.0f} s)")
    return python


def identity(data: Path, *args: str) -> str:
    env = {**os.environ, "IDENTITY_DATA_DIR": str(data)}
    done = subprocess.run(
        [sys.executable, "-m", "identity_cli.main", *args], env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


def gallery(data: Path, dataset: Path, tmp: Path) -> None:
    """Photos 1 and 2 of each person enrolled through the CLI (photo 3 is the query)."""
    root = tmp / "gallery"
    for person in PEOPLE:
        (root / person).mkdir(parents=True)
        for n in (1, 2):
            shutil.copy(dataset / person / f"{person}_{n:04d}.jpg", root / person)
    counts = json.loads(identity(data, "enroll", str(root), "--workers", "1", "--json"))["counts"]
    step(f"enrolled a gallery of {len(PEOPLE)} people, 2 photos each: {counts}")


def serve(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "IDENTITY_DATA_DIR": str(data)}
    server = subprocess.Popen(
        [sys.executable, "-m", "identity_cli.main", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=30).status_code == 200:
                step(f"identity serve is ready at {base}")
                return server, base
        except httpx.TransportError:
            time.sleep(0.3)
    server.terminate()
    raise SystemExit("identity serve did not become ready in 180 s")


def generate(python: Path, base: str, tmp: Path) -> Path:
    """The client package generated from the live server's schema; the folder to put on sys.path."""
    spec, config, out = tmp / "openapi.json", tmp / "generator.yaml", tmp / "client"
    spec.write_bytes(httpx.get(f"{base}/openapi.json", timeout=30).raise_for_status().content)
    config.write_text(CONFIG)
    tool = python.parent / "openapi-python-client"
    done = subprocess.run(
        [tool, "generate", "--path", spec, "--output-path", out / PACKAGE, "--meta", "none", "--config", config],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or "Warning" in done.stdout + done.stderr:
        raise SystemExit(f"the generator failed or warned:\n{done.stdout}\n{done.stderr}")
    version = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.strip()
    modules = sorted(p.stem for p in (out / PACKAGE / "api").glob("*/*.py") if p.stem != "__init__")
    step(f"{version} generated {PACKAGE} with no warning: {len(modules)} operations ({', '.join(modules)})")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=LFW)
    parser.add_argument("--generator-venv", type=Path, help="a virtualenv that has openapi-python-client")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="identity-openapi-client-") as name:
        tmp = Path(name)
        python = generator_python(tmp, args.generator_venv)
        data = tmp / "data"
        gallery(data, args.dataset, tmp)
        key = json.loads(identity(data, "keys", "create", "openapi-client", "--role", "admin", "--json"))["key"]
        step("created an admin key with `identity keys create`")
        server, base = serve(data)
        try:
            out = generate(python, base, tmp)
            probe = args.dataset / PEOPLE[0] / f"{PEOPLE[0]}_0003.jpg"
            env = {**os.environ, "PYTHONPATH": str(out)}
            done = subprocess.run(
                [python, "-c", CLIENT, base, key, str(probe)], env=env, capture_output=True, text=True
            )
        finally:
            server.terminate()
            server.wait(timeout=60)
    if done.returncode != 0:
        print(done.stdout, done.stderr, sep="\n")
        return 1
    result = json.loads(done.stdout)
    step(f"the generated client searched {probe.name}: {json.dumps(result['search'])}")
    step(f"listPersons: {result['persons']}; listJobs(state=JobState.ENROLLED): {result['jobs_enrolled']} jobs")
    step(f"searchFaces without a key: {json.dumps(result['without_key'])}")
    top = result["search"]["candidates"][0][0] if result["search"]["candidates"] else None
    ok = top == PEOPLE[0] and result["search"]["decision"] == "match" and result["without_key"]["status"] == 401
    print("OK: the generated client searched with its key" if ok else f"FAILED: expected {PEOPLE[0]}, got {top}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
