"""Render the collected report dictionary (see ``report.collect``) as Markdown for people.

Order follows what a reader asks first: the headline table (systems x split/decoder), then the
comparisons spelled out (decoders side by side, systems against the first one), the counts behind
every rate, per-speaker and per-length breakdowns, the worst utterances aligned, and how text was
normalised. Rates are printed as percentages with two decimals.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from audiossl.reports.results import TASKS

Entry = dict[str, Any]


def percent(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.2f}"


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    """A Markdown table; columns whose cells all start with a digit (or n/a, –, **) align right."""
    rows = list(rows)
    numeric = [all(re.match(r"(\*\*)?(\d|n/a|–)", row[i]) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def _unique(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _by_task(report: dict[str, Any]) -> dict[str, list[Entry]]:
    entries = report["results"]
    return {task: [e for e in entries if e["task"] == task] for task in _unique(e["task"] for e in entries)}


def render_markdown(report: dict[str, Any]) -> str:
    sections = [
        _title(report),
        _headline(report),
        _over_seeds(report),
        report.get("probes", []),
        _comparisons(report),
        _details(report),
        _per_speaker(report),
        _by_length(report),
        _worst(report),
        _confusions(report),
        _learning_curves(report),
        _scoring(report),
        _notes(report),
    ]
    return "\n".join(line for section in sections for line in section).rstrip() + "\n"


def _title(report: dict[str, Any]) -> list[str]:
    entries = report["results"]
    facts = [
        f"{len(_unique(e['system'] for e in entries))} systems",
        "splits: " + ", ".join(_unique(e["split"] for e in entries)),
        "decoders: " + ", ".join(_unique(e["decoder"] for e in entries)),
    ]
    return [f"# {report['title']}", "", f"_Generated {report['created']} · " + " · ".join(facts) + "_", ""]


def _cell(entry: Entry) -> str:
    text = percent(entry["headline"])
    if entry["task"] == "asr":
        text += f" ({percent(entry['metrics']['cer'])})"
    return text


def _headline(report: dict[str, Any]) -> list[str]:
    lines = ["## Headline", ""]
    for task, entries in _by_task(report).items():
        scoring = TASKS[task]
        columns = _unique(_column(e) for e in entries)
        best = {c: _best([e for e in entries if _column(e) == c], scoring.lower_is_better) for c in columns}
        direction = "lower is better" if scoring.lower_is_better else "higher is better"
        unit = "WER % (CER %)" if task == "asr" else f"{scoring.name} %"
        several = len(_unique(e["system"] for e in entries)) > 1
        legend = f"{unit}, {direction}" + ("; best per column in bold." if several else ".")
        lines += [f"### {scoring.title}", "", legend, ""]
        rows = []
        for system in _unique(e["system"] for e in entries):
            row = [system]
            for column in columns:
                found = [e for e in entries if e["system"] == system and _column(e) == column]
                text = _cell(found[0]) if found else "–"
                row.append(f"**{text}**" if found and found[0] is best[column] else text)
            rows.append(row)
        lines += _table(["System", *[f"{split} · {decoder}" for split, decoder in columns]], rows)
    return lines


def _over_seeds(report: dict[str, Any]) -> list[str]:
    """Mean ± standard deviation over seeds for systems run as ``<name> seed <n>`` (see ``report.over_seeds``)."""
    rows = report.get("over_seeds") or []
    if not rows:
        return []
    columns = _unique((r["split"], r["decoder"]) for r in rows)
    systems = _unique((r["system"], r["task"], r["seeds"]) for r in rows)
    table = []
    for system, task, seeds in systems:
        cells = []
        for column in columns:
            found = [r for r in rows if (r["system"], r["task"], (r["split"], r["decoder"])) == (system, task, column)]
            cells.append(_spread_cell(found[0]) if found else "–")
        table.append([system, str(seeds), *cells])
    legend = ("Mean ± sample standard deviation over seeds (one recipe, seeds differ); ASR cells: WER (CER) %.")
    return ["## Over seeds", "", legend, "",
            *_table(["System", "Seeds", *[f"{split} · {decoder}" for split, decoder in columns]], table)]


def _spread_cell(row: Entry) -> str:
    text = f"{100 * row['headline']['mean']:.1f} ± {100 * row['headline']['std']:.1f}"
    if "cer" in row:
        text += f" ({100 * row['cer']['mean']:.1f} ± {100 * row['cer']['std']:.1f})"
    return text


def _column(entry: Entry) -> tuple[str, str]:
    return entry["split"], entry["decoder"]


def _best(entries: list[Entry], lower_is_better: bool) -> Entry | None:
    scored = [e for e in entries if e["headline"] is not None and not math.isnan(e["headline"])]
    if len(scored) < 2:
        return None
    return (min if lower_is_better else max)(scored, key=lambda e: e["headline"])


def _relative(new: float, old: float) -> str:
    if old == 0 or math.isnan(old) or math.isnan(new):
        return ""
    return f" ({100 * (new - old) / old:+.1f} % relative)"


def _comparisons(report: dict[str, Any]) -> list[str]:
    """Decoders side by side per system and split, then every system against the first one listed.

    Each system-against-system bullet names the better of the two first and in bold, so a reader skimming
    the bold words learns who won, never only who was compared.
    """
    lines: list[str] = []
    for task, entries in _by_task(report).items():
        scoring = TASKS[task]
        metric = scoring.name
        for (system, split), base, other in _pairs(entries, ("system", "split")):
            lines.append(f"- {system}, {split}: {base['decoder']} {percent(base['headline'])} → {other['decoder']} "
                         f"{percent(other['headline'])} {metric}{_relative(other['headline'], base['headline'])}")
        for (split, decoder), base, other in _pairs(entries, ("split", "decoder")):
            lines.append(f"- {split} · {decoder}: {_verdict(base, other, scoring.lower_is_better, metric)}")
    return ["## Comparisons", "", *lines, ""] if lines else []


def _verdict(first: Entry, second: Entry, lower_is_better: bool, metric: str) -> str:
    """``**winner** x vs loser y metric (relative change)``, or a tie / an unscored pair said as such."""
    a, b = first["headline"], second["headline"]
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return f"{second['system']} {percent(b)} vs {first['system']} {percent(a)} {metric} (not comparable)"
    if a == b:
        return f"{second['system']} and {first['system']} tie at {percent(a)} {metric}"
    first_wins = (a < b) == lower_is_better
    winner, loser = (first, second) if first_wins else (second, first)
    return (f"**{winner['system']}** {percent(winner['headline'])} beats {loser['system']} "
            f"{percent(loser['headline'])} {metric}{_relative(winner['headline'], loser['headline'])}")


def _pairs(entries: list[Entry], keys: tuple[str, str]) -> list[tuple[tuple[str, str], Entry, Entry]]:
    """(group key, baseline, other) for every group of ``entries`` sharing ``keys`` with 2+ members."""
    return [(key, group[0], other) for key, group in _groups(entries, keys).items() for other in group[1:]]


def _groups(entries: list[Entry], keys: tuple[str, str]) -> dict[tuple[str, str], list[Entry]]:
    groups: dict[tuple[str, str], list[Entry]] = {}
    for entry in entries:
        groups.setdefault((entry[keys[0]], entry[keys[1]]), []).append(entry)
    return {key: group for key, group in groups.items() if len(group) > 1}


_COUNT_COLUMNS = {
    "asr": [("Utts", "utterances"), ("Ref words", "ref_words"), ("Sub", "substitutions"), ("Del", "deletions"),
            ("Ins", "insertions"), ("WER %", "wer"), ("CER %", "cer")],
    "phoneme": [("Utts", "utterances"), ("Ref phones", "ref_phones"), ("Sub", "substitutions"), ("Del", "deletions"),
                ("Ins", "insertions"), ("PER %", "per")],
    "speaker": [("Utts", "total"), ("Correct", "correct"), ("Accuracy %", "accuracy")],
    "frames": [("Utts", "utterances"), ("Frames", "total"), ("Correct", "correct"), ("Accuracy %", "accuracy")],
}
_RATES = {"wer", "cer", "per", "accuracy"}


def _details(report: dict[str, Any]) -> list[str]:
    lines = ["## Counts", ""]
    for task, entries in _by_task(report).items():
        columns = _COUNT_COLUMNS[task]
        rows = [
            [e["system"], e["split"], e["decoder"]]
            + [percent(e["metrics"][k]) if k in _RATES else str(e["metrics"][k]) for _, k in columns]
            for e in entries
        ]
        header = ["System", "Split", "Decoder", *[h for h, _ in columns]]
        lines += [f"### {TASKS[task].title}", "", *_table(header, rows)]
    return lines


def _image(title: str, file: str | None) -> list[str]:
    return [f"![{title}]({file})", ""] if file else []


def _per_speaker(report: dict[str, Any]) -> list[str]:
    """One table per task and split (rows: speakers, columns: system · decoder), then the bar plot."""
    lines = ["## Per speaker", ""]
    for task, entries in _by_task(report).items():
        metric = TASKS[task].headline
        if not any(speaker for e in entries for speaker in e["by_speaker"]):
            continue
        lines += [f"### {TASKS[task].title}", ""]
        for split in _unique(e["split"] for e in entries):
            of_split = [e for e in entries if e["split"] == split]
            speakers = sorted({s for e in of_split for s in e["by_speaker"]})
            rows = [[s] + [percent(e["by_speaker"].get(s, {}).get(metric)) for e in of_split] for s in speakers]
            lines += [f"Split **{split}**:", ""]
            lines += _table(["Speaker", *[f"{e['system']} · {e['decoder']}" for e in of_split]], rows)
        lines += _image(f"{TASKS[task].name} per speaker", report["plots"]["per_speaker"].get(task))
    return lines if len(lines) > 2 else []


def _by_length(report: dict[str, Any]) -> list[str]:
    lines = ["## Error rate by utterance length", ""]
    for task, entries in _by_task(report).items():
        if not entries[0]["by_length"]:
            continue
        metric = TASKS[task].headline
        bins = sorted({b for e in entries for b in e["by_length"]})
        rows = [[_bin_name(b)] + [percent(e["by_length"].get(b, {}).get(metric)) for e in entries] for b in bins]
        lines += [f"### {TASKS[task].title}", "", "Bins are quantiles of the utterances' lengths, shared by all systems.", ""]
        lines += _table(["Length", *[e["label"] for e in entries]], rows)
        lines += _image(f"{TASKS[task].name} by length", report["plots"]["error_by_length"].get(task))
    return lines if len(lines) > 2 else []


def _bin_name(key: str) -> str:
    """``"2: 1.2-3.4 s"`` -> ``"1.2-3.4 s"`` (the index only keeps the bins in order)."""
    return key.split(": ", 1)[-1]


def _worst(report: dict[str, Any]) -> list[str]:
    lines = ["## Worst utterances", "", "Aligned word by word (phone by phone for PER): `*` marks a gap, "
             "S a substitution, D a deletion, I an insertion.", ""]
    for entry in report["results"]:
        if not entry["worst"]:
            continue
        lines += [f"### {entry['label']} ({TASKS[entry['task']].name})", "", "```text"]
        for utterance in entry["worst"]:
            lines += [
                f"{utterance['id']}  ({_count(utterance['errors'], 'error')} in "
                f"{_count(utterance['ref_words'], 'reference token')})",
                f"REF: {utterance['reference']}",
                f"HYP: {utterance['hypothesis']}",
                f"     {utterance['marks']}".rstrip(),
                "",
            ]
        lines += ["```", ""]
    return lines if len(lines) > 4 else []


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _confusions(report: dict[str, Any]) -> list[str]:
    figures = report["plots"]["confusion"]
    lines = ["## Speaker confusion", ""]
    for label, file in figures.items():
        lines += [f"### {label}", "", *_image(f"confusion matrix, {label}", file)]
    return lines if figures else []


def _learning_curves(report: dict[str, Any]) -> list[str]:
    file = report["plots"]["learning_curves"]
    return ["## Learning curves", "", *_image("learning curves", file)] if file else []


def _scoring(report: dict[str, Any]) -> list[str]:
    return ["## Scoring", "", f"Text normalisation: {report['normalization']}", "",
            "All rates come from `audiossl.metrics` (jiwer alignments); unrounded values are in "
            "`report.json`.", ""]


def _notes(report: dict[str, Any]) -> list[str]:
    return ["## Notes", "", *[f"- {note}" for note in report["notes"]], ""] if report["notes"] else []
