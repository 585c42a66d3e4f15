# SPDX-License-Identifier: MIT
"""Shared by bench/compare-*: alternating `vhu bench` rounds against several
back-ends, medians, and the summary table."""
import json
import os
import statistics
import subprocess
import sys
import time


def wait_socket(prog, path, proc, secs=10):
    end = time.time() + secs
    while time.time() < end:
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            sys.exit(f"{prog}: back-end exited early ({proc.returncode})")
        time.sleep(0.05)
    sys.exit(f"{prog}: {path} did not appear")


def run_rounds(prog, vhu, backends, a):
    """backends: [(name, socket, pid)]; rounds alternate between them."""
    results = {name: [] for name, _, _ in backends}
    for r in range(a.rounds):
        for name, sock, pid in backends:
            cmd = [vhu, "bench", sock, "--json", "--quiet", "--time", str(a.time),
                   "--pattern", a.pattern, "--bs", a.bs, "--iodepth", str(a.iodepth),
                   "--queues", str(a.queues), "--pid", str(pid)]
            if getattr(a, "fe_poll", False):
                cmd.append("--poll")
            p = subprocess.run(cmd, capture_output=True, text=True,
                               timeout=a.time + 60)
            if p.returncode != 0:
                sys.exit(f"{prog}: {name} round {r + 1} failed:\n{p.stderr}")
            j = json.loads(p.stdout)
            results[name].append(j)
            print(f"round {r + 1} {name:8s} {j['iops']:10.0f} IOPS  "
                  f"{j.get('iops_per_backend_cpu_s', 0):10.0f} IOPS/CPU-s  "
                  f"p50 {j['lat_p50_us']:7.1f} us  p99 {j['lat_p99_us']:7.1f} us",
                  file=sys.stderr)
    return results


def summarize(results, a, ours, theirs, extra):
    """Medians per back-end and the ratios ours / theirs."""
    summary = {"pattern": a.pattern, "bs": a.bs, "iodepth": a.iodepth,
               "queues": a.queues, "time": a.time, "rounds": a.rounds,
               **extra, "backends": {}}
    for name, runs in results.items():
        summary["backends"][name] = {
            "iops": statistics.median(j["iops"] for j in runs),
            "iops_per_cpu_s": statistics.median(
                j.get("iops_per_backend_cpu_s", 0) for j in runs),
            "cpu_per_s": statistics.median(
                j.get("backend_cpu_s", 0) / j["seconds"] for j in runs),
            "lat_p50_us": statistics.median(j["lat_p50_us"] for j in runs),
            "lat_p99_us": statistics.median(j["lat_p99_us"] for j in runs),
        }
    v, s = summary["backends"][ours], summary["backends"][theirs]
    summary["ratio_iops"] = v["iops"] / s["iops"] if s["iops"] else None
    summary["ratio_iops_per_cpu_s"] = (v["iops_per_cpu_s"] / s["iops_per_cpu_s"]
                                       if s["iops_per_cpu_s"] else None)
    return summary


def print_summary(summary, a, note, ours, theirs):
    print(f"{a.pattern} bs {a.bs} iodepth {a.iodepth} queues {a.queues}, "
          f"{a.rounds} rounds x {a.time:g} s, medians ({note})")
    print(f"{'back-end':10s} {'IOPS':>10s} {'IOPS/CPU-s':>11s} {'CPU':>6s} "
          f"{'p50 us':>8s} {'p99 us':>8s}")
    for name, m in summary["backends"].items():
        print(f"{name:10s} {m['iops']:10.0f} {m['iops_per_cpu_s']:11.0f} "
              f"{m['cpu_per_s'] * 100:5.0f}% {m['lat_p50_us']:8.1f} {m['lat_p99_us']:8.1f}")

    def fmt(x):
        return f"{x:.2f}" if x is not None else "n/a"
    print(f"{ours}/{theirs}: IOPS {fmt(summary['ratio_iops'])}, "
          f"IOPS per back-end CPU-second {fmt(summary['ratio_iops_per_cpu_s'])}")


def stop_all(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(15)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
