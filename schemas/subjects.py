"""Every subject, bucket and service name on the bus. Nothing else spells them.

Subjects are dot-separated NATS tokens. Run and generator ids are made by Surge
itself (``ids.py`` rules: ``[a-z0-9-]``), so they are always one safe token.
"""

from __future__ import annotations

ROOT = "surge"

# --- coordinator API (a nats.micro service; its endpoints: schemas/api.py) --
COORDINATOR_SERVICE = "surge-coordinator"
API = f"{ROOT}.api"
RUN_START = f"{API}.run.start"
RUN_STOP = f"{API}.run.stop"
RUN_RATE = f"{API}.run.rate"
RUN_GET = f"{API}.run.get"
RUN_LIST = f"{API}.run.list"
PLAN_VALIDATE = f"{API}.plan.validate"
GENERATORS_LIST = f"{API}.generators.list"
REPORT_GET = f"{API}.report.get"
# the test catalogue (docs/catalogue.md)
TEST_SAVE = f"{API}.test.save"
TEST_LIST = f"{API}.test.list"
TEST_GET = f"{API}.test.get"
TEST_RUN = f"{API}.test.run"
TEST_DELETE = f"{API}.test.delete"
RUN_GENERATOR_START = f"{API}.run.generator.start"
# schedules and phased suites (docs/schedules.md)
SCHEDULE_ADD = f"{API}.schedule.add"
SCHEDULE_LIST = f"{API}.schedule.list"
SCHEDULE_DELETE = f"{API}.schedule.delete"
SUITE_SAVE = f"{API}.suite.save"
SUITE_LIST = f"{API}.suite.list"
SUITE_RUN = f"{API}.suite.run"
SUITE_GET = f"{API}.suite.get"
# the run archive (docs/archive.md)
RUN_ANNOTATE = f"{API}.run.annotate"
RUN_SEARCH = f"{API}.run.search"
RUN_EXPORT = f"{API}.run.export"
RUN_IMPORT = f"{API}.run.import"
TEST_BASELINE = f"{API}.test.baseline"
# quotas and approvals (docs/quotas.md); only the approver role may publish RUN_APPROVE
PLAN_SEND_ONCE = f"{API}.plan.send_once"  # one iteration through a generator, seen in full
RUN_QUEUE = f"{API}.run.queue"
RUN_APPROVE = f"{API}.run.approve"
# each endpoint's name, request, reply and errors: the table in schemas/api.py

# --- other services' names for `nats micro ls` ----------------------------
GENERATOR_SERVICE = "surge-generator"
MONITOR_SERVICE = "surge-monitor"
UI_SERVICE = "surge-ui"

# --- JetStream key-value buckets and object stores -------------------------
GENERATORS_BUCKET = "surge_generators"  # key: generator id, value: Heartbeat
# the coordinator deletes this key of GENERATORS_BUCKET to have the bus stamp its time
# among the beats (a delete marker, never a value: listings do not show it)
BUS_CLOCK_KEY = "_surge_bus_clock"
ASSIGN_BUCKET = "surge_assign"  # key: generator id, value: Assignment
RUNS_BUCKET = "surge_runs"  # key: run id, value: RunRecord
REPORTS_STORE = "surge_reports"  # object store; name: run id, value: Report
LEADER_BUCKET = "surge_leader"  # key: LEADER_KEY, value: Lease
LEADER_KEY = "coordinator"
TESTS_BUCKET = "surge_tests"  # key: <test slug>.<version>, value: TestVersion
SCHEDULES_BUCKET = "surge_schedules"  # key: schedule slug, value: Schedule
FIRES_BUCKET = "surge_fires"  # key: <schedule slug>.<fire time ms>, value: Fire (created once)
ARCHIVE_BUCKET = "surge_archive"  # key: run id -> Annotations; baseline.<test slug> -> Baseline
QUEUE_BUCKET = "surge_queue"  # key: run id -> QueuedRun (waiting for approval or its turn)
SUITES_BUCKET = "surge_suites"  # keys: def.<suite slug> -> Suite, run.<id> -> SuiteRun
# JetStream stream: every interval the leader acknowledged, and run events, so a
# standby that takes over rebuilds each running run's aggregate exactly
RUNLOG_STREAM = "SURGE_RUNLOG"
RUNLOG_ALL = f"{ROOT}.runlog.>"
# JetStream stream: each generator's log lines per run, kept for a while (docs/fleet.md)
LOGS_STREAM = "SURGE_LOGS"
LOGS_ALL = f"{ROOT}.logs.>"

