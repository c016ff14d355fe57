"""Documents at rest: encrypted under a random name in the private storage,
read back only when the key and the checksum agree, key rotation, no file
left behind by a refused upload or a failed write."""

from __future__ import annotations

import io
import os
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, transaction
from django.utils import timezone

from kyc import documents
from kyc.documents import DocumentRejected, DocumentUnreadable, check_upload
from kyc.models import FRONT, PAGE, Document, Requirement, Submission
from kyc.services import DocumentDetails, submission_document_create
from tests.factories import TraderFactory
from tests.kyc import hostile_files as files


def stored_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def checked(data: bytes | None = None, name: str = "passport.jpg"):
    return check_upload(SimpleUploadedFile(name, data or files.good_jpeg()))


def new_key() -> str:
    return Fernet.generate_key().decode()


class FakeDocument:
    """What read() needs of a Document row, without a database."""

    def __init__(self, storage_name: str, sha256: str):
        self.storage_name = storage_name
        self.sha256 = sha256


# --- encryption at rest ---------------------------------------------------------------


def test_stored_bytes_are_encrypted_and_decrypt_to_the_original(kyc_document_root):
    for data in (files.good_jpeg(), files.good_png(), files.good_pdf()):
        assert files.MARKER in data
        item = checked(data)
        name = documents.store(item)
        on_disk = (kyc_document_root / name).read_bytes()
        assert files.MARKER not in on_disk
        assert data not in on_disk
        assert on_disk.startswith(b"KYD1")
        assert documents.read(FakeDocument(name, item.sha256)) == data


def test_the_stored_name_is_random_and_says_nothing_about_the_client(kyc_document_root):
    item = checked(name="John Smith passport.jpg")
    first, second = documents.store(item), documents.store(item)
    assert first != second
    for name in (first, second):
        assert "John" not in name and "passport" not in name and "jpg" not in name
        assert Path(kyc_document_root, name).is_file()


def test_files_and_folders_are_readable_by_the_server_only(kyc_document_root):
    name = documents.store(checked())
    path = kyc_document_root / name
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_the_storage_has_no_url():
    with pytest.raises(ValueError, match="no URL"):
        documents.document_storage().url("ab/abc.kyd")


def test_key_rotation_old_files_still_read_new_files_use_the_new_key(settings):
    old, new = new_key(), new_key()
    settings.KYC_DOCUMENT_KEYS = [old]
    item = checked()
    before = documents.store(item)

    settings.KYC_DOCUMENT_KEYS = [new, old]
    after = documents.store(item)
    assert documents.read(FakeDocument(before, item.sha256)) == item.content
    assert documents.read(FakeDocument(after, item.sha256)) == item.content

    # The new file is under the new key alone: it reads without the old key...
    settings.KYC_DOCUMENT_KEYS = [new]
    assert documents.read(FakeDocument(after, item.sha256)) == item.content
    # ...and the old one needs it.
    with pytest.raises(DocumentUnreadable, match="no longer in KYC_DOCUMENT_KEYS"):
        documents.read(FakeDocument(before, item.sha256))


def test_a_bad_key_fails_loudly(settings):
    settings.KYC_DOCUMENT_KEYS = ["not-a-key"]
    with pytest.raises(ImproperlyConfigured, match="KYC_DOCUMENT_KEYS"):
        documents.store(checked())


def test_development_key_is_derived_from_the_secret_key(settings):
    settings.KYC_DOCUMENT_KEYS = []
    item = checked()
    name = documents.store(item)
    assert documents.read(FakeDocument(name, item.sha256)) == item.content
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    with pytest.raises(DocumentUnreadable):
        documents.read(FakeDocument(name, item.sha256))


@pytest.mark.parametrize("offset", [0, 5, 20, 40, -1])
def test_tampered_ciphertext_is_refused(kyc_document_root, offset):
    item = checked()
    name = documents.store(item)
    path = kyc_document_root / name
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(DocumentUnreadable):
        documents.read(FakeDocument(name, item.sha256))


