"""The test catalogue against a real stack: versions, labels, diff, runs that name their test.

Real nats-server, coordinator, generator and target; the `surge test` commands run as
the real CLI process; the API is checked with the typed client.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from schemas import subjects
from schemas.errors import Conflict, InvalidPlan, NoGenerators, NotFound, TargetNotAllowed
from tests.conftest import Cluster, api_with, target_stats, until
from tests.integration.test_distributed_run import stack

pytestmark = pytest.mark.timeout(90)

PLAN_V1 = """\
# checkout, as the shop team runs it
name: checkout
target: {target}
rate: 20
duration: 1s
requests:
  - name: home
    path: /
    checks: {{status: 200}}
"""


async def cli(cluster: Cluster, *args: str):
    return await asyncio.to_thread(cluster.cli, *args)


async def test_saved_versions_are_listed_shown_diffed_run_and_removed(cluster: Cluster, tmp_path):
    target, api = await stack(cluster, 1)
    plan = tmp_path / "checkout.yaml"
    plan.write_text(PLAN_V1.format(target=target))
    saved = await cli(cluster, "test", "save", str(plan), "--suite", "shop", "--tag", "smoke",
                      "--owner", "ana", "--json")
    assert saved.returncode == 0, saved.stderr
    v1 = json.loads(saved.stdout)
    assert (v1["name"], v1["version"], v1["suite"], v1["tags"]) == ("checkout", 1, "shop", ["smoke"])
    assert v1["target_system"] == target.removeprefix("http://")
    assert v1["source"].startswith("# checkout, as the shop team runs it")

    plan.write_text(PLAN_V1.format(target=target).replace("rate: 20", "rate: 30"))
    saved = await cli(cluster, "test", "save", str(plan))
    assert saved.returncode == 0, saved.stderr
    assert "version 2" in saved.stdout and "suite shop" in saved.stdout  # labels carried over

    # a second test in another suite, to filter against
    other = tmp_path / "other.yaml"
    other.write_text(PLAN_V1.format(target=target).replace("name: checkout", "name: search"))
    assert (await cli(cluster, "test", "save", str(other), "--suite", "find")).returncode == 0

    listed = await cli(cluster, "test", "ls", "--suite", "shop", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["name"], row["version"], row["versions"], row["owner"]) == ("checkout", 2, 2, "ana")
    table = await cli(cluster, "test", "ls", "--suite", "shop")
    assert table.returncode == 0 and table.stdout.startswith("1 test(s)"), table.stderr
    assert [t["name"] for t in json.loads((await cli(cluster, "test", "ls", "--tag", "smoke", "--json")).stdout)] \
        == ["checkout"]
    assert {t.name for t in (await api.test_list()).tests} == {"checkout", "search"}
    assert [t.name for t in (await api.test_list(search="SEAR")).tests] == ["search"]

    shown = await cli(cluster, "test", "show", "checkout", "--version", "1")
    assert shown.returncode == 0, shown.stderr
    assert "rate: 20" in shown.stdout and "v1" in shown.stdout and "v2" in shown.stdout
    diff = await cli(cluster, "test", "diff", "checkout", "1")
    assert "-rate: 20" in diff.stdout and "+rate: 30" in diff.stdout, diff.stdout

    # any version runs; the run records which one
    ran = await cli(cluster, "test", "run", "checkout", "--version", "1", "--quiet")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "version 1" in ran.stdout
    assert target_stats(target)["requests"] == 20  # version 1's rate, not version 2's
    [record] = (await api.list()).runs
    assert (record.test, record.test_version) == ("checkout", 1)

    async def start():  # once the generator of the run before is idle again
        try:
            return await api.test_run("checkout", rate=10.0, duration=1.0)
        except NoGenerators:
            return None

    started = await until(start, 15, "an idle generator", every_s=0.2)
    assert (started.test, started.test_version) == ("checkout", 2)
    record = await api.get(started.run_id)
    assert record.plan.rate == 10.0 and record.test_version == 2

    removed = await cli(cluster, "test", "rm", "checkout")
    assert removed.returncode == 0 and "removed 2 version(s)" in removed.stdout
    with pytest.raises(NotFound):
        await api.test_get("checkout")
    missing = await cli(cluster, "test", "show", "checkout")
    assert missing.returncode == 2 and "not_found" in missing.stderr
    assert [t.name for t in (await api.test_list()).tests] == ["search"]
    await api.close()


async def test_a_bad_plan_or_a_clashing_name_is_refused_with_a_field(cluster: Cluster):
    cluster.coordinator()
    api = await api_with(cluster, 0)
    with pytest.raises(InvalidPlan) as bad:
        await api.call(subjects.TEST_SAVE, {"plan": {
            "name": "x", "target": "http://127.0.0.1:1", "rate": -1, "duration": 1,
            "requests": [{"name": "a"}]}}, dict)
    assert bad.value.field == "rate"
    plan = {"name": "a b", "target": "http://127.0.0.1:1", "rate": 1, "duration": 1,
            "requests": [{"name": "a"}]}
    assert (await api.test_save(plan)).version == 1
    with pytest.raises(Conflict):  # "a-b" has the key of "a b"
        await api.test_save({**plan, "name": "a-b"})
    with pytest.raises(TargetNotAllowed):
        await api.test_save({**plan, "target": "http://203.0.113.9"})
    # two saves at once: two versions, none overwritten
    both = await asyncio.gather(api.test_save(plan), api.test_save(plan))
    assert sorted(t.version for t in both) == [2, 3]
    with pytest.raises(NotFound):
        await api.test_run("a b", version=9)
    await api.close()
