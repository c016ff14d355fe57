"""Settings fail loudly, and production settings pass Django's deploy checks."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FERNET_KEY = "Xk2bOvj1bdH1yH0r5QmSxY3y0n9Wj8xJd2qZ4n7aB1c="


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "ENVIRONMENT", "FIELD_ENCRYPTION_KEYS", "KYC_DOCUMENT_KEYS"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_a_secret_key():
    result = _manage("check", ENVIRONMENT="production", ALLOWED_HOSTS="bo.example.com")
    assert result.returncode != 0
    assert "SECRET_KEY must be set in production" in result.stderr


def test_production_settings_pass_the_deploy_checks():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        ENVIRONMENT="production",
        SECRET_KEY="x" * 20 + "a-long-and-random-production-secret-key-0123456789",
        ALLOWED_HOSTS="bo.example.com",
        FIELD_ENCRYPTION_KEYS=FERNET_KEY,
        KYC_DOCUMENT_KEYS=FERNET_KEY,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_to_start_without_field_encryption_keys():
    result = _manage(
        "check",
        ENVIRONMENT="production",
        SECRET_KEY="x" * 20 + "a-long-and-random-production-secret-key-0123456789",
        ALLOWED_HOSTS="bo.example.com",
    )
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS must be set in production" in result.stderr


def test_production_refuses_to_start_without_kyc_document_keys():
    result = _manage(
        "check",
        ENVIRONMENT="production",
        SECRET_KEY="x" * 20 + "a-long-and-random-production-secret-key-0123456789",
        ALLOWED_HOSTS="bo.example.com",
        FIELD_ENCRYPTION_KEYS=FERNET_KEY,
    )
    assert result.returncode != 0
    assert "KYC_DOCUMENT_KEYS must be set in production" in result.stderr


def test_kyc_documents_cannot_be_stored_in_a_public_folder():
    result = _manage("check", KYC_DOCUMENT_ROOT=str(ROOT / "media" / "kyc"))
    assert result.returncode != 0
    assert "must not be inside a public folder" in result.stderr


def test_secret_key_can_come_from_a_file(tmp_path):
    secret = tmp_path / "key"
    secret.write_text("k" * 10 + "file-based-secret-key-with-enough-entropy-0123456789\n")
    result = _manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.SECRET_KEY)",
        ENVIRONMENT="production",
        SECRET_KEY_FILE=str(secret),
        ALLOWED_HOSTS="bo.example.com",
        FIELD_ENCRYPTION_KEYS=FERNET_KEY,
        KYC_DOCUMENT_KEYS=FERNET_KEY,
    )
    assert result.returncode == 0, result.stderr
    assert "file-based-secret-key" in result.stdout


def test_a_bad_environment_value_fails_loudly():
    result = _manage("check", ENVIRONMENT="staging")
    assert result.returncode != 0
    assert "ENVIRONMENT must be" in result.stderr
