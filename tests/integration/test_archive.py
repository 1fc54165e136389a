"""The run archive against a real stack: baselines and the change in later reports, a
relative limit failing a run, notes/conclusion/tags/links, search, retention, files."""

from __future__ import annotations

import asyncio
import json

import pytest

from schemas.errors import NoGenerators, NotFound
from tests.conftest import Cluster, api_with, run_forgotten, run_in, until
from tests.plans import ARCHIVED, raw

pytestmark = pytest.mark.timeout(120)


async def cli(cluster: Cluster, *args: str):
    return await asyncio.to_thread(cluster.cli, *args)


async def run_test(api, name: str, **options):
    """test.run once the generator of the previous run is idle again (its heartbeat says so)."""
    async def start():
        try:
            return await api.test_run(name, **options)
        except NoGenerators:
            return None

    return (await until(start, 15, "an idle generator", every_s=0.2)).run_id


async def finished(api, run_id: str):
    """The run's report, once it has ended (the report is stored before the record says so)."""
    await run_in(api.nc, run_id)
    return await api.report(run_id)


async def test_baseline_notes_search_retention_and_files(cluster: Cluster, tmp_path):
    _, target = cluster.target()
    cluster.coordinator(SURGE_RETAIN_RUNS="1", SURGE_RETENTION_EVERY_S="0.5")
    cluster.generator()
    api = await api_with(cluster, 1)

    await api.test_save(raw(ARCHIVED, target))
    first = await finished(api, await run_test(api, "shop"))
    [rel] = [t for t in first.thresholds if t.name == "p99_ms max_increase_pct"]
    assert rel.ok and "no baseline" in rel.reason and first.baseline is None
    assert (first.test, first.test_version) == ("shop", 1)
    marked = await cli(cluster, "baseline", "shop", first.run_id)
    assert marked.returncode == 0, marked.stderr

    # version 2 answers 300 ms later: its report shows the change and fails the relative limit
    await api.test_save(raw(ARCHIVED, target, requests=[{"name": "home", "path": "/delay/300"}]))
    second = await finished(api, await run_test(api, "shop"))
    assert second.baseline is not None and second.baseline.run_id == first.run_id
    assert second.baseline.requests["home"]["p99_ms"].change_pct > 50
    [rel] = [t for t in second.thresholds if t.name == "p99_ms max_increase_pct"]
    assert not rel.ok and rel.value > 50
    assert second.verdict == "fail" and (await api.get(second.run_id)).verdict == "fail"
    page = tmp_path / "second.html"
    shown = await cli(cluster, "report", second.run_id, "--html", str(page))
    assert f"against baseline run {first.run_id}" in shown.stdout, shown.stdout
    assert f"Against baseline run <code>{first.run_id}</code>" in page.read_text()

    run = second.run_id
    for args in (("note", run, "**p99** went up by 300 ms"),
                 ("conclude", run, "fail", "the delay is the regression"),
                 ("tag", run, "regression", "release-42"),
                 ("link", run, "https://issues.example.com/SHOP-1")):
        done = await cli(cluster, *args)
        assert done.returncode == 0, done.stderr
    notes = (await api.export_run(run)).annotations
    assert [n.text for n in notes.notes] == ["**p99** went up by 300 ms"]
    assert notes.conclusion.verdict == "fail" and notes.tags == ["regression", "release-42"]
    assert notes.links == ["https://issues.example.com/SHOP-1"]

    async def ls(*filters: str) -> list[str]:
        out = await cli(cluster, "ls", *filters, "--json")
        assert out.returncode == 0, out.stderr
        return [r["record"]["run_id"] for r in json.loads(out.stdout)]

    assert await ls("--test", "shop", "--verdict", "fail") == [run]
    table = await cli(cluster, "ls", "--test", "shop", "--verdict", "fail")
    assert table.returncode == 0 and table.stdout.startswith("1 run(s)"), table.stderr
    assert await ls("--tag", "regression", "--since", "1h") == [run]

    async def search(**filters) -> list[str]:
        return [r.record.run_id for r in (await api.search(**filters)).runs]

    assert await search(conclusion="fail") == [run]
    assert await search(test="shop", since="2026-01-01T00:00:00Z") == [run, first.run_id]
    assert await search(target=target.removeprefix("http://")) == [run, first.run_id]
    assert await search(until="1h") == []
    assert await search(text="REGRESSION") == [run]
    assert [r.baseline for r in (await api.search(test="shop")).runs] == [False, True]

    exported = tmp_path / "run.json"
    assert (await cli(cluster, "archive", "export", run, "-o", str(exported))).returncode == 0

    # retention keeps one ended run besides the baseline: a third run pushes the second out
    third = await finished(api, await run_test(api, "shop", version=1))
    assert third.baseline.run_id == first.run_id

    await run_forgotten(api.nc, run, 10)  # the second run dropped
    with pytest.raises(NotFound):
        await api.get(run)
    assert (await api.get(first.run_id)).run_id == first.run_id  # the baseline stays

    # and the file brings it back, notes and report included
    back = await cli(cluster, "archive", "import", str(exported))
    assert back.returncode == 0, back.stderr
    imported = await api.export_run(run)
    assert imported.report.run_id == run and imported.annotations.tags == ["regression", "release-42"]
    # an import counts as just archived: the next sweeps keep it (and drop the third instead)
    await run_forgotten(api.nc, third.run_id, 10)  # the third run made room for the imported one
    with pytest.raises(NotFound):
        await api.get(third.run_id)
    assert (await api.export_run(run)).report.run_id == run
    again = await cli(cluster, "archive", "import", str(exported))
    assert again.returncode == 2 and "conflict" in again.stderr
    await api.close()
