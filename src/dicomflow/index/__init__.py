"""The metadata index: SQLAlchemy models, engine, migrations, and one repository module per aggregate.

Repositories (``arrivals``, ``studies``, ``jobs``, ``results``, ``outbox``, ``rules``, ``accounts``,
``tokens``, ``logins``, ...) are public modules: each function takes the caller's connection first (opened
with :func:`reading` or :func:`writing` by a use case, so that one use case is one transaction) and returns
frozen dataclasses, never rows.
"""

from dicomflow.index._db import WriteLock, as_utc, create_index_engine, migrate, reading, writing
from dicomflow.index._models import (
    Acquisition,
    Base,
    Dataset,
    DatasetSeries,
    Event,
    Group,
    Instance,
    LoginFailure,
    Membership,
    Project,
    Session,
    Study,
    Subject,
    Token,
    Upload,
    User,
    utcnow,
)
from dicomflow.index._rows import StoredInstance, insert_event, insert_instance, instances_with_uid
from dicomflow.index.accounts import Role, UserInfo

__all__ = [
    "Acquisition",
    "Base",
    "Dataset",
    "DatasetSeries",
    "Event",
    "Group",
    "Instance",
    "LoginFailure",
    "Membership",
    "Project",
    "Role",
    "Session",
    "StoredInstance",
    "Study",
    "Subject",
    "Token",
    "Upload",
    "User",
    "UserInfo",
    "WriteLock",
    "as_utc",
    "create_index_engine",
    "insert_event",
    "insert_instance",
    "instances_with_uid",
    "migrate",
    "reading",
    "utcnow",
    "writing",
]
