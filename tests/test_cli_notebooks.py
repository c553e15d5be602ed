"""`nexus notebooks import|export|run`: a Markdown file in, the same file out, and a run of its
chained, parameterised cells as one JSON line — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

from nexus_core.settings import Settings
from tests.test_cli import assert_one_line_error, run_nexus

NOTEBOOK = """# Requests by model

```params
model: model = m1
min_ms: float = 0
```

How many requests each model answered, then the slow ones.

```sql answered
-- chart: bar x=model y=requests
SELECT model, count(*) AS requests FROM events
WHERE event = 'request_start' AND ($model IS NULL OR model = $model)
GROUP BY model
```

```sql
SELECT model, requests * 2 AS doubled FROM answered WHERE requests > $min_ms
```
"""


def write_events(settings: Settings) -> None:
    log = settings.event_log_path
    log.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        {"ts": f"2026-12-01T10:00:0{n}.000Z", "event": "request_start", "model": model}
        for n, model in enumerate(("m1", "m1", "m2"))
    ]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_import_export_and_run_a_chained_parameterised_notebook(
    settings: Settings, tmp_path: Path
) -> None:
    assert run_nexus(settings, "init").returncode == 0
    run_nexus(
        settings,
        "users",
        "add",
        "ana",
        "--role",
        "analyst",
        "--password-stdin",
        stdin="correct-horse-1\n",
    )
    write_events(settings)
    source = tmp_path / "requests.md"
    source.write_text(NOTEBOOK, encoding="utf-8")

    imported = run_nexus(settings, "notebooks", "import", str(source), "--owner", "ana")
    assert imported.returncode == 0, imported.stderr
    notebook_id = imported.stdout.strip().splitlines()[-1]
    assert notebook_id.isdigit()

    exported = run_nexus(settings, "notebooks", "export", notebook_id)
    assert exported.returncode == 0 and exported.stdout == NOTEBOOK

    ran = run_nexus(settings, "notebooks", "run", notebook_id, "--json")
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    assert report["cells"] == [
        {
            "index": 0,
            "name": None,
            "kind": "markdown",
            "rows": None,
            "columns": None,
            "data": None,
            "error": None,
        },
        {
            "index": 1,
            "name": "answered",
            "kind": "sql",
            "rows": 1,
            "columns": ["model", "requests"],
            "data": [{"model": "m1", "requests": 2}],
            "error": None,
        },
        {
            "index": 2,
            "name": None,
            "kind": "sql",
            "rows": 1,
            "columns": ["model", "doubled"],
            "data": [{"model": "m1", "doubled": 4}],
            "error": None,
        },
    ]

    chosen = run_nexus(
        settings,
        "notebooks",
        "run",
        notebook_id,
        "--param",
        "model=m2",
        "--param",
        "min_ms=5",
        "--json",
    )
    cells = json.loads(chosen.stdout.strip().splitlines()[-1])["cells"]
    assert cells[1]["data"] == [{"model": "m2", "requests": 1}] and cells[2]["rows"] == 0


def test_a_failing_cell_exits_non_zero_with_the_error_in_the_json(
    settings: Settings, tmp_path: Path
) -> None:
    run_nexus(settings, "init")
    source = tmp_path / "broken.md"
    source.write_text(
        "```sql first\nSELECT * FROM second\n```\n```sql second\nSELECT * FROM first\n```\n"
    )
    notebook_id = (
        run_nexus(settings, "notebooks", "import", str(source), "--owner", "admin")
        .stdout.strip()
        .splitlines()[-1]
    )
    ran = run_nexus(settings, "notebooks", "run", notebook_id, "--json")
    assert ran.returncode == 1
    cells = json.loads(ran.stdout.strip().splitlines()[-1])["cells"]
    assert all("read each other in a circle" in cell["error"] for cell in cells)


def test_bad_input_is_one_line(settings: Settings, tmp_path: Path) -> None:
    run_nexus(settings, "init")
    assert_one_line_error(
        run_nexus(settings, "notebooks", "import", str(tmp_path / "none.md"), "--owner", "admin"),
        "Cannot read",
    )
    broken = tmp_path / "broken.md"
    broken.write_text("```sql\nSELECT 1\n")
    assert_one_line_error(
        run_nexus(settings, "notebooks", "import", str(broken), "--owner", "admin"),
        "never closed",
    )
    assert_one_line_error(run_nexus(settings, "notebooks", "export", "99"), "does not exist")
    source = tmp_path / "p.md"
    source.write_text("```params\nn: int = 1\n```\n```sql\nSELECT $n AS n\n```\n")
    notebook_id = (
        run_nexus(settings, "notebooks", "import", str(source), "--owner", "admin")
        .stdout.strip()
        .splitlines()[-1]
    )
    assert_one_line_error(
        run_nexus(settings, "notebooks", "run", notebook_id, "--param", "n=lots", "--json"),
        "'lots' is not a value of n",
    )
