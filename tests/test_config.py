"""Settings: FACT_EXTRACTION_CONCURRENCY is lenient (DESIGN §8), empty means unset, an invalid
value is one sentence for people, secrets never print."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr, ValidationError

from app.config import Settings, get_settings
from app.config_errors import explain_invalid_settings
from app.errors import ConfigError

ENV_EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"


@pytest.mark.parametrize(("raw", "expected"), [("1", 1), (" 7 ", 7), ("50", 50), ("3", 3)])
def test_concurrency_accepts_integers_1_to_50(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: int
) -> None:
    monkeypatch.setenv("FACT_EXTRACTION_CONCURRENCY", raw)
    with structlog.testing.capture_logs() as logs:
        assert Settings(_env_file=None).fact_extraction_concurrency == expected  # type: ignore[call-arg]
    assert logs == []


@pytest.mark.parametrize("raw", ["abc", "0", "51", " ", "3.5", "-2", "1e3"])
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


def test_env_example_copied_to_dotenv_gives_the_embedded_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dotenv = tmp_path / ".env"
    shutil.copyfile(ENV_EXAMPLE, dotenv)
    with structlog.testing.capture_logs() as logs:
        from_file = Settings(_env_file=dotenv)  # type: ignore[call-arg]
    assert logs == []
    assert from_file == Settings(_env_file=None)  # type: ignore[call-arg]
    assert not from_file.uses_supabase
    assert not from_file.uses_anthropic
    assert from_file.llm_price_input_per_mtok is None
    assert (from_file.rlm_api_key, from_file.alert_webhook) == (None, None)


@pytest.mark.parametrize(
    "name",
    [
        "SUPABASE_URL",
        "SUPABASE_SERVICE_KEY",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "RLM_API_KEY",
        "ALERT_WEBHOOK",
        "LLM_PRICE_OUTPUT_PER_MTOK",
        "LEASE_SECONDS",
        "FACT_EXTRACTION_CONCURRENCY",
    ],
)
def test_an_empty_variable_means_unset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    default = Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv(name, "")
    assert Settings(_env_file=None) == default  # type: ignore[call-arg]
    monkeypatch.delenv(name)
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"{name}=\n")
    assert Settings(_env_file=dotenv) == default  # type: ignore[call-arg]


@pytest.mark.parametrize("blank", ["", "   ", SecretStr(""), SecretStr(" \n")])
def test_a_blank_key_or_url_given_in_code_selects_nothing(blank: object) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        supabase_url=blank if isinstance(blank, str) else "",
        supabase_service_key=blank,
        anthropic_api_key=blank,
        rlm_api_key=blank,
        alert_webhook=blank,
    )
    assert not settings.uses_supabase
    assert not settings.uses_anthropic
    assert settings.supabase_service_key is None
    assert (settings.rlm_api_key, settings.alert_webhook) == (None, None)


@pytest.mark.parametrize(
    ("name", "raw", "says"),
    [
        ("LEASE_SECONDS", "abc", "LEASE_SECONDS must be an integer, at least 1, not 'abc'"),
        ("SUPABASE_MAX_RETRIES", "99", "SUPABASE_MAX_RETRIES must be an integer from 0 to 10"),
        ("HEARTBEAT_SECONDS", "0", "HEARTBEAT_SECONDS must be a number, above 0, not '0'"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be one of auto, json, console, not 'xml'"),
        ("RUN_WORKER", "maybe", "RUN_WORKER must be true or false, not 'maybe'"),
        ("LLM_PRICE_INPUT_PER_MTOK", "cheap", "a number (or empty for unset), not 'cheap'"),
        ("ALLOWED_BUCKETS", "imports", "ALLOWED_BUCKETS must be a JSON list"),
    ],
)
def test_an_invalid_setting_is_one_sentence_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, says: str
) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError) as caught:
        get_settings()
    message = caught.value.message
    assert message.startswith("invalid setting: ")
    assert says in message
    assert "\n" not in message
    assert caught.value.__cause__ is None  # no pydantic dump chained under it


def test_every_invalid_setting_is_named_and_secrets_are_not_echoed() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, rlm_api_key=123456789, lease_seconds="x")  # type: ignore[call-arg]
    message = explain_invalid_settings(caught.value, Settings.model_fields)
    assert message.startswith("invalid settings: ")
    assert "RLM_API_KEY must be text" in message
    assert "123456789" not in message
    assert "LEASE_SECONDS must be an integer, at least 1, not 'x'" in message
