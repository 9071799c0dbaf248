"""`ingest --until-caught-up` on a real tansu broker: done means every
partition of the topic is stored up to the end it had at start, whoever
holds it; a restarted ingester with the same instance id takes its
partitions back at once (static group membership)."""

import os
import random
import re
import signal
import subprocess
import time

import support
from support import gatemeter

PARTITIONS = 4


def load(broker, topic, work, requests, seed, start, create=True):
    """Good events (1% bad) on a 4-partition topic; the delivery reports."""
    lines = support.generate_events(work / f"events-{seed}.jsonl", requests=requests, seed=seed, start=start)
    messages = support.mix_bad_events(lines, 0.01, seed=seed)
    delivered = support.produce(broker, topic, messages, partitions=PARTITIONS, create=create)
    assert len({p for p, _o, _c in delivered}) == PARTITIONS
    return delivered


def args(broker, topic, data_dir, group, *extra, instance_id=None):
    """`ingest` with `extra`; as the static member `instance_id` ("": a
    dynamic member; None: the default id)."""
    identity = [] if instance_id is None else ["--instance-id", instance_id]
    return ["--brokers", broker, "--topic", topic, "--group", group, "--data-dir", data_dir, *identity,
            "ingest", *extra]


class Spawned:
    """A gatemeter process logging at info into `log` (a file: a pipe
    nobody reads would fill and stop it)."""

    def __init__(self, command, log, env=None):
        self.log = log
        full_env = dict(os.environ, GATEMETER_LOG="info", **(env or {}))
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([support.gatemeter_bin(), *map(str, command)], env=full_env,
                                         stdout=out, stderr=subprocess.STDOUT)

    def stop(self, how=signal.SIGTERM):
        """Stops it with `how`; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(how)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode

    def output(self):
        return self.log.read_text(errors="replace")


def test_a_catch_up_after_members_died_joining_the_group_stores_every_partition(broker, topic, tmp_path):
    delivered = load(broker, topic, tmp_path, requests=22_000, seed=31, start="2026-11-03T06:00:00Z")
    data_dir = tmp_path / "lake"
    group = f"catch-up-{topic}"
    rng = random.Random(20261203)
    # Four runs killed while joining the group (librdkafka's default group
    # timeouts: a dead dynamic member holds its partitions for minutes).
    for run in range(4):
        proc = Spawned(args(broker, topic, data_dir, group, "--until-caught-up", "--flush-rows", 2000),
                       tmp_path / f"killed-{run}.log")
        time.sleep(rng.uniform(0.3, 1.5))
        assert proc.stop(signal.SIGKILL) == -signal.SIGKILL, proc.output()[-2000:]
    started = time.monotonic()
    final = gatemeter(*args(broker, topic, data_dir, group, "--until-caught-up"), timeout=900)
    took = time.monotonic() - started
    support.assert_exactly_once(data_dir, delivered)
    print(f"the catch-up after 4 SIGKILLs took {took:.1f} s: {final.stdout.strip()}")


def test_a_catch_up_fails_naming_the_partitions_another_member_holds(broker, topic, tmp_path):
    delivered = load(broker, topic, tmp_path, requests=4_000, seed=37, start="2026-11-03T07:00:00Z")
    group = f"held-{topic}"
    # A member that never leaves: an ingester of the same group writing
    # into another lake. Both are dynamic members (tansu's coordinator does
    # not take several static members in one group).
    holder = Spawned(args(broker, topic, tmp_path / "elsewhere", group, "--flush-interval-ms", 500,
                          instance_id=""), tmp_path / "holder.log")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not support.lake_positions(tmp_path / "elsewhere"):
            time.sleep(0.5)
        assert support.lake_positions(tmp_path / "elsewhere"), "the holder never stored anything"
        data_dir = tmp_path / "lake"
        started = time.monotonic()
        run = gatemeter(*args(broker, topic, data_dir, group, "--until-caught-up", "--catch-up-deadline-secs", 20,
                              instance_id=""), check=False, timeout=300)
        took = time.monotonic() - started
    finally:
        holder.stop()
    assert run.returncode == 1, (run.returncode, run.stdout, run.stderr[-3000:])
    assert took >= 20, took
    named = {int(p) for p in re.findall(r"partition (\d+) \(", run.stderr)}
    assert named, run.stderr[-3000:]
    assert f"not caught up after 20 s" in run.stderr, run.stderr[-3000:]
    assert "not assigned to this process" in run.stderr
    # The partitions named are exactly those this lake has not stored whole.
    stored = {}
    for partition, offset in support.lake_positions(data_dir):
        stored[partition] = max(stored.get(partition, -1), offset)
    last_good = {}
    for partition, offset, cls in delivered:
        if cls is None:
            last_good[partition] = max(last_good.get(partition, -1), offset)
    incomplete = {p for p in range(PARTITIONS) if stored.get(p, -1) < last_good[p]}
    assert named == incomplete, (named, incomplete, run.stderr[-2000:])
    assert 0 < len(named) < PARTITIONS, named


def test_a_killed_ingester_restarted_with_its_instance_id_consumes_again_at_once(broker, topic, tmp_path):
    first = load(broker, topic, tmp_path, requests=3_000, seed=41, start="2026-11-03T08:00:00Z")
    data_dir = tmp_path / "lake"
    group = f"static-{topic}"
    command = args(broker, topic, data_dir, group, "--flush-interval-ms", 300, instance_id="ingest-a")
    good_first = sum(1 for _p, _o, cls in first if cls is None)
    proc = Spawned(command, tmp_path / "first.log")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(support.lake_positions(data_dir)) < good_first:
        time.sleep(0.5)
    assert len(support.lake_positions(data_dir)) == good_first, proc.output()[-3000:]
    assert proc.stop(signal.SIGKILL) == -signal.SIGKILL
    second = load(broker, topic, tmp_path, requests=3_000, seed=43, start="2026-11-03T09:00:00Z", create=False)
    good_all = good_first + sum(1 for _p, _o, cls in second if cls is None)
    started = time.monotonic()
    proc = Spawned(command, tmp_path / "restarted.log")
    took = None
    try:
        deadline = started + 120
        while time.monotonic() < deadline:
            stored = len(support.lake_positions(data_dir))
            if stored > good_first and took is None:
                took = time.monotonic() - started
            if stored >= good_all:
                break
            time.sleep(0.2)
        whole = time.monotonic() - started
    finally:
        code = proc.stop()
    assert code == 0, proc.output()[-3000:]
    support.assert_exactly_once(data_dir, first + second)
    print(f"restarted with its instance id, the ingester stored its first new rows after {took:.1f} s "
          f"and everything new after {whole:.1f} s")
    # librdkafka's default session timeout is 45 s: a new dynamic member
    # would wait that long for the dead one's partitions.
    assert took < 10, f"{took:.1f} s to consume again"


def test_an_ingest_only_process_serves_its_metrics_and_nothing_else(broker, topic, tmp_path):
    delivered = load(broker, topic, tmp_path, requests=2_000, seed=47, start="2026-11-03T10:00:00Z")
    port = support.free_port()
    command = ["--brokers", broker, "--topic", topic, "--group", f"scrape-{topic}", "--data-dir", tmp_path / "lake",
               "--http-listen", f"127.0.0.1:{port}", "serve", "--roles", "ingest", "--flush-interval-ms", 300]
    proc = Spawned(command, tmp_path / "serve.log")
    try:
        support.wait_for_port(port)
        good = sum(1 for _p, _o, cls in delivered if cls is None)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(support.lake_positions(tmp_path / "lake")) < good:
            time.sleep(0.5)
        status, _type, body = support.http("GET", f"http://127.0.0.1:{port}/metrics")
        missing, _, _ = support.http("GET", f"http://127.0.0.1:{port}/api/v1/kpis")
    finally:
        code = proc.stop()
    assert code == 0, proc.output()[-3000:]
    support.assert_exactly_once(tmp_path / "lake", delivered)
    text = body.decode()
    assert status == 200, text[:500]
    assert f'gatemeter_ingest_assigned_partitions{{topic="{topic}"}} {PARTITIONS}' in text, text[-3000:]
    assert f"gatemeter_ingest_events_total{{result=\"stored\"}} {good}" in text
    # Reaching the end of each partition is not a consumer error.
    assert "gatemeter_ingest_consumer_errors_total 0" in text
    assert missing == 404
