"""Files for the document checks, made in code (no binary fixtures): good
JPEG, PNG and PDF documents, and the hostile files an attacker would try."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

from PIL import Image, ImageDraw
from pypdf import PdfWriter

MARKER = b"PLAINTEXTMARKER7f3a9c"


# --- good files -----------------------------------------------------------------------


def _document_image(size: tuple[int, int] = (640, 400)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, size[0] - 20, size[1] - 20), outline="navy", width=6)
    draw.text((40, 40), "PASSPORT  P<GBRTEST<<TRADER", fill="black")
    return image


def good_jpeg(size: tuple[int, int] = (640, 400)) -> bytes:
    out = io.BytesIO()
    _document_image(size).save(out, "JPEG", quality=85, comment=MARKER)
    return out.getvalue()


def _saved(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def mpo_photo() -> bytes:
    """A JPEG with a second picture (MPO: phones with depth or dual cameras)."""
    image = _document_image()
    return _saved(image, "MPO", save_all=True, append_images=[image.resize((160, 100))])


def progressive_jpeg() -> bytes:
    return _saved(_document_image(), "JPEG", progressive=True)


def cmyk_jpeg() -> bytes:
    """What some scanners and print workflows produce."""
    return _saved(_document_image().convert("CMYK"), "JPEG")


def grey_16_bit_png() -> bytes:
    return _saved(_document_image().convert("I;16"), "PNG")


def good_png() -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", MARKER.decode())
    out = io.BytesIO()
    _document_image().save(out, "PNG", pnginfo=info)
    return out.getvalue()


def good_pdf(pages: int = 1) -> bytes:
    """A PDF as a scanner or a bank's site makes it: pages, and metadata."""
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    writer.add_metadata({"/Title": MARKER.decode()})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def scanned_pdf() -> bytes:
    """A photo saved as a PDF (what phone scanner apps produce)."""
    out = io.BytesIO()
    _document_image().save(out, "PDF", resolution=150)
    return out.getvalue()


def pdf_opening_on_a_page() -> bytes:
    """An /OpenAction that only shows the first page, fitted: harmless, and
    common (LaTeX's hyperref writes it)."""
    return build_pdf(catalog_extra=b"/OpenAction [3 0 R /Fit]")


def large_jpeg(target_bytes: int = 5 * 1024 * 1024) -> bytes:
    """A 12-megapixel photo of about ``target_bytes`` (a phone camera's size):
    a gradient with grain, at the highest quality that fits."""
    import random

    rng = random.Random(5)
    width, height = 4000, 3000
    grain = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    base = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    image = Image.blend(base, grain, 0.35)
    for quality in (95, 90, 85, 80, 70):
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality)
        if out.tell() <= target_bytes:
            break
    return out.getvalue()


# --- hand-written PDFs --------------------------------------------------------------------


def build_pdf(
    *, catalog_extra: bytes = b"", page_extra: bytes = b"", extra_objects: list[bytes] = ()
) -> bytes:
    """A minimal PDF with a correct cross-reference table. Objects 1: catalog,
    2: pages, 3: the page, then ``extra_objects`` from 4 on."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R " + catalog_extra + b" >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] " + page_extra + b" >>",
        *extra_objects,
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    trailer = b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
    out.write(trailer % (len(objects) + 1, xref))
    return out.getvalue()


def pdf_with_javascript() -> bytes:
    """JavaScript run when the document opens, as pypdf's own API adds it."""
    from pypdf.actions import JavaScript

    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    writer.add_open_action(JavaScript("app.alert('pwned');"))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_document_level_javascript() -> bytes:
    """A script in the catalog's /Names /JavaScript name tree (run on open)."""
    return build_pdf(
        catalog_extra=b"/Names << /JavaScript 4 0 R >>",
        extra_objects=[b"<< /Names [(init) << /S /JavaScript /JS (app.alert(1)) >>] >>"],
    )


