#!/usr/bin/env python3
"""Ingest benchmark (not a test): measures on this machine, in one run,
1. end to end: `gatemeter ingest --until-caught-up` from a tansu broker into
   committed Parquet (events/s, peak RSS), beside
2. the ceiling: a bare rdkafka consumer reading the same topic and
   discarding every message, and
3. our CPU path without a broker: `gatemeter import` of the same events
   (decode -> Arrow -> Parquet -> commit), events/s per CPU-second,
4. Parquet bytes per attempt,
and writes the numbers to bench/results/ingest.json and a Markdown table
to stdout (pasted into BENCHMARKS.md).

usage: bench/ingest_bench.py [--events N]   (release build required)
"""

import argparse
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import support  # noqa: E402

TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"


def run_measured(cmd, env=None):
    """Runs cmd under GNU time; returns (stdout, wall s, cpu s, peak RSS MiB).
    (A child forked straight from this process would inherit its large
    resident size in ru_maxrss; under /usr/bin/time the measured process's
    parent is small.)"""
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "TIME %e %U %S %M", *cmd],
                            capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    line = [l for l in result.stderr.splitlines() if l.startswith("TIME ")][-1]
    _, _elapsed, user, system, max_kib = line.split()
    return result.stdout, wall, float(user) + float(system), int(max_kib) / 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=500_000)
    args = parser.parse_args()
    gatemeter = str(TARGET / "gatemeter")
    bare = str(TARGET / "examples" / "bare_consumer")
    for binary in (gatemeter, bare):
        assert os.path.exists(binary), f"{binary} missing: cargo build --release --workspace --bins --examples"
    os.environ["GATEMETER_BIN"] = gatemeter

    work = pathlib.Path(tempfile.mkdtemp(prefix="gatemeter-bench-"))
    port = support.free_port()
    tansu = subprocess.Popen(
        ["tansu", "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
         "--advertised-listener-url", f"tcp://127.0.0.1:{port}", "--storage-engine", "sqlite://tansu.db"],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        support.wait_for_port(port)
        brokers = f"127.0.0.1:{port}"
        events = work / "events.jsonl"
        requests = int(args.events / 1.12)
        lines = support.generate_events(events, requests=requests, seed=7)
        lines = lines[: args.events]
        with open(events, "wb") as f:
            for line in lines:
                f.write(line + b"\n")
        n = len(lines)
        topic = "bench-attempts"
        messages = [(None, line, None) for line in lines]
        support.produce(brokers, topic, messages, partitions=4)
        del messages, lines

        out, bare_wall, _, bare_rss = run_measured([bare, brokers, topic])
        fields = dict(kv.split("=") for kv in out.split())
        assert int(fields["messages"]) == n, out
        bare_rate = n / float(fields["seconds"])

        lake = work / "lake"
        env = dict(os.environ, GATEMETER_LOG="warn")
        _, ingest_wall, ingest_cpu, ingest_rss = run_measured(
            [gatemeter, "--brokers", brokers, "--topic", topic, "--group", "bench", "--data-dir", str(lake),
             "ingest", "--until-caught-up"], env=env)
        ingest_rate = n / ingest_wall

        import_lake = work / "import-lake"
        _, import_wall, import_cpu, import_rss = run_measured(
            [gatemeter, "--data-dir", str(import_lake), "import", str(events)], env=env)
        parquet_bytes = sum(p.stat().st_size for p in (import_lake / "attempts").rglob("*.parquet")
                            if "_delta_log" not in p.parts)
        json_bytes = events.stat().st_size

        results = {
            "events": n,
            "json_bytes_per_event": json_bytes / n,
            "bare_consumer_events_per_s": bare_rate,
            "bare_consumer_peak_rss_mib": bare_rss,
            "ingest_events_per_s": ingest_rate,
            "ingest_wall_s": ingest_wall,
            "ingest_cpu_s": ingest_cpu,
            "ingest_peak_rss_mib": ingest_rss,
            "ingest_vs_bare": ingest_rate / bare_rate,
            "import_events_per_s": n / import_wall,
            "import_events_per_cpu_s": n / import_cpu,
            "import_peak_rss_mib": import_rss,
            "parquet_bytes_per_attempt": parquet_bytes / n,
        }
        out_dir = ROOT / "bench" / "results"
        out_dir.mkdir(exist_ok=True)
        (out_dir / "ingest.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"| measure | value |\n|---|---|")
        for key, value in results.items():
            print(f"| {key} | {value:,.2f} |" if isinstance(value, float) else f"| {key} | {value:,} |")
    finally:
        tansu.terminate()
        tansu.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
