"""`vdatrain check`'s reports for people: one Markdown row per check, and what a single check changed and saw.

A report is the dict `vdatrain.check.run_check` returns (also what `--json` writes).
"""

from __future__ import annotations


def _hw(hw) -> str:
    return f"{hw[1]}x{hw[0]}"


def _gb(x) -> str:
    return f"{x:.2f}"


def _hours(schedule: dict | None) -> str:
    return f"{schedule['hours']:.1f}" if schedule else "- (narrow)"


def table(reports: list[dict]) -> str:
    """One Markdown row per check."""
    lines = ["| recipe | model | source: frame -> resized -> crop | target: frame -> crop | HRDA context / detail | "
             "eval: image, window (dual) | params (M) | s/it (first) | train peak GiB | eval s/image | eval peak GiB | "
             "full schedule (h) | result |",
             "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for c in reports:
        name = c["recipe"] + (f" [{c['mode']}]" if c.get("mode") else "")
        if not c.get("ok"):
            lines.append(f"| {name} | {c.get('model', '')} | | | | | | | | | | | FAILED at {c.get('step')}: "
                         f"{c.get('error', '').splitlines()[0] if c.get('error') else ''} |")
            continue
        s = c["streams"]["source"]
        src = f"{_hw(s['frame'])} -> {_hw(s['resized'])} -> {_hw(s['crop'])} x{len(s['offsets'])}f"
        tgt = c["streams"].get("target")
        tgt = f"{_hw(tgt['frame'])} -> {_hw(tgt['crop'])} x{len(tgt['offsets'])}f" if tgt else "-"
        hrda = f"{_hw(c['hrda']['context'])} / {_hw(c['hrda']['detail'])}" if c.get("hrda") else "-"
        e = c["eval"]
        ev = f"{_hw(e['image'])}, {_hw(e['window'])}/{_hw(e['stride'])}" + (" dual" if e["dual_frame"] else "")
        lines.append(f"| {name} | {c['model']}{' ckpt' if c['checkpointing'] else ''}"
                     f"{' bf16' if c['precision'] == 'bf16' else ''} | {src} | {tgt} | {hrda} | {ev} | "
                     f"{c['parameters'] / 1e6:.2f} | {c['s_per_it']:.2f} ({c['first_it_s']:.2f}) | "
                     f"{_gb(c['train_peak_gib'])} | {e['seconds']:.2f} | {_gb(e['peak_gib'])} | "
                     f"{_hours(c['full_schedule'])} | ok |")
    return "\n".join(lines) + "\n"


def details(report: dict) -> str:
    """What a single check changed and saw, as lines under the table."""
    lines = [f"{report['recipe']}:"]
    lines += [f"  changed {c}" for c in report.get("changes", [])]
    for part, s in report.get("streams", {}).items():
        shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in s["batch"].items())
        lines.append(f"  {part} ({s['dataset']}, {s['store']}): {shapes}")
    if report.get("ok"):
        e, f = report["eval"], report["full_schedule"]
        lines.append(f"  eval ({e['store']}): one {_hw(e['image'])} image in {e['seconds']:.2f} s"
                     + (f", temporal pairs {', '.join(e['temporal_pairs'])}" if e["temporal_pairs"] else ""))
        if f is None:
            lines.append("  full schedule: not estimated (a narrow check network's seconds say nothing about the "
                         "recipe's model)")
        else:
            lines.append(f"  full schedule: {f['iters']} iterations x {report['s_per_it']:.2f} s + {f['evals']} "
                         f"evaluations x {f['val_images']} images x {e['seconds']:.2f} s = {f['hours']:.1f} h on "
                         f"{report['device']} ({report['processes']} process(es))")
    else:
        lines.append(f"  FAILED at {report.get('step')}: {report.get('error')} ({report.get('where', '')})")
    return "\n".join(lines) + "\n"