def pdf_open_action_javascript_hex_escaped() -> bytes:
    """/OpenAction running JavaScript, the names written with #xx escapes so
    that a search for "/JavaScript" or "/JS" in the bytes finds nothing."""
    data = build_pdf(catalog_extra=b"/OpenAction << /S /J#61vaScript /J#53 (app.alert(1)) >>")
    assert b"/JavaScript" not in data and b"/JS" not in data
    return data


def pdf_page_additional_action_javascript() -> bytes:
    """A page's /AA (open) action running JavaScript from a stream object."""
    script = b"app.launchURL('https://attacker.example/');"
    stream = b"<< /Length %d >>\nstream\n" % len(script) + script + b"\nendstream"
    return build_pdf(
        page_extra=b"/AA << /O << /S /JavaScript /JS 4 0 R >> >>", extra_objects=[stream]
    )


def pdf_launch_action() -> bytes:
    return build_pdf(catalog_extra=b"/OpenAction << /S /Launch /F (cmd.exe) >>")


def pdf_with_attachment() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    writer.add_attachment("invoice.exe", b"MZ\x90\x00" + b"\x00" * 60)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_encrypted() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_with_pages(count: int) -> bytes:
    return good_pdf(pages=count)


def pdf_xfa_form() -> bytes:
    return build_pdf(catalog_extra=b"/AcroForm << /Fields [] /XFA (<xdp/>) >>")


def pdf_truncated() -> bytes:
    data = good_pdf()
    return data[: len(data) // 2]


def pdf_garbage_after_header() -> bytes:
    """Starts like a PDF, ends like one, nothing parseable between."""
    return b"%PDF-1.7\n" + b"\x00garbage" * 200 + b"\n%%EOF\n"


# --- hostile non-documents ------------------------------------------------------------


def windows_executable() -> bytes:
    """The start of a Windows program (DOS stub and PE header)."""
    dos = b"MZ" + b"\x90\x00\x03\x00\x00\x00\x04\x00" + b"\x00" * 50 + struct.pack("<I", 64)
    stub = b"This program cannot be run in DOS mode.\r\r\n$"
    return dos + stub + b"PE\x00\x00" + b"\x00" * 200


def linux_executable() -> bytes:
    return b"\x7fELF\x02\x01\x01" + b"\x00" * 120


def zip_bomb(expanded_bytes: int = 200 * 1024 * 1024) -> bytes:
    """A zip whose one member expands from ~200 KB to ``expanded_bytes``."""
    out = io.BytesIO()
    chunk = b"\x00" * (1024 * 1024)
    archive = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    with archive, archive.open("passport.jpg", "w", force_zip64=True) as member:
        for _ in range(expanded_bytes // len(chunk)):
            member.write(chunk)
    return out.getvalue()


def html_page() -> bytes:
    return b"<!DOCTYPE html><html><body><script>fetch('/room/')</script></body></html>"


def svg_image() -> bytes:
    return (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b"<script>alert(document.cookie)</script></svg>"
    )


def jpeg_polyglot() -> bytes:
    """JPEG's first bytes, then a web page: the magic says JPEG, the rest is not."""
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + html_page() * 20


def truncated_jpeg() -> bytes:
    data = good_jpeg()
    return data[: int(len(data) * 0.6)]


def truncated_png() -> bytes:
    data = good_png()
    return data[: int(len(data) * 0.6)]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_decompression_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A small file that declares ``width`` × ``height`` pixels (2.5
    gigapixels, 7.5 GB once decoded), with highly compressed image data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\x00" + b"\x00" * (width * 3)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(64)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def heic_photo() -> bytes:
    """The start of an iPhone HEIC photo (an ISO media file box)."""
    return b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 100


def oversized(limit: int) -> bytes:
    """A JPEG's first bytes, then more than ``limit`` bytes."""
    return b"\xff\xd8\xff\xe0" + b"\x00" * limit
