"""Composition root: builds the services' collaborators from settings, lazily, once per process."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from services.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from services.db import UnitOfWork


class Container:
    """Everything a command needs, built on first use so `codex --help` imports nothing heavy."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def database_url(self) -> str:
        from services.db import embedded_url, normalize_url

        if self.settings.database_url:
            return normalize_url(self.settings.database_url)
        return normalize_url(embedded_url(self.settings.codex_home))

    @cached_property
    def engine(self) -> Engine:
        from services.db import make_engine

        return make_engine(self.database_url)

    @cached_property
    def _session_factory(self) -> object:
        from services.db import make_session_factory

        return make_session_factory(self.engine)

    def uow(self) -> UnitOfWork:
        """A fresh unit of work: `with container.uow() as uow: ...; uow.commit()`."""
        from services.db import UnitOfWork

        return UnitOfWork(self._session_factory)

    # --- adapters added by feature modules below (object store, email, payments) ---

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
