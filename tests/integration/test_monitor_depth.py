"""Monitor depth with real parts: a watched port's TCP states, a named process, and a
real JVM's heap and GC through the JDK's jstat (skipped where no JDK is installed —
jstat is optional, docs/monitor.md)."""

from __future__ import annotations

import shutil
import subprocess

import msgspec
import nats
import pytest

from schemas import subjects
from schemas.host import HostSample
from tests.conftest import Cluster, until

pytestmark = pytest.mark.timeout(60)

JAVA = """
public class Busy {
    public static void main(String[] args) throws Exception {
        java.util.List<byte[]> keep = new java.util.ArrayList<>();
        for (int i = 0; ; i++) {
            keep.add(new byte[64 * 1024]);
            if (keep.size() > 200) keep.clear();  // garbage: young collections
            Thread.sleep(2);
        }
    }
}
"""


@pytest.mark.skipif(shutil.which("jstat") is None or shutil.which("java") is None,
                    reason="no JDK (java, jstat) on this machine: JVM sampling is optional")
async def test_watched_java_process_has_heap_and_gc_from_jstat(cluster: Cluster, make_monitor,
                                                               tmp_path):
    src = tmp_path / "Busy.java"
    src.write_text(JAVA)
    jvm = subprocess.Popen(["java", "-Xmx64m", str(src)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    host = "it-depth"
    nc = await nats.connect(cluster.url)
    samples: list[HostSample] = []

    async def on_sample(msg) -> None:
        samples.append(msgspec.json.decode(msg.data, type=HostSample))

    await nc.subscribe(subjects.host(host), cb=on_sample)
    await nc.flush()
    monitor = make_monitor(host, SURGE_MONITOR_PROCESSES="java,nats-server",
                           SURGE_MONITOR_PORTS=str(cluster.port), SURGE_JSTAT_S="1")
    try:
        def with_jvm() -> HostSample | None:
            for s in reversed(samples):
                java = next((w for w in s.watched if w.name == "java"), None)
                if java is not None and java.jvm is not None and java.jvm.young_gc > 0:
                    return s
            return None

        s = await until(with_jvm, 40, "a sample with the JVM's heap and a young GC")
        java, nats_server = s.watched
        assert java.count >= 1 and java.threads >= 5 and java.rss_bytes > 10_000_000
        assert java.open_files is not None and java.open_files > 3
        assert 0 < java.jvm.heap_used_bytes <= java.jvm.heap_capacity_bytes <= 64 << 20
        assert nats_server.name == "nats-server" and nats_server.count >= 1  # others may run too
        assert nats_server.jvm is None  # not a JVM: jstat is not asked
        ports = s.tcp_ports[str(cluster.port)]
        assert ports["LISTEN"] == 1 and ports["ESTABLISHED"] >= 2  # our link, the monitor's
        assert s.tcp_retrans_ps is not None and s.tcp_retrans_ps >= 0
    finally:
        jvm.kill()
        jvm.wait()
        await nc.close()
    assert monitor.stop() == 0
