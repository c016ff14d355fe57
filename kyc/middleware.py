"""Identity documents never touch the disk unencrypted.

Django writes an upload larger than FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) to a
temporary file before any view runs, and the CSRF check reads the body before
the view could choose its handlers. This middleware gives the requests that
carry documents (the room's upload page and the API's upload) the document
handler, which keeps each file in memory and never more than the size limit,
before anything reads the body.
"""

from __future__ import annotations

from django.urls import Resolver404, resolve

from .documents import DocumentUploadHandler

# The views that take documents, by their resolved name.
DOCUMENT_VIEWS = {"kyc:requirement", "api-kyc-documents"}


class DocumentUploadMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method == "POST" and request.content_type == "multipart/form-data":
            try:
                name = resolve(request.path_info).view_name
            except Resolver404:
                name = ""
            if name in DOCUMENT_VIEWS:
                request.upload_handlers = [DocumentUploadHandler(request)]
        return self.get_response(request)
