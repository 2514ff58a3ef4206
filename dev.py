#!/usr/bin/env python3
"""Set up and run data_pipeline with nothing but Python 3.11+ and pip.

    python3 dev.py run [ARGS]   install if needed, then run numbers_job for today (UTC; extra
                                ARGS go to `dagster job execute`, e.g. -c config.yaml,
                                --partition 2026-11-24, or --partition-range
                                2026-01-01...2026-01-30 for several days in one run)
    python3 dev.py test [ARGS]  install if needed, then run the test suite (ARGS go to pytest)
    python3 dev.py lint         ruff check and ruff format --check
    python3 dev.py ui [--port N]
                                start the Dagster UI and daemon on http://127.0.0.1:3000
                                (or port N)

The first call creates .venv/ and installs the project into it (about a minute); later calls
reinstall only when pyproject.toml changes.
"""

import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed-pyproject-sha256"
# The tags of a run of several days (a backfill's run), as Dagster names them.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def create_venv() -> None:
    """.venv/ with pip in it: from Python's own ensurepip, or, where the system's Python
    has none (Debian's python3 without python3-venv), from the pip this Python runs."""
    try:
        venv.create(VENV, with_pip=True)
        return
    except subprocess.CalledProcessError:
        print("ensurepip is not available here: installing pip into .venv/ with this pip")
    shutil.rmtree(VENV)
    venv.create(VENV, with_pip=False)
    bootstrap = [sys.executable, "-m", "pip", "--python", str(BIN / "python"), "install"]
    if subprocess.run([*bootstrap, "--quiet", "pip"]).returncode:
        shutil.rmtree(VENV)
        sys.exit("cannot create .venv/ with pip: install python3-venv (or pip 22.3 or newer)")


def ensure_installed() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"creating {VENV.name}/ ...", flush=True)
        create_venv()
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    print("installing data_pipeline and its dependencies (about a minute) ...", flush=True)
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "--editable", f"{ROOT}[dev,dask]"], check=True)
    STAMP.write_text(wanted)


def with_dagster_home() -> None:
    """Keep runs in .dagster_home/ unless DAGSTER_HOME is set, so the UI, the daemon and
    `dev.py run` share one history, with the project's dagster.yaml (its concurrency
    limits); a new instance is created before anything can race to create it."""
    if os.environ.get("DAGSTER_HOME"):
        home = Path(os.environ["DAGSTER_HOME"])
        if not home.is_dir():  # Dagster would refuse it with a stack trace
            print(f"note: DAGSTER_HOME {home} did not exist: created it", flush=True)
            home.mkdir(parents=True)
        if not (home / "dagster.yaml").exists():
            print(
                f"note: {home} has no dagster.yaml: pooled steps of different runs are not "
                "limited; copy the project's dagster.yaml there",
                flush=True,
            )
    else:
        home = ROOT / ".dagster_home"
        home.mkdir(exist_ok=True)
        os.environ["DAGSTER_HOME"] = str(home)
        installed, settings = home / "dagster.yaml", (ROOT / "dagster.yaml").read_text()
        if not installed.exists() or installed.read_text() != settings:
            installed.write_text(settings)
        if not (home / "history").exists():  # a new instance, created before anything races
            migrate = [str(BIN / "dagster"), "instance", "migrate"]
            subprocess.run(migrate, check=True, stdout=subprocess.DEVNULL)


def with_day(arguments: list[str]) -> list[str]:
    """``arguments`` for `dagster job execute`, the run tagged with its day: ``--partition
    DAY`` (that command has no such option: a run's day is its dagster/partition tag) merged
    into any ``--tags`` given, else today (UTC); or ``--partition-range FIRST...LAST``, the
    days of one run (the range's tags, as a backfill's run carries them)."""
    rest, day, days, tags = [], None, None, {}
    given = iter(arguments)
    for argument in given:
        name, _, value = argument.partition("=")
        if name in {"--partition", "--partition-range", "--tags"}:
            value = value or next(given, "")
            if not value:
                sys.exit(f"{name} needs a value")
            if name == "--partition":
                day = value
            elif name == "--partition-range":
                days = value
            else:
                tags = json.loads(value)
        else:
            rest.append(argument)
    if days is not None:
        first, separator, last = days.partition("...")
        if not separator:
            sys.exit(
                f"--partition-range {days!r}: expected FIRST...LAST, e.g. 2026-01-01...2026-01-30"
            )
        first, last = as_day(first, "--partition-range"), as_day(last, "--partition-range")
        if last < first:
            sys.exit(f"--partition-range {days!r}: the last day is before the first")
        tags = {key: value for key, value in tags.items() if key != "dagster/partition"}
        range_tags = {RANGE_START_TAG: first, RANGE_END_TAG: last}
        return [*rest, "--tags", json.dumps({**tags, **range_tags})]
    day = day or tags.get("dagster/partition") or datetime.datetime.now(datetime.UTC).date()
    return [*rest, "--tags", json.dumps({**tags, "dagster/partition": as_day(day, "--partition")})]


def as_day(text: object, option: str) -> str:
    """``text`` as YYYY-MM-DD; a bad one ends the command naming the option."""
    try:
        return datetime.date.fromisoformat(str(text).strip()).isoformat()
    except ValueError:
        sys.exit(f"{option} {text!r}: expected a day as YYYY-MM-DD, e.g. 2026-11-24")


def ui_port(arguments: list[str]) -> str:
    """The port of ``--port N`` (or ``--port=N``), else 3000; anything else is refused."""
    port, given = "3000", iter(arguments)
    for argument in given:
        name, _, value = argument.partition("=")
        if name != "--port":
            sys.exit(f"dev.py ui takes only --port N, not {argument!r}")
        port = value or next(given, "")
    if not port.isdigit() or not 0 < int(port) < 65536:
        sys.exit(f"--port {port!r}: expected a port number, e.g. --port 3001")
    return port


def run(*command: str) -> None:
    os.chdir(ROOT)
    sys.stdout.flush()
    os.execv(command[0], list(command))


def main(arguments: list[str]) -> None:
    if not arguments or arguments[0] not in {"run", "test", "lint", "ui"}:
        sys.exit(__doc__)
    action, extra = arguments[0], arguments[1:]
    ensure_installed()
    if action == "run":
        with_dagster_home()
        job = ["job", "execute", "-m", "data_pipeline.definitions", "-j", "numbers_job"]
        extra = with_day(extra)
        run(str(BIN / "dagster"), *job, *extra)
    elif action == "test":
        run(str(BIN / "python"), "-m", "pytest", *extra)
    elif action == "lint":
        if subprocess.run([str(BIN / "ruff"), "check", str(ROOT)]).returncode:
            sys.exit("lint: ruff check found problems (above); `.venv/bin/ruff check --fix .`")
        run(str(BIN / "ruff"), "format", "--check", str(ROOT))
    else:
        with_dagster_home()
        port = ui_port(extra)
        run(str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", port)


if __name__ == "__main__":
    main(sys.argv[1:])
