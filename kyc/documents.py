"""Identity document files: checking an upload, storing it encrypted, reading it back.

An upload is judged by its content, never by its name or the type the browser
claims: it must be a JPEG, PNG or PDF that a real parser accepts whole (an
image fully decoded under a pixel cap, a PDF parsed and refused when it
carries scripts, actions that launch or send, attachments or encryption).
Nothing is stripped or repaired: a file is accepted as it is or refused with a
message the trader understands (:class:`DocumentRejected`).

Accepted files are encrypted with AES-256-GCM (``cryptography``'s AEAD) under
keys from ``KYC_DOCUMENT_KEYS`` (the first encrypts, all decrypt, so a key can
be rotated) and written under a random name to the ``kyc_documents`` storage
(``KYC_DOCUMENT_ROOT`` on disk, outside any public folder). Reading decrypts
and checks the SHA-256 recorded at upload, so a file swapped or altered on
disk is refused (:class:`DocumentUnreadable`). See docs/KYC_DOCUMENTS.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
import secrets
import unicodedata
import warnings
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile, StopFutureHandlers
from django.utils import timezone
from django.utils.functional import cached_property

from backoffice.secrets import development_key

from .exceptions import KycError

if TYPE_CHECKING:
    from django.core.files.uploadedfile import UploadedFile

    from .models import Document, Submission

logger = logging.getLogger(__name__)

JPEG = "image/jpeg"
PNG = "image/png"
PDF = "application/pdf"
EXTENSIONS = {JPEG: "jpg", PNG: "png", PDF: "pdf"}

ACCEPTED = "Upload a photo or scan as a JPEG or PNG image, or a PDF."


class DocumentRejected(KycError):
    """An upload refused; the message says why, in words for the trader."""


class DocumentUnreadable(Exception):
    """A stored document cannot be read back: its key is gone, or the stored
    bytes were altered (the authentication tag or the checksum fails)."""


@dataclass(frozen=True)
class CheckedFile:
    """An upload that passed :func:`check_upload`, held in memory."""

    content: bytes
    content_type: str
    extension: str
    sha256: str
    size: int
    original_name: str


# --- checking an upload -------------------------------------------------------------


def check_upload(uploaded: UploadedFile) -> CheckedFile:
    """Check an uploaded file by its content; raise :class:`DocumentRejected`.

    Reads at most ``KYC_DOCUMENT_MAX_BYTES`` + 1 bytes, so a huge upload is
    refused without being held in memory whole.
    """
    limit = settings.KYC_DOCUMENT_MAX_BYTES
    content = _read_at_most(uploaded, limit + 1)
    if not content:
        raise DocumentRejected("The file is empty.")
    if len(content) > limit:
        raise DocumentRejected(
            f"The file is larger than {_megabytes(limit)}. "
            "Upload a smaller photo or scan (lower the resolution or scan in colour at 300 dpi)."
        )
    content_type = _sniff(content)
    if content_type == PDF:
        _check_pdf(content)
    else:
        _check_image(content, content_type)
    return CheckedFile(
        content=content,
        content_type=content_type,
        extension=EXTENSIONS[content_type],
        sha256=hashlib.sha256(content).hexdigest(),
        size=len(content),
        original_name=safe_name(getattr(uploaded, "name", "") or "", EXTENSIONS[content_type]),
    )


def _read_at_most(uploaded, size: int) -> bytes:
    if hasattr(uploaded, "seek"):
        with contextlib.suppress(OSError, ValueError):
            uploaded.seek(0)
    chunks, remaining = [], size
    while remaining > 0:
        chunk = uploaded.read(min(remaining, 1024 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"


def _sniff(content: bytes) -> str:
    """The type the first bytes say, or a refusal naming what the file is."""
    if content.startswith(b"\xff\xd8\xff"):
        return JPEG
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if content.startswith(b"%PDF-"):
        return PDF
    head = content[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if content.startswith((b"PK\x03\x04", b"PK\x05\x06", b"Rar!", b"7z\xbc\xaf", b"\x1f\x8b")):
        raise DocumentRejected(f"Archives (such as zip files) are not accepted. {ACCEPTED}")
    if content.startswith((b"MZ", b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"#!")):
        raise DocumentRejected(f"Programs are not accepted. {ACCEPTED}")
    if head.startswith((b"<", b"<?xml")) or b"<svg" in head or b"<html" in head:
        raise DocumentRejected(f"Web pages and SVG images are not accepted. {ACCEPTED}")
    if content[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc"):
        raise DocumentRejected(
            "HEIC photos are not accepted: set your camera to 'Most compatible' "
            f"or take the photo from this page. {ACCEPTED}"
        )
    raise DocumentRejected(f"This file is not a JPEG, PNG or PDF. {ACCEPTED}")


def _check_image(content: bytes, content_type: str) -> None:
    """Decode the whole image under the pixel cap: a file whose first bytes
    say JPEG or PNG but that does not decode (a polyglot, a truncated photo)
    or that would expand past the cap (a decompression bomb) is refused."""
    from PIL import Image

    max_pixels = settings.KYC_DOCUMENT_MAX_PIXELS
    formats = {"JPEG", "MPO"} if content_type == JPEG else {"PNG"}
    name = "JPEG" if content_type == JPEG else "PNG"
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(content), formats=sorted(formats)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise DocumentRejected(_too_many_pixels(width, height, max_pixels))
                if content_type == PNG:
                    # Chunk checksums; verify() leaves the image unusable.
                    image.verify()
            with Image.open(io.BytesIO(content), formats=sorted(formats)) as image:
                image.load()
        except DocumentRejected:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DocumentRejected(
                f"The image is too large (more than {max_pixels / 1_000_000:g} megapixels). "
                "Upload a smaller photo or scan."
            ) from exc
        except MemoryError as exc:
            raise DocumentRejected("The image is too large to process.") from exc
        except Exception as exc:  # Pillow raises many types for a damaged file.
            raise DocumentRejected(
                f"The {name} image is damaged or incomplete and cannot be opened. "
                "Take the photo or scan again."
            ) from exc


def _too_many_pixels(width: int, height: int, max_pixels: int) -> str:
    return (
        f"The image is too large ({width:,} × {height:,} pixels; at most "
        f"{max_pixels / 1_000_000:g} megapixels). Upload a smaller photo or scan."
    )


# Actions that run code, open other files or programs, or send data.
_PDF_DANGEROUS_ACTIONS = {
    "/JavaScript": "scripts (JavaScript)",
    "/Launch": "actions that start programs",
    "/SubmitForm": "forms that send data",
    "/ImportData": "actions that import data",
    "/GoToE": "actions that open attached files",
    "/GoToR": "actions that open other files",
    "/Rendition": "media actions",
    "/RichMediaExecute": "media actions",
}
# Keys whose mere presence means scripts, attachments or active content.
_PDF_DANGEROUS_KEYS = {
    "/JS": "scripts (JavaScript)",
    "/JavaScript": "scripts (JavaScript)",
    "/EmbeddedFiles": "attached files",
    "/EmbeddedFile": "attached files",
    "/EF": "attached files",
    "/RichMedia": "embedded media",
    "/XFA": "XFA forms (which can run scripts)",
}
_PDF_DANGEROUS_SUBTYPES = {
    "/FileAttachment": "attached files",
    "/RichMedia": "embedded media",
    "/Movie": "embedded media",
    "/Sound": "embedded media",
    "/Screen": "embedded media",
}
# A PDF with more objects than this is not a scan or a statement.
_PDF_MAX_OBJECTS = 100_000


def _check_pdf(content: bytes) -> None:
    """Parse the PDF and walk every object reachable from its trailer (what a
    viewer can reach), refusing active content. Names written with ``#xx``
    escapes (``/J#61vaScript``) are compared as pypdf decodes them."""
    from pypdf import PdfReader

    tail = content[-2048:]
    if b"%%EOF" not in tail:
        raise DocumentRejected(
            "The PDF is incomplete (it looks cut off). Save or download it again."
        )
    damaged = "The PDF is damaged and cannot be opened. Save or download it again."
    try:
        reader = PdfReader(io.BytesIO(content), strict=False)
        if reader.is_encrypted:
            raise DocumentRejected(
                "Password-protected (encrypted) PDFs are not accepted. "
                "Upload a copy without a password."
            )
        pages = len(reader.pages)
        max_pages = settings.KYC_DOCUMENT_MAX_PDF_PAGES
        if pages == 0:
            raise DocumentRejected("The PDF has no pages.")
        if pages > max_pages:
            raise DocumentRejected(
                f"The PDF has {pages} pages; at most {max_pages} are accepted. "
                "Upload only the pages asked for."
            )
        found = _pdf_active_content(reader)
    except DocumentRejected:
        raise
    except (RecursionError, MemoryError) as exc:
        raise DocumentRejected(damaged) from exc
    except Exception as exc:  # pypdf raises many types for a damaged file.
        raise DocumentRejected(damaged) from exc
    if found:
        raise DocumentRejected(
            f"PDFs with {found} are not accepted. Print the document to a new PDF, "
            "or upload a photo of it."
        )


def _pdf_active_content(reader) -> str:
    """What active content the PDF carries ("" for none)."""
    from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject

    stack = [reader.trailer]
    seen: set[tuple[int, int]] = set()
    visited = 0
    while stack:
        obj = stack.pop()
        if isinstance(obj, IndirectObject):
            ref = (obj.idnum, obj.generation)
            if ref in seen:
                continue
            seen.add(ref)
            obj = obj.get_object()
        visited += 1
        if visited > _PDF_MAX_OBJECTS:
            raise DocumentRejected("The PDF is too complex to check. Upload a simpler copy.")
        if isinstance(obj, DictionaryObject):
            for key in obj:
                if key in _PDF_DANGEROUS_KEYS:
                    return _PDF_DANGEROUS_KEYS[key]
            action = obj.get("/S")
            if action in _PDF_DANGEROUS_ACTIONS:
                return _PDF_DANGEROUS_ACTIONS[action]
            subtype = obj.get("/Subtype")
            if subtype in _PDF_DANGEROUS_SUBTYPES:
                return _PDF_DANGEROUS_SUBTYPES[subtype]
            # The trailer's /Encrypt is refused above; /Prev, /XRefStm are offsets.
            stack.extend(obj.values())
        elif isinstance(obj, ArrayObject):
            stack.extend(obj)
    return ""


_UNSAFE_NAME_CHARS = re.compile(r"[^\w.\- ()]+", re.UNICODE)


def safe_name(name: str, extension: str) -> str:
    """A file name to show and to send in Content-Disposition: the base name
    only, no control or path characters, and the extension of what the file
    really is (a PDF uploaded as "scan.html" is "scan.pdf")."""
    base = unicodedata.normalize("NFKC", name).replace("\\", "/").rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    stem = _UNSAFE_NAME_CHARS.sub("_", stem).strip(" ._")[:80] or "document"
    return f"{stem}.{extension}"


class DocumentUploadHandler(FileUploadHandler):
    """An upload handler for the pages that take documents: each file is
    kept in memory, and only its first ``KYC_DOCUMENT_MAX_BYTES`` + 1 bytes
    (the rest is read from the request and dropped, so :func:`check_upload`
    refuses it by its size). Nothing is ever written to a temporary file,
    where an identity document would lie unencrypted; files past
    ``max_files`` in one request are dropped.

    Install it before the request's body is read, which CSRF checking does::

        @csrf_exempt
        def upload(request):
            request.upload_handlers = [DocumentUploadHandler(request)]
            return _upload(request)  # decorated with @csrf_protect
    """

    max_files = 5

    def __init__(self, request=None):
        super().__init__(request)
        self.files_seen = 0
        self.buffer = io.BytesIO()

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.files_seen += 1
        if self.files_seen > self.max_files:
            raise SkipFile()
        self.buffer = io.BytesIO()
        raise StopFutureHandlers()

    def receive_data_chunk(self, raw_data, start):
        room = settings.KYC_DOCUMENT_MAX_BYTES + 1 - self.buffer.tell()
        if room > 0:
            self.buffer.write(raw_data[:room])
        return None

    def file_complete(self, file_size):
        self.buffer.seek(0)
        return InMemoryUploadedFile(
            file=self.buffer,
            field_name=self.field_name,
            name=self.file_name,
            content_type=self.content_type,
            size=file_size,
            charset=self.charset,
            content_type_extra=self.content_type_extra,
        )


# --- encryption -------------------------------------------------------------------------

_FORMAT = b"KYD1"
_KEY_ID_BYTES = 8
_NONCE_BYTES = 12
_HEADER_BYTES = len(_FORMAT) + _KEY_ID_BYTES + _NONCE_BYTES


@dataclass(frozen=True)
class _Key:
    key_id: bytes
    aead: AESGCM


@lru_cache(maxsize=4)
def _keys_for(keys: tuple[str, ...], secret_key: str) -> tuple[_Key, ...]:
    import base64
    import binascii

    if not keys:
        keys = (development_key("kyc-documents", secret_key),)
    parsed = []
    for key in keys:
        try:
            raw = base64.urlsafe_b64decode(key.encode())
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ImproperlyConfigured(
                "KYC_DOCUMENT_KEYS must be 32-byte keys in URL-safe base64 "
                "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key())')"
            )
        key_id = hashlib.sha256(b"kyc-document-key:" + raw).digest()[:_KEY_ID_BYTES]
        parsed.append(_Key(key_id=key_id, aead=AESGCM(raw)))
    return tuple(parsed)


def _keys() -> tuple[_Key, ...]:
    return _keys_for(tuple(settings.KYC_DOCUMENT_KEYS), settings.SECRET_KEY)


def encrypt(content: bytes) -> bytes:
    """``KYD1`` + key id + nonce, then the AES-GCM ciphertext and tag; the
    header is authenticated too, so a changed key id or nonce fails."""
    key = _keys()[0]
    header = _FORMAT + key.key_id + secrets.token_bytes(_NONCE_BYTES)
    return header + key.aead.encrypt(header[-_NONCE_BYTES:], content, header)


def decrypt(blob: bytes) -> bytes:
    if len(blob) < _HEADER_BYTES + 16 or not blob.startswith(_FORMAT):
        raise DocumentUnreadable("The stored file is not an encrypted document.")
    header = blob[:_HEADER_BYTES]
    key_id = header[len(_FORMAT) : len(_FORMAT) + _KEY_ID_BYTES]
    key = next((k for k in _keys() if k.key_id == key_id), None)
    if key is None:
        raise DocumentUnreadable(
            "The stored file was encrypted with a key that is no longer in KYC_DOCUMENT_KEYS."
        )
    try:
        return key.aead.decrypt(header[-_NONCE_BYTES:], blob[_HEADER_BYTES:], header)
    except InvalidTag as exc:
        raise DocumentUnreadable(
            "The stored file was altered (its authentication failed)."
        ) from exc


# --- storage ----------------------------------------------------------------------------


class PrivateDocumentStorage(FileSystemStorage):
    """Files under ``KYC_DOCUMENT_ROOT``, readable by the server's user only,
    and never given a URL."""

    def __init__(self, location=None, **kwargs):
        kwargs.setdefault("file_permissions_mode", 0o600)
        kwargs.setdefault("directory_permissions_mode", 0o700)
        super().__init__(location=location, **kwargs)

    @cached_property
    def base_location(self):
        return self._value_or_setting(self._location, settings.KYC_DOCUMENT_ROOT)

    def _clear_cached_properties(self, setting, **kwargs):
        super()._clear_cached_properties(setting, **kwargs)
        if setting == "KYC_DOCUMENT_ROOT":
            self.__dict__.pop("base_location", None)
            self.__dict__.pop("location", None)

    def url(self, name):
        raise ValueError("KYC documents have no URL; they are served by kyc.views.documents.")


def document_storage() -> Storage:
    return storages["kyc_documents"]


def store(checked: CheckedFile) -> str:
    """Encrypt and write the file under a random name; return the name.

    The name says nothing about the client or the file. A failed write
    leaves no partial file behind.
    """
    return _write(checked.content)


def _write(content: bytes) -> str:
    token = secrets.token_hex(16)
    name = f"{token[:2]}/{token}.kyd"
    blob = encrypt(content)
    storage = document_storage()
    try:
        saved = storage.save(name, ContentFile(blob))
    except BaseException:
        _delete_quietly(storage, name)
        raise
    return saved


def read(document: Document) -> bytes:
    """The document's original bytes, decrypted and checked against the
    SHA-256 recorded at upload (:class:`DocumentUnreadable` otherwise)."""
    try:
        with document_storage().open(document.storage_name, "rb") as handle:
            blob = handle.read()
    except FileNotFoundError as exc:
        raise DocumentUnreadable("The stored file is missing.") from exc
    content = decrypt(blob)
    if not secrets.compare_digest(hashlib.sha256(content).hexdigest(), document.sha256):
        raise DocumentUnreadable("The stored file does not match its recorded checksum.")
    return content


def delete(storage_name: str) -> None:
    document_storage().delete(storage_name)


def _delete_quietly(storage: Storage, name: str) -> None:
    try:
        storage.delete(name)
    except Exception:
        logger.warning("kyc: could not delete stored document %s", name, exc_info=True)


def documents_store(
    submission: Submission, user, files: list[tuple[str, CheckedFile]]
) -> list[Document]:
    """Store checked files and create their ``Document`` rows for
    ``submission``, inside the caller's transaction.

    Call it after every file has passed :func:`check_upload`. When storing a
    file or creating a row fails, the files already written are deleted
    before the error goes on, so a refused submission leaves nothing on disk.
    """
    from .models import Document

    storage = document_storage()
    stored: list[str] = []
    documents: list[Document] = []
    try:
        for side, checked in files:
            name = store(checked)
            stored.append(name)
            documents.append(
                Document.objects.create(
                    submission=submission,
                    user=user,
                    side=side,
                    storage_name=name,
                    content_type=checked.content_type,
                    size=checked.size,
                    sha256=checked.sha256,
                    original_name=checked.original_name,
                )
            )
    except BaseException:
        for name in stored:
            _delete_quietly(storage, name)
        raise
    return documents


def documents_discard(documents: list[Document]) -> None:
    """Delete the stored files of documents whose rows are being rolled back
    (a caller's transaction failed after :func:`documents_store`)."""
    storage = document_storage()
    for document in documents:
        _delete_quietly(storage, document.storage_name)


def documents_orphans_delete(*, older_than: timedelta = timedelta(hours=1)) -> int:
    """Delete stored files that no ``Document`` row names, written more than
    ``older_than`` ago (left by a process killed between writing a file and
    committing its row). Returns how many were deleted."""
    from .models import Document

    storage = document_storage()
    cutoff = timezone.now() - older_than
    deleted = 0
    try:
        shards, _ = storage.listdir("")
    except FileNotFoundError:
        return 0
    for shard in shards:
        _, files = storage.listdir(shard)
        names = [f"{shard}/{f}" for f in files]
        known = set(
            Document.objects.filter(storage_name__in=names).values_list("storage_name", flat=True)
        )
        for name in names:
            if name in known or storage.get_modified_time(name) > cutoff:
                continue
            _delete_quietly(storage, name)
            deleted += 1
    return deleted


def _key_id_of(storage: Storage, name: str) -> bytes:
    with storage.open(name, "rb") as handle:
        header = handle.read(_HEADER_BYTES)
    return header[len(_FORMAT) : len(_FORMAT) + _KEY_ID_BYTES]


def documents_reencrypt(*, batch_size: int = 500) -> int:
    """Finish a key rotation: rewrite every document not encrypted with the
    first key of ``KYC_DOCUMENT_KEYS`` under it (a new file, then the row
    points to it, then the old file goes), so that the old key can be
    removed. Safe to run while clients upload and staff read; returns how
    many files were rewritten."""
    from .models import Document

    storage = document_storage()
    current = _keys()[0].key_id
    rewritten = 0
    rows = Document.objects.only("id", "storage_name", "sha256").order_by("id")
    for document in rows.iterator(chunk_size=batch_size):
        try:
            if _key_id_of(storage, document.storage_name) == current:
                continue
        except FileNotFoundError:
            logger.error("kyc: document %s has no stored file", document.pk)
            continue
        new_name = _write(read(document))
        moved = Document.objects.filter(pk=document.pk, storage_name=document.storage_name).update(
            storage_name=new_name
        )
        _delete_quietly(storage, document.storage_name if moved else new_name)
        rewritten += moved
    return rewritten


def document_viewed_record(*, document: Document, viewer) -> None:
    """Staff opened a client's document: the client's timeline says who and when."""
    from backoffice.events import publish

    publish(
        "kyc.document_viewed",
        document.user,
        {
            "document": document.pk,
            "submission": document.submission_id,
            "side": document.side,
        },
        actor=viewer,
    )


__all__ = [
    "CheckedFile",
    "DocumentRejected",
    "DocumentUnreadable",
    "DocumentUploadHandler",
    "check_upload",
    "delete",
    "documents_discard",
    "documents_orphans_delete",
    "documents_reencrypt",
    "documents_store",
    "read",
    "store",
]
