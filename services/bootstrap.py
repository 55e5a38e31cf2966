"""Composition root: builds the services' collaborators from settings, lazily, once per process."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from services.settings import Settings

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import sessionmaker

    from services.adapters.db import UnitOfWork
    from services.adapters.storage import ObjectStore
    from services.adapters.stripe_gateway import StripeGateway
    from services.email.notifications import NotificationService


class Container:
    """Everything a command needs, built on first use so `codex --help` imports nothing heavy."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def database_url(self) -> str:
        from services.adapters.db import embedded_url, normalize_url

        if self.settings.database_url:
            return normalize_url(self.settings.checked_database_url())
        return normalize_url(embedded_url(self.settings.codex_home))

    @cached_property
    def engine(self) -> Engine:
        """The engine every service uses; safe behind a transaction-mode pooler (see make_engine)."""
        from services.adapters.db import make_engine

        return make_engine(self.database_url, prepare=self.settings.embedded_database)

    @property
    def migration_url(self) -> str:
        """DATABASE_URL_UNPOOLED when set (Neon's direct URL), else the one database URL."""
        from services.adapters.db import normalize_url

        if self.settings.database_url_unpooled:
            return normalize_url(self.settings.database_url_unpooled)
        return self.database_url

    @cached_property
    def migration_engine(self) -> Engine:
        """The engine `codex db` uses: a direct connection when DATABASE_URL_UNPOOLED is set."""
        from services.adapters.db import make_engine

        if not self.settings.database_url_unpooled:
            return self.engine
        return make_engine(self.migration_url)

    @cached_property
    def _session_factory(self) -> sessionmaker:
        from services.adapters.db import make_session_factory

        return make_session_factory(self.engine)

    def connect(self) -> psycopg.Connection[Any]:
        """A psycopg connection of its own, in autocommit mode, no SQLAlchemy (see `adapters.db.connect`);
        the caller closes it. For the upload's few fixed statements."""
        from services.adapters.db import connect

        return connect(self.database_url, prepare=self.settings.embedded_database)

    def uow(self) -> UnitOfWork:
        """A fresh unit of work: `with container.uow() as uow: ...; uow.commit()`."""
        from services.adapters.db import UnitOfWork

        return UnitOfWork(self._session_factory)

    # --- adapters; each factory lives in the module that owns the outside system ---

    @cached_property
    def object_store(self) -> ObjectStore:
        """The media bucket: S3ObjectStore on R2/S3, or LocalObjectStore under CODEX_HOME/objects."""
        from services.adapters.storage import build_object_store

        if self.settings.local_object_store:
            from services.adapters.private_files import private_dir

            private_dir(self.settings.codex_home)  # the local store's folder must not make CODEX_HOME 0755
        return build_object_store(self.settings)

    @cached_property
    def notifications(self) -> NotificationService:
        """NotificationService: Resend, or the outbox folder under CODEX_HOME/outbox."""
        from services.email.notifications import build_notification_service

        return build_notification_service(self.settings, self)

    @cached_property
    def stripe(self) -> StripeGateway:
        """StripeGateway over the official SDK; ConfigurationError when STRIPE_SECRET_KEY is unset."""
        from services.adapters.stripe_gateway import build_stripe_gateway

        return build_stripe_gateway(self.settings)

    def close(self) -> None:
        for name in ("migration_engine", "engine"):
            if name in self.__dict__:
                self.__dict__[name].dispose()
