"""Runs every benchmark; prints and writes one table: figure, goal, same-run baseline, ratio.

Each benchmark runs as its own process (each is runnable alone, see its docstring) with its own
broker, database schemas and keys, and prints `@result` lines; rounds interleave the
benchmarks so a load that comes and goes on the machine touches every figure alike, and each
figure is the median of its rounds. Baselines come from the same run: the naive Faust service
for the workers' rates, the notify bench's previous sender for its rates, and the latency bench
run again with Faust's old fetch wait (1.5 s) and batch window (50 ms).

Run: python bench/run_all.py [--rounds 3] [--small] [--report bench/REPORT.md]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULT_PREFIX = "@result "
OLD_LATENCY = {"MEDINS_FETCH_MAX_WAIT_MS": "1500", "MEDINS_BATCH_WITHIN_SECONDS": "0.05"}


@dataclass
class Bench:
    name: str
    script: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # Figures renamed (old-settings latency run: its figures are baselines).
    suffix: str = ""


@dataclass
class Row:
    figure: str
    unit: str
    goal: str
    expects: list[str]


def plan(args: argparse.Namespace) -> list[Bench]:
    lat = ["--rate", str(args.rate), "--seconds", str(args.latency_seconds)]
    low = ["--rate", str(args.low_rate), "--seconds", str(args.latency_seconds)]
    at_low = f" at {args.low_rate:g}/s"
    return [
        Bench("baselines", "baselines.py", [str(args.events)]),
        Bench("enrollment", "skeleton.py", [str(args.events)]),
        # The same load on two workers of one group: how the service scales out.
        Bench("enrollment-2", "skeleton.py", [str(args.events), "--replicas", "2"]),
        Bench("transfer", "transfer_roundtrip.py", [str(args.transfers)]),
        Bench("transfer-2", "transfer_roundtrip.py", [str(args.transfers), "--replicas", "2"]),
        Bench("reimbursement", "reimbursement.py",
              [str(args.claims), "--records", str(args.outage_records)]),
        # An outage is one hospital's partition: a second worker only changes the claims.
        Bench("reimbursement-2", "reimbursement.py",
              [str(args.claims), "--records", "0", "--replicas", "2"]),
        Bench("notify", "notify_send.py", [str(args.messages)]),
        Bench("relay", "outbox_relay.py", [str(args.relay_rows)]),
        Bench("latency", "latency.py", lat),
        Bench("latency-old", "latency.py", lat, OLD_LATENCY, suffix=" (old settings)"),
        # Below the rate today's workers sustain on a shared machine: what the settings do
        # once no queue builds up.
        Bench("latency-low", "latency.py", low, suffix=at_low),
        Bench("latency-low-old", "latency.py", low, OLD_LATENCY,
              suffix=f"{at_low} (old settings)"),
    ]


# The table's rows in order: what each figure is measured against and its goal (issue 15).
ROWS = [
    Row("baseline raw", "events/s", "", ["baselines"]),
    Row("baseline faust-consume", "events/s", "", ["baselines"]),
    Row("baseline faust-naive", "events/s", "", ["baselines"]),
    # What no worker can pass on this machine: its loop and trust checks, no database.
    Row("baseline faust-trusted", "events/s", "", ["baselines"]),
    Row("enrollment applications", "events/s", "≥ 5,000/s and ≥ 4× naive", ["enrollment"]),
    Row("tax payments", "events/s", "≥ 5,000/s and ≥ 4× naive", ["enrollment"]),
    Row("enrollment applications (2 workers)", "events/s", "≥ 5,000/s and ≥ 4× naive",
        ["enrollment-2"]),
    Row("tax payments (2 workers)", "events/s", "≥ 5,000/s and ≥ 4× naive", ["enrollment-2"]),
    Row("transfer intake", "transfers/s", "≥ 3,000/s", ["transfer"]),
    Row("transfer round trips A→B→A", "transfers/s", "", ["transfer"]),
    Row("transfer intake (2 workers)", "transfers/s", "≥ 3,000/s", ["transfer-2"]),
    Row("reimbursement claims", "claims/s", "≥ 3,000/s", ["reimbursement"]),
    Row("reimbursement claims (2 workers)", "claims/s", "≥ 3,000/s", ["reimbursement-2"]),
    Row("outage records to payment instructions", "s", "≤ 60 s per 100,000",
        ["reimbursement"]),
    Row("notify sms sent", "SMS/s", "≥ 1,000/s", ["notify"]),
    Row("notify email sent", "emails/s", "≥ 500/s", ["notify"]),
    Row("outbox relay", "events/s", "≥ the highest service rate", ["relay"]),
    Row("latency application.received p50", "ms", "", ["latency"]),
    Row("latency application.received p99", "ms", "≤ 150 ms", ["latency"]),
    Row("latency story payment→SMS p50", "ms", "", ["latency"]),
    Row("latency story payment→SMS p99", "ms", "≤ 250 ms", ["latency"]),
]


def low_rate_rows(low_rate: float) -> list[Row]:
    at = f" at {low_rate:g}/s"
    return [Row(f"latency {what}{at}", "ms", "", ["latency-low"])
            for what in ("application.received p50", "application.received p99",
                         "story payment→SMS p50", "story payment→SMS p99")]
VS_NAIVE = {"enrollment applications", "tax payments", "transfer intake",
            "reimbursement claims", "enrollment applications (2 workers)",
            "tax payments (2 workers)", "transfer intake (2 workers)",
            "reimbursement claims (2 workers)"}


def run_bench(bench: Bench, round_no: int, log_dir: Path) -> tuple[list[dict[str, object]], str]:
    """Runs one benchmark, echoing its lines; its results and '' or what went wrong."""
    log = log_dir / f"{bench.name}-{round_no}.log"
    cmd = [sys.executable, str(HERE / bench.script), *bench.args]
    print(f"\n== round {round_no}: {bench.name}: {' '.join(cmd[1:])}", flush=True)
    started = time.monotonic()
    results: list[dict[str, object]] = []
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=os.environ | bench.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if line.startswith(RESULT_PREFIX):
                item = json.loads(line[len(RESULT_PREFIX):])
                item["figure"] = f"{item['figure']}{bench.suffix}"
                item["round"] = round_no
                results.append(item)
            else:
                print(f"   {line}", end="", flush=True)
        code = proc.wait()
    took = time.monotonic() - started
    problem = "" if code == 0 else f"exit {code} after {took:.0f}s, see {log}"
    print(f"   ({took:.0f}s{', ' + problem if problem else ''})", flush=True)
    return results, problem


def machine() -> dict[str, str]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return {"cpus": str(os.cpu_count()), "model": model or "unknown", "memory": memory,
            "python": platform.python_version(), "os": platform.platform(),
            "commit": commit + (" with uncommitted changes" if dirty else "")}


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("ms", "s"):
        return f"{value:,.1f} {unit}" if value < 10 else f"{value:,.0f} {unit}"
    return f"{value:,.0f} {unit}"


def table(figures: dict[str, list[dict[str, object]]], rows_wanted: list[Row]
          ) -> tuple[list[list[str]], list[str]]:
    """The rows (figure, measured, goal, baseline, ratio) and the figures that are missing."""
    def median(name: str, paired: str | None = None) -> float | None:
        # A latency and its old-settings baseline only from rounds where both ran, so a
        # round that failed on one side does not tilt the ratio.
        rounds = {r["round"] for r in figures.get(paired, [])} if paired else None
        values = [float(str(r["value"])) for r in figures.get(name, [])
                  if rounds is None or r["round"] in rounds]
        return statistics.median(values) if values else None

    naive = median("baseline faust-naive")
    rows, missing = [], []
    for row in rows_wanted:
        old = f"{row.figure} (old settings)" if row.figure.startswith("latency") else None
        value = median(row.figure, old)
        if value is None:
            value = median(row.figure)
        if value is None:
            missing.append(row.figure)
        baseline: float | None = None
        label = ""
        if row.figure in VS_NAIVE:
            baseline, label = naive, "naive Faust"
        elif row.figure.startswith("notify"):
            own = [float(str(r["baseline"])) for r in figures.get(row.figure, [])
                   if "baseline" in r]
            baseline = statistics.median(own) if own else None
            label = "previous sender"
        elif old is not None:
            baseline, label = median(old, row.figure), "fetch wait 1.5 s, window 50 ms"
        elif row.figure == "outbox relay":
            rates = [v for v in (median(f) for f in VS_NAIVE) if v is not None]
            baseline, label = (max(rates) if rates else None), "highest service rate"
        elif row.figure == "baseline faust-trusted":
            baseline, label = naive, "naive Faust"
        elif row.figure in ("baseline faust-consume", "baseline faust-naive"):
            baseline, label = median("baseline raw"), "raw aiokafka"
        ratio = ""
        if value is not None and baseline:
            lower = row.unit in ("ms", "s")
            ratio = f"{(baseline / value if lower else value / baseline):.2f}×"
        base_text = f"{fmt(baseline, row.unit)} ({label})" if baseline is not None else "—"
        if row.figure == "outage records to payment instructions" and value is not None:
            records = next((r.get("records") for r in figures[row.figure]), None)
            label_fig = f"outage: {records:,} records → payment instructions" if records \
                else row.figure
        else:
            label_fig = row.figure
        rows.append([label_fig, fmt(value, row.unit), row.goal or "—", base_text,
                     ratio or "—"])
    return rows, missing


def render(rows: list[list[str]]) -> str:
    head = ["figure", "measured (median)", "goal", "baseline, same run", "ratio"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
              for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true",
                        help="tiny sizes and one round: that every benchmark still runs")
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (1 with --small)")
    parser.add_argument("--events", type=int, default=None,
                        help="applications per baseline case and for the enrollment worker")
    parser.add_argument("--transfers", type=int, default=None)
    parser.add_argument("--claims", type=int, default=None)
    parser.add_argument("--outage-records", type=int, default=None)
    parser.add_argument("--messages", type=int, default=None, help="SMS for notify")
    parser.add_argument("--relay-rows", type=int, default=None, help="outbox rows to relay")
    parser.add_argument("--rate", type=float, default=200.0, help="latency: events/s")
    parser.add_argument("--low-rate", type=float, default=50.0,
                        help="latency again at this rate (and with the old settings)")
    parser.add_argument("--latency-seconds", type=float, default=None)
    parser.add_argument("--only", default="", help="comma-separated bench names")
    parser.add_argument("--report", default=None,
                        help="where to write the report (default bench/REPORT.md; none with "
                             "--small unless given)")
    args = parser.parse_args()
    small = args.small
    defaults = {"rounds": 1 if small else 3, "events": 300 if small else 20_000,
                "transfers": 40 if small else 4_000, "claims": 100 if small else 10_000,
                "outage_records": 1_000 if small else 100_000,
                "messages": 100 if small else 4_000, "relay_rows": 300 if small else 50_000,
                "latency_seconds": 1.0 if small else 20.0}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    report = Path(args.report) if args.report else (None if small else HERE / "REPORT.md")
    only = {b for b in args.only.split(",") if b}
    benches = [b for b in plan(args) if not only or b.name in only]
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"medins-run-all-{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)

    host = machine()
    started_at = datetime.now(UTC)
    load_before = os.getloadavg()
    figures: dict[str, list[dict[str, object]]] = {}
    problems: list[str] = []
    for round_no in range(1, args.rounds + 1):
        for bench in benches:
            results, problem = run_bench(bench, round_no, log_dir)
            for item in results:
                figures.setdefault(str(item["figure"]), []).append(item)
            if problem:
                problems.append(f"{bench.name} (round {round_no}): {problem}")
    load_after = os.getloadavg()
    rows_wanted = ROWS + low_rate_rows(args.low_rate)
    rows, missing = table(figures, rows_wanted)
    if only:
        expected = {r.figure for r in rows_wanted if set(r.expects) & only}
        missing = [m for m in missing if m in expected]
    text = render(rows)
    took = (datetime.now(UTC) - started_at).total_seconds()
    about = (f"{host['cpus']} CPUs ({host['model']}), {host['memory']}, {host['os']}, Python "
             f"{host['python']}; {started_at:%Y-%m-%d %H:%M} UTC, {took / 60:.0f} min; commit "
             f"{host['commit']}; load average {load_before[0]:.1f} at start, "
             f"{load_after[0]:.1f} at end")
    sizes = (f"{args.rounds} round(s); {args.events:,} applications per case, "
             f"{args.transfers:,} transfers, {args.claims:,} claims, {args.outage_records:,} "
             f"outage records, {args.messages:,} SMS, latency at {args.rate:.0f}/s and "
             f"{args.low_rate:g}/s for {args.latency_seconds:g} s each")
    print(f"\n{about}\n{sizes}\n\n{text}")
    for problem in problems:
        print(f"FAILED: {problem}")
    for name in missing:
        print(f"MISSING: {name}")
    if report is not None:
        report.write_text(
            "# Benchmark report\n\nWritten by `python bench/run_all.py` (see README, Tests and"
            " benchmarks). Compare ratios within one run: the machine is shared.\n\n"
            f"Machine: {about}.\n\nSizes: {sizes}.\n\n{text}\n"
            + "".join(f"\nFailed: {p}\n" for p in problems)
            + "".join(f"\nMissing: {m}\n" for m in missing), encoding="utf-8")
        print(f"\nreport written to {report}")
    return 1 if problems or missing else 0


if __name__ == "__main__":
    sys.exit(main())
