"""Several ingesters in one consumer group on one lake, on a real tansu
broker: killed with SIGKILL and restarted at random (every restart is a
rebalance), frozen past the session timeout and woken up (a zombie), and a
rolling restart where the new process starts before the old one stops. Every good (partition, offset) ends up in the lake exactly
once and every bad one is a dead letter."""

import os
import random
import signal
import subprocess
import time

import support

MESSAGES = 200_000
PARTITIONS = 8
BAD_SHARE = 0.01
INGESTERS = 3
# Short group timeouts, so a killed member's partitions move on quickly.
GROUP_OPTIONS = ["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500",
                 "-X", "max.poll.interval.ms=20000"]


def start(broker, topic, data_dir, group, *extra):
    # Dynamic members: tansu's group coordinator panics when several static
    # members join one group (test_catch_up.py covers static membership
    # with one member at a time).
    args = ["--brokers", broker, "--topic", topic, "--group", group, "--data-dir", data_dir,
            "--instance-id", "",
            *GROUP_OPTIONS, "ingest", "--flush-rows", 3000, "--flush-interval-ms", 1000, *extra]
    env = dict(os.environ, GATEMETER_LOG="warn")
    return subprocess.Popen([support.gatemeter_bin(), *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(proc, how):
    if proc.poll() is None:
        proc.send_signal(how)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    return err


def test_a_consumer_group_of_ingesters_killed_and_restarted_stores_everything_once(broker, topic, tmp_path):
    lines = support.generate_events(tmp_path / "events.jsonl", requests=185_000, seed=23,
                                    start="2026-11-02T08:00:00Z")
    assert len(lines) >= MESSAGES, len(lines)
    messages = support.mix_bad_events(lines[:MESSAGES], BAD_SHARE, seed=9)
    delivered = support.produce(broker, topic, messages, partitions=PARTITIONS)
    assert len({p for p, _o, _c in delivered}) == PARTITIONS

    data_dir = tmp_path / "lake"
    group = f"scale-{topic}"
    rng = random.Random(20261202)
    members = [start(broker, topic, data_dir, group) for _ in range(INGESTERS)]
    kills = 0
    logs = []
    deadline = time.monotonic() + 600
    while kills < 12 and time.monotonic() < deadline:
        time.sleep(rng.uniform(1.0, 4.0))
        victim = rng.randrange(INGESTERS)
        err = stop(members[victim], signal.SIGKILL)
        logs.append(err)
        assert members[victim].returncode == -signal.SIGKILL, err[-2000:]
        kills += 1
        members[victim] = start(broker, topic, data_dir, group)
    assert kills >= 10, f"only {kills} kills in the time allowed"

    # Zombies: a member frozen past the session timeout loses its partitions
    # to the others, then wakes up with rows still buffered for them.
    for victim in (0, 2):
        members[victim].send_signal(signal.SIGSTOP)
        time.sleep(10)
        members[victim].send_signal(signal.SIGCONT)
        time.sleep(rng.uniform(2.0, 4.0))

    # A rolling restart: each member's successor joins before it stops.
    for n in range(INGESTERS):
        successor = start(broker, topic, data_dir, group)
        time.sleep(rng.uniform(1.0, 3.0))
        err = stop(members[n], signal.SIGTERM)
        logs.append(err)
        assert members[n].returncode == 0, err[-2000:]
        members[n] = successor

    # Let the group drain the topic, then stop it and check every position.
    total_good = sum(1 for _p, _o, cls in delivered if cls is None)
    drain_until = time.monotonic() + 300
    while time.monotonic() < drain_until and len(support.lake_positions(data_dir)) < total_good:
        time.sleep(2)
    for member in members:
        err = stop(member, signal.SIGTERM)
        logs.append(err)
        assert member.returncode == 0, err[-2000:]
    support.assert_exactly_once(data_dir, delivered)
    races = sum(log.count("another writer committed first") for log in logs)
    print(f"{kills} SIGKILLs, 2 frozen members, {races} commits lost to another writer and re-read")
