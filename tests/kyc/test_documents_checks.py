"""Uploads are judged by their content: JPEG, PNG and PDF that parse whole,
nothing active inside, within the size, pixel and page limits."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from kyc.documents import DocumentRejected, check_upload, safe_name
from kyc.exceptions import KycError
from tests.kyc import hostile_files as files


def upload(data: bytes, name: str = "passport.jpg", content_type: str = "image/jpeg"):
    """As the browser sends it: the name and type claim whatever the attacker likes."""
    return SimpleUploadedFile(name, data, content_type=content_type)


@pytest.mark.parametrize(
    ("maker", "name", "message"),
    [
        (files.windows_executable, "passport.jpg", "Programs are not accepted"),
        (files.linux_executable, "id-card.png", "Programs are not accepted"),
        (files.zip_bomb, "statement.pdf", "Archives (such as zip files) are not accepted"),
        (files.zip_bomb, "selfie.png", "Archives (such as zip files) are not accepted"),
        (files.html_page, "passport.jpg", "Web pages and SVG images are not accepted"),
        (files.svg_image, "passport.png", "Web pages and SVG images are not accepted"),
        (files.jpeg_polyglot, "passport.jpg", "The JPEG image is damaged or incomplete"),
        (files.truncated_jpeg, "passport.jpg", "The JPEG image is damaged or incomplete"),
        (files.truncated_png, "passport.png", "The PNG image is damaged or incomplete"),
        (files.png_decompression_bomb, "passport.png", "The image is too large"),
        (files.heic_photo, "IMG_0001.jpg", "HEIC photos are not accepted"),
        (files.pdf_with_javascript, "statement.pdf", "PDFs with scripts (JavaScript)"),
        (files.pdf_document_level_javascript, "statement.pdf", "PDFs with scripts (JavaScript)"),
        (
            files.pdf_open_action_javascript_hex_escaped,
            "statement.pdf",
            "PDFs with scripts (JavaScript)",
        ),
        (
            files.pdf_page_additional_action_javascript,
            "statement.pdf",
            "PDFs with scripts (JavaScript)",
        ),
        (files.pdf_launch_action, "statement.pdf", "PDFs with actions that start programs"),
        (files.pdf_with_attachment, "statement.pdf", "PDFs with attached files"),
        (files.pdf_xfa_form, "statement.pdf", "PDFs with XFA forms"),
        (files.pdf_encrypted, "statement.pdf", "Password-protected (encrypted) PDFs"),
        (files.pdf_truncated, "statement.pdf", "The PDF is incomplete"),
        (files.pdf_garbage_after_header, "statement.pdf", "The PDF is damaged"),
        (lambda: b"", "passport.jpg", "The file is empty."),
        (lambda: b"GIF89a\x01\x00\x01\x00", "passport.gif", "This file is not a JPEG, PNG or PDF"),
    ],
    ids=lambda value: getattr(value, "__name__", None) if callable(value) else None,
)
def test_hostile_file_is_refused_with_a_clear_message(maker, name, message):
    with pytest.raises(DocumentRejected) as refused:
        check_upload(upload(maker(), name=name))
    assert message in str(refused.value)


def test_a_refusal_is_a_kyc_error_the_pages_already_show():
    with pytest.raises(KycError):
        check_upload(upload(files.windows_executable()))


def test_pdf_with_too_many_pages_is_refused(settings):
    settings.KYC_DOCUMENT_MAX_PDF_PAGES = 30
    check_upload(upload(files.pdf_with_pages(30), "statement.pdf"))
    with pytest.raises(DocumentRejected, match="The PDF has 31 pages; at most 30"):
        check_upload(upload(files.pdf_with_pages(31), "statement.pdf"))


def test_image_over_the_pixel_cap_is_refused_before_decoding(settings):
    settings.KYC_DOCUMENT_MAX_PIXELS = 40_000_000
    # 7,000 × 6,000 is under Pillow's own bomb limit: our cap is what refuses it.
    bomb = files.png_decompression_bomb(7_000, 6_000)
    with pytest.raises(DocumentRejected, match="7,000 × 6,000 pixels; at most 40 megapixels"):
        check_upload(upload(bomb, "scan.png"))


def test_the_size_limit_is_enforced_while_reading(settings):
    settings.KYC_DOCUMENT_MAX_BYTES = 1024 * 1024

    class CountingFile(io.BytesIO):
        read_total = 0

        def read(self, size=-1):
            chunk = super().read(size)
            self.read_total += len(chunk)
            return chunk

    body = CountingFile(files.oversized(20 * 1024 * 1024))
    uploaded = SimpleUploadedFile("passport.jpg", b"")
    uploaded.file = body
    with pytest.raises(DocumentRejected, match="larger than 1 MB"):
        check_upload(uploaded)
    assert body.read_total == 1024 * 1024 + 1


def test_a_file_of_exactly_the_limit_is_not_refused_for_its_size(settings):
    data = files.good_jpeg()
    settings.KYC_DOCUMENT_MAX_BYTES = len(data)
    assert check_upload(upload(data)).size == len(data)
    settings.KYC_DOCUMENT_MAX_BYTES = len(data) - 1
    with pytest.raises(DocumentRejected, match="larger than"):
        check_upload(upload(data))


@pytest.mark.parametrize(
    ("maker", "claimed_name", "claimed_type", "content_type", "name"),
    [
        (files.good_jpeg, "passport.jpg", "image/jpeg", "image/jpeg", "passport.jpg"),
        # The browser's name and type are ignored: the content decides.
        (files.good_png, "passport.jpg", "image/jpeg", "image/png", "passport.png"),
        (files.good_pdf, "statement.html", "text/html", "application/pdf", "statement.pdf"),
        (files.scanned_pdf, "scan.pdf", "application/pdf", "application/pdf", "scan.pdf"),
        (files.pdf_opening_on_a_page, "a.pdf", "application/pdf", "application/pdf", "a.pdf"),
        (files.mpo_photo, "IMG_1.JPG", "image/jpeg", "image/jpeg", "IMG_1.jpg"),
        (files.progressive_jpeg, "id.jpeg", "image/jpeg", "image/jpeg", "id.jpg"),
        (files.cmyk_jpeg, "scan.jpg", "", "image/jpeg", "scan.jpg"),
        (files.grey_16_bit_png, "scan.png", "image/png", "image/png", "scan.png"),
    ],
)
def test_good_documents_are_accepted(maker, claimed_name, claimed_type, content_type, name):
    data = maker()
    checked = check_upload(upload(data, claimed_name, claimed_type))
    assert checked.content_type == content_type
    assert checked.original_name == name
    assert checked.content == data
    assert checked.size == len(data)
    assert len(checked.sha256) == 64


def test_a_phone_photo_of_about_5_mb_is_accepted():
    data = files.large_jpeg()
    assert len(data) > 4 * 1024 * 1024
    assert check_upload(upload(data, "IMG_2041.JPG")).content_type == "image/jpeg"


@pytest.mark.parametrize(
    ("given", "extension", "expected"),
    [
        ("passport.jpg", "jpg", "passport.jpg"),
        ("../../etc/passwd", "pdf", "passwd.pdf"),
        ("C:\\Users\\me\\Desktop\\ID card.png", "png", "ID card.png"),
        ('evil"; filename="x.html', "pdf", "evil_ filename_x.pdf"),
        ("scan\r\nSet-Cookie: a=b.pdf", "pdf", "scan_Set-Cookie_ a_b.pdf"),
        ("Паспорт.jpg", "jpg", "Паспорт.jpg"),
        ("", "png", "document.png"),
        ("....", "pdf", "document.pdf"),
        ("x" * 300 + ".jpg", "jpg", "x" * 80 + ".jpg"),
    ],
)
def test_safe_name(given, extension, expected):
    assert safe_name(given, extension) == expected


def test_a_pdf_with_too_many_objects_is_refused(monkeypatch):
    from kyc import documents

    chain = [b"<< /Next %d 0 R >>" % (number + 1) for number in range(4, 40)] + [b"<< >>"]
    data = files.build_pdf(catalog_extra=b"/Chain 4 0 R", extra_objects=chain)
    assert check_upload(upload(data, "long.pdf")).content_type == "application/pdf"
    monkeypatch.setattr(documents, "_PDF_MAX_OBJECTS", 20)
    with pytest.raises(DocumentRejected, match="too complex to check"):
        check_upload(upload(data, "long.pdf"))


def _multipart_request(parts: dict[str, bytes]):
    from django.test import RequestFactory

    data = {
        name: SimpleUploadedFile(f"{name}.jpg", body, content_type="image/jpeg")
        for name, body in parts.items()
    }
    return RequestFactory().post("/room/verification/upload/", data)


def test_the_upload_handler_keeps_at_most_the_limit_plus_one_byte_in_memory(settings):
    from django.core.files.uploadedfile import InMemoryUploadedFile

    from kyc.documents import DocumentUploadHandler

    settings.KYC_DOCUMENT_MAX_BYTES = 64 * 1024
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024  # the default handlers would spill to disk
    good = files.good_jpeg()
    assert len(good) < 64 * 1024
    request = _multipart_request({"front": good, "back": files.oversized(3 * 1024 * 1024)})
    request.upload_handlers = [DocumentUploadHandler(request)]

    front, back = request.FILES["front"], request.FILES["back"]
    assert isinstance(front, InMemoryUploadedFile) and isinstance(back, InMemoryUploadedFile)
    assert back.size > 3 * 1024 * 1024
    assert len(back.file.getvalue()) == 64 * 1024 + 1
    assert check_upload(front).content == good
    with pytest.raises(DocumentRejected, match="larger than"):
        check_upload(back)


def test_the_upload_handler_drops_files_past_its_limit():
    from kyc.documents import DocumentUploadHandler

    request = _multipart_request({f"page{n}": files.good_jpeg() for n in range(8)})
    request.upload_handlers = [DocumentUploadHandler(request)]
    assert len(request.FILES) == DocumentUploadHandler.max_files
