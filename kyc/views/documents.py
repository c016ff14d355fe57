"""Serving a KYC document's file to those allowed to see it.

Documents never have a public URL: this view decrypts the stored file for
its owner and for staff allowed to see the client
(:func:`kyc.selectors.document_get_for_viewer`; everyone else gets a 404).
The response is never cached, is not sniffed into another type, and runs in
a sandbox with no script, so that even a PDF that slipped through cannot act
in our origin. Staff views are recorded in the client's timeline.
"""

from __future__ import annotations

import logging

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from .. import documents
from ..selectors import document_get_for_viewer

logger = logging.getLogger(__name__)

# No script, no plugin, no form, no navigation: a sandboxed document with a
# unique origin. Images and styles from the document itself only (what a
# browser's own image and PDF viewers need); framable by our pages only (the
# review page shows documents beside the client's data).
CONTENT_SECURITY_POLICY = (
    "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)


@login_required
@require_GET
def document_file(request: HttpRequest, document_id: int) -> HttpResponse:
    document = document_get_for_viewer(viewer=request.user, document_id=document_id)
    try:
        content = documents.read(document)
    except documents.DocumentUnreadable:
        logger.exception("kyc: document %s cannot be read", document.pk)
        return HttpResponse(
            "This document cannot be shown: its stored copy cannot be read "
            "(missing, altered, or its key is gone). Please tell support.",
            status=500,
            content_type="text/plain; charset=utf-8",
        )
    if document.user_id != request.user.pk:
        documents.document_viewed_record(document=document, viewer=request.user)
    response = HttpResponse(content, content_type=document.content_type)
    name = document.original_name or "document"
    response["Content-Disposition"] = content_disposition_header(False, name)
    response["Content-Length"] = str(len(content))
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response["Referrer-Policy"] = "no-referrer"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    response["X-Frame-Options"] = "SAMEORIGIN"
    return response
