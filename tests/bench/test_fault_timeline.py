"""The fault trial's operator timeline: samples that read the same are one segment."""

from __future__ import annotations

from bench.fault_timeline import Sample, render, timeline

NOTE = "waiting for Anthropic: rate limited since 12:47 UTC"


def _sample(t: float, step: str | None, note: str | None = None, job: str = "j1") -> Sample:
    status = "complete" if step == "complete" else "running"
    profile = "complete" if step == "complete" else "processing"
    return Sample(t, job, profile, status, step, note, 35 if step == "extract_facts" else 86)


def test_samples_that_read_the_same_are_one_segment_per_job() -> None:
    samples = [
        _sample(0, "extract_facts"),
        _sample(3, "extract_facts"),
        _sample(3, "extract_facts", job="j2"),
        _sample(6, "extract_facts", NOTE),
        _sample(9, "extract_facts", NOTE),
        _sample(12, "complete"),
    ]
    segments = timeline(samples, "j1")
    assert [(s["from_s"], s["to_s"], s["note"]) for s in segments] == [
        (0, 3, None),
        (6, 9, NOTE),
        (12, 12, None),
    ]
    assert render(segments).splitlines()[1].endswith(f"running extract_facts 35 % | {NOTE}")