# --- streams of data --------------------------------------------------------
STATS_ALL = f"{ROOT}.stats.>"
LIVE_ALL = f"{ROOT}.live.>"
HOST_ALL = f"{ROOT}.host.>"
ALERTS_ALL = f"{ROOT}.alerts.>"
MONITOR_ALL = f"{ROOT}.monitor.>"  # monitors' status endpoints
EVENTS_ALL = f"{ROOT}.events.>"


MERGED_ALL = f"{ROOT}.merged.>"
MERGER_QUEUE = "surge-mergers"  # merger workers share surge.stats.> as one queue group


def merged(run_id: str) -> str:
    """Merger workers' partial aggregates of a run, for the leader."""
    return f"{ROOT}.merged.{run_id}"


def stats(run_id: str, generator_id: str) -> str:
    """Per-generator interval stats, sent every second as a request (acked)."""
    return f"{ROOT}.stats.{run_id}.{generator_id}"


def stats_of_run(run_id: str) -> str:
    """Every generator's interval stats for one run."""
    return f"{ROOT}.stats.{run_id}.*"


def runlog_interval(run_id: str, generator_id: str) -> str:
    """An interval the leader accepted (persisted before it is acknowledged)."""
    return f"{ROOT}.runlog.{run_id}.i.{generator_id}"


def runlog_event(run_id: str) -> str:
    """A run event (rate change, generator lost, takeover), persisted for the report."""
    return f"{ROOT}.runlog.{run_id}.e"


def runlog_of_run(run_id: str) -> str:
    return f"{ROOT}.runlog.{run_id}.>"


def logs(run_id: str, generator_id: str = "*") -> str:
    """A generator's log lines for one run (LogLine); ``*``: every generator's."""
    return f"{ROOT}.logs.{run_id}.{generator_id}"


def live(run_id: str) -> str:
    """The coordinator's merged snapshot of one run, once a second."""
    return f"{ROOT}.live.{run_id}"


def events(run_id: str) -> str:
    """Run lifecycle events: started, rate changed, generator lost/joined, ended."""
    return f"{ROOT}.events.{run_id}"


def schedule_events(schedule_slug: str) -> str:
    """A schedule's decisions: added, removed, fired (how late, which run), skipped."""
    return f"{ROOT}.events.schedule.{schedule_slug}"


def suite_events(suite_run_id: str) -> str:
    """A suite run's steps: started, passed, failed, skipped."""
    return f"{ROOT}.events.suite.{suite_run_id}"


TRY_ALL = f"{ROOT}.try.>"


def send_once(generator_id: str) -> str:
    """A generator's send-once endpoint (the coordinator asks it for plan.send_once)."""
    return f"{ROOT}.try.{generator_id}"


def archive_events(run_id: str) -> str:
    """Who annotated a run, set a baseline, imported a run."""
    return f"{ROOT}.events.archive.{run_id}"


def host(host_name: str) -> str:
    """A monitor's host sample, once a second."""
    return f"{ROOT}.host.{host_name}"


def alerts(host_name: str) -> str:
    """A monitor's threshold alerts for one host."""
    return f"{ROOT}.alerts.{host_name}"


def monitor_status(host_name: str) -> str:
    """A monitor's status endpoint (MonitorStatus): buffered points, last write error."""
    return f"{ROOT}.monitor.{host_name}.status"


def token(value: str) -> str:
    """Make an arbitrary name (a host name, say) safe as one subject token."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in value)
    return safe or "unknown"
