"""The provider registry pattern (ARCHITECTURE.md, "Providers"): an explicit
dict of identifiers to import paths, loaded on first use, so that an adapter
whose library is heavy costs nothing until it is configured."""

from __future__ import annotations

from django.utils.module_loading import import_string


class Registry:
    def __init__(self, kind: str, implementations: dict[str, str]) -> None:
        self.kind = kind
        self._paths = dict(implementations)
        self._loaded: dict[str, type] = {}

    def choices(self) -> list[tuple[str, str]]:
        return [(key, key) for key in self._paths]

    def __contains__(self, key: str) -> bool:
        return key in self._paths

    def get(self, key: str) -> type:
        if key not in self._paths:
            raise KeyError(f"No {self.kind} implementation {key!r}")
        if key not in self._loaded:
            self._loaded[key] = import_string(self._paths[key])
        return self._loaded[key]
