"""Settings: FACT_EXTRACTION_CONCURRENCY is lenient (DESIGN §8), secrets never print."""

from __future__ import annotations

import pytest
import structlog

from app.config import Settings, get_settings


@pytest.mark.parametrize(("raw", "expected"), [("1", 1), (" 7 ", 7), ("50", 50), ("3", 3)])
def test_concurrency_accepts_integers_1_to_50(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: int
) -> None:
    monkeypatch.setenv("FACT_EXTRACTION_CONCURRENCY", raw)
    with structlog.testing.capture_logs() as logs:
        assert Settings(_env_file=None).fact_extraction_concurrency == expected  # type: ignore[call-arg]
    assert logs == []


@pytest.mark.parametrize("raw", ["abc", "0", "51", "", "3.5", "-2", "1e3"])
def test_concurrency_falls_back_to_3_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("FACT_EXTRACTION_CONCURRENCY", raw)
    with structlog.testing.capture_logs() as logs:
        assert Settings(_env_file=None).fact_extraction_concurrency == 3  # type: ignore[call-arg]
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["setting"] == "FACT_EXTRACTION_CONCURRENCY"
    assert warnings[0]["value"] == raw


def test_default_is_3_and_settings_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_settings().fact_extraction_concurrency == 3
    monkeypatch.setenv("FACT_EXTRACTION_CONCURRENCY", "9")
    assert get_settings() is get_settings()
    assert get_settings().fact_extraction_concurrency == 3


def test_backends_follow_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    local = Settings(_env_file=None)  # type: ignore[call-arg]
    assert not local.uses_supabase
    assert not local.uses_anthropic
    monkeypatch.setenv("SUPABASE_URL", "https://example.supabase.co")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret-value")
    remote = Settings(_env_file=None)  # type: ignore[call-arg]
    assert remote.uses_supabase
    assert remote.uses_anthropic
    assert "sk-ant-secret-value" not in repr(remote)
    assert "sk-ant-secret-value" not in str(remote.model_dump())