def test_a_file_swapped_for_another_documents_file_is_refused(kyc_document_root):
    mine, theirs = checked(files.good_jpeg()), checked(files.good_png())
    my_name, their_name = documents.store(mine), documents.store(theirs)
    (kyc_document_root / my_name).write_bytes((kyc_document_root / their_name).read_bytes())
    with pytest.raises(DocumentUnreadable, match="checksum"):
        documents.read(FakeDocument(my_name, mine.sha256))


def test_a_missing_file_is_unreadable():
    with pytest.raises(DocumentUnreadable, match="missing"):
        documents.read(FakeDocument("ab/missing.kyd", "0" * 64))


def test_a_failed_write_leaves_no_partial_file(kyc_document_root, monkeypatch):
    storage = documents.document_storage()
    real_save = type(storage)._save

    def save_half_then_fail(self, name, content):
        path = Path(self.path(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.read()[:10])
        raise OSError("No space left on device")

    monkeypatch.setattr(type(storage), "_save", save_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        documents.store(checked())
    assert stored_files(kyc_document_root) == []
    monkeypatch.setattr(type(storage), "_save", real_save)


def test_delete_removes_the_file(kyc_document_root):
    name = documents.store(checked())
    documents.delete(name)
    assert stored_files(kyc_document_root) == []


# --- documents_store and the submission -----------------------------------------------


@pytest.fixture
def identity(db) -> Requirement:
    return Requirement.objects.get(name="Identity document")


def passport():
    return DocumentDetails(
        document_kind="passport", expires_on=timezone.localdate() + timedelta(days=900)
    )


@pytest.mark.django_db
def test_an_upload_through_the_service_is_stored_encrypted(identity, kyc_document_root):
    trader = TraderFactory()
    data = files.good_jpeg()
    submission = submission_document_create(
        user=trader,
        requirement=identity,
        details=passport(),
        files=[(PAGE, SimpleUploadedFile("my passport.jpg", data, content_type="image/jpeg"))],
    )
    (document,) = submission.documents.all()
    assert document.user == trader
    assert document.side == PAGE
    assert document.content_type == "image/jpeg"
    assert document.size == len(data)
    assert document.original_name == "my passport.jpg"
    assert stored_files(kyc_document_root) == [kyc_document_root / document.storage_name]
    assert files.MARKER not in (kyc_document_root / document.storage_name).read_bytes()
    assert documents.read(document) == data


HOSTILE = [
    files.windows_executable,
    files.zip_bomb,
    files.html_page,
    files.svg_image,
    files.jpeg_polyglot,
    files.png_decompression_bomb,
    files.pdf_with_javascript,
    files.pdf_open_action_javascript_hex_escaped,
    files.pdf_launch_action,
    files.pdf_with_attachment,
    files.pdf_encrypted,
    files.truncated_jpeg,
    lambda: b"",
]


@pytest.mark.django_db
@pytest.mark.parametrize("maker", HOSTILE, ids=lambda maker: maker.__name__)
def test_a_hostile_upload_stores_nothing(identity, kyc_document_root, maker):
    trader = TraderFactory()
    hostile = SimpleUploadedFile("passport.jpg", maker(), content_type="image/jpeg")
    with pytest.raises(DocumentRejected):
        submission_document_create(
            user=trader, requirement=identity, details=passport(), files=[(PAGE, hostile)]
        )
    assert stored_files(kyc_document_root) == []
    assert not Document.objects.exists()
    assert not Submission.objects.filter(user=trader).exists()


@pytest.mark.django_db
def test_one_hostile_side_refuses_the_whole_card(identity, kyc_document_root):
    trader = TraderFactory()
    front = SimpleUploadedFile("front.jpg", files.good_jpeg())
    back = SimpleUploadedFile("back.jpg", files.windows_executable())
    with pytest.raises(DocumentRejected, match="Programs are not accepted"):
        submission_document_create(
            user=trader,
            requirement=identity,
            details=DocumentDetails(
                document_kind="national_id",
                expires_on=timezone.localdate() + timedelta(days=900),
            ),
            files=[(FRONT, front), ("back", back)],
        )
    assert stored_files(kyc_document_root) == []
    assert not Document.objects.exists()


def _submission(user, requirement) -> Submission:
    return Submission.objects.create(user=user, requirement=requirement, document_kind="passport")


@pytest.mark.django_db
def test_documents_store_deletes_what_it_wrote_when_a_later_file_fails(
    identity, kyc_document_root, monkeypatch
):
    trader = TraderFactory()
    submission = _submission(trader, identity)
    good = [(FRONT, checked()), ("back", checked(files.good_png()))]
    real_store = documents.store
    calls = []

    def store_then_fail(item):
        calls.append(item)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_store(item)

    monkeypatch.setattr(documents, "store", store_then_fail)
    with pytest.raises(OSError):
        documents.documents_store(submission, trader, good)
    assert stored_files(kyc_document_root) == []


@pytest.mark.django_db
def test_documents_store_deletes_its_files_when_a_row_cannot_be_created(
    identity, kyc_document_root, monkeypatch
):
    trader = TraderFactory()
    submission = _submission(trader, identity)
    real_create = Document.objects.create
    rows = []

    def create_then_fail(**fields):
        rows.append(fields)
        if len(rows) == 2:
            raise IntegrityError("duplicate key value violates unique constraint")
        return real_create(**fields)

    monkeypatch.setattr(Document.objects, "create", create_then_fail)
    with pytest.raises(IntegrityError), transaction.atomic():
        documents.documents_store(submission, trader, [(FRONT, checked()), ("back", checked())])
    assert stored_files(kyc_document_root) == []
    assert not Document.objects.exists()


@pytest.mark.django_db
def test_documents_discard_deletes_files_of_a_rolled_back_submission(identity, kyc_document_root):
    trader = TraderFactory()
    submission = _submission(trader, identity)
    stored = documents.documents_store(submission, trader, [(PAGE, checked())])
    assert len(stored_files(kyc_document_root)) == 1
    documents.documents_discard(stored)
    assert stored_files(kyc_document_root) == []


@pytest.mark.django_db
def test_orphan_files_are_deleted_after_a_grace_period(identity, kyc_document_root):
    trader = TraderFactory()
    submission = _submission(trader, identity)
    (kept,) = documents.documents_store(submission, trader, [(PAGE, checked())])
    orphan = documents.store(checked())
    fresh_orphan = documents.store(checked())
    an_hour_ago = (timezone.now() - timedelta(hours=2)).timestamp()
    for name in (kept.storage_name, orphan):
        os.utime(kyc_document_root / name, (an_hour_ago, an_hour_ago))

    assert documents.documents_orphans_delete(older_than=timedelta(hours=1)) == 1
    left = {str(path.relative_to(kyc_document_root)) for path in stored_files(kyc_document_root)}
    assert left == {kept.storage_name, fresh_orphan}


@pytest.mark.django_db
def test_reencrypt_completes_a_rotation_so_the_old_key_can_go(
    identity, kyc_document_root, settings
):
    old, new = new_key(), new_key()
    settings.KYC_DOCUMENT_KEYS = [old]
    trader = TraderFactory()
    submission = _submission(trader, identity)
    data = files.good_pdf()
    (document,) = documents.documents_store(submission, trader, [(PAGE, checked(data))])
    before = document.storage_name

    settings.KYC_DOCUMENT_KEYS = [new, old]
    call_command("kyc_documents", "--reencrypt", stdout=io.StringIO())
    document.refresh_from_db()
    assert document.storage_name != before
    assert stored_files(kyc_document_root) == [kyc_document_root / document.storage_name]
    # A second run has nothing left to do.
    assert documents.documents_reencrypt() == 0

    settings.KYC_DOCUMENT_KEYS = [new]
    assert documents.read(document) == data


@pytest.mark.django_db
def test_the_maintenance_command_says_what_it_did(identity, kyc_document_root):
    documents.store(checked())
    out = io.StringIO()
    call_command("kyc_documents", "--prune-orphans", "--older-than-hours", "0", stdout=out)
    assert "Deleted 1 orphan file(s)." in out.getvalue()
    assert stored_files(kyc_document_root) == []
    with pytest.raises(CommandError, match="Say what to do"):
        call_command("kyc_documents")
