"""Who may see and do what in which project: installation admins everything; other users what their role
in each project (a membership) allows. Projects a user does not belong to are invisible (404, not 403)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, TypeVar

from sqlalchemy import Engine

from dicomflow.errors import NotFound, PermissionDenied, UnknownProject
from dicomflow.index import reading
from dicomflow.index.accounts import Role, UserInfo, project_roles
from dicomflow.index.studies import project_id_by_label, project_ref

if TYPE_CHECKING:
    from dicomflow.runtime import Application

READ = frozenset(Role)

UPLOAD = frozenset({Role.ADMIN, Role.UPLOADER})
REVIEW = frozenset({Role.ADMIN, Role.REVIEWER})


class InProject(Protocol):
    """Anything placed in a project: ``group`` and ``project`` (label)."""

    @property
    def group(self) -> str: ...

    @property
    def project(self) -> str: ...


T = TypeVar("T", bound=InProject)


class Access:
    """The caller's rights, resolved once per request."""

    def __init__(self, user: UserInfo, roles: dict[tuple[str, str], Role] | None) -> None:
        self.user = user
        self.roles = roles  # None: an installation admin

    @classmethod
    def of(cls, user: UserInfo, engine: Engine) -> Access:
        """The rights of ``user``, read from the index (admins: everything, without a read)."""
        if user.role is Role.ADMIN:
            return cls(user, None)
        with reading(engine) as conn:
            return cls(user, project_roles(conn, user.id))

    def sees(self, group: str, project: str) -> bool:
        """Whether the project is visible to the caller."""
        return self.roles is None or (group, project) in self.roles

    def visible(self, items: Iterable[T]) -> list[T]:
        """The items in projects the caller belongs to."""
        return [item for item in items if self.sees(item.group, item.project)]

    def check(self, group: str, project: str, allowed: frozenset[Role], action: str) -> None:
        """Raise unless the caller may do ``action`` in the project.

        Raises
        ------
        NotFound
            The caller does not belong to the project (its existence is not revealed).
        PermissionDenied
            The caller belongs to it, with a role that does not allow ``action``.
        """
        if self.roles is None:
            return
        role = self.roles.get((group, project))
        if role is None:
            raise no_such_project()
        if role not in allowed:
            wanted = ", ".join(sorted(r.value for r in allowed))
            raise PermissionDenied(
                f"role {role.value!r} in project {project!r} cannot {action}; needs {wanted}"
            )


def access_of(app: Application, user: UserInfo) -> Access:
    """The rights of ``user`` (the user of a checked token): :meth:`Access.of` in ``app``'s index."""
    return Access.of(user, app.engine)


def no_such_project() -> NotFound:
    """The one answer for a project that does not exist and for one the caller may not see (it names
    neither, so the two cannot be told apart)."""
    return NotFound("no such project among yours; run `dicomflow projects list` or GET /api/v1/projects")


def project_of(engine: Engine, caller: Access, label: str, allowed: frozenset[Role], action: str) -> int:
    """The id of project ``label`` once the caller may ``action`` there.

    Raises
    ------
    NotFound
        One answer (:func:`no_such_project`) for a project that does not exist and for one the caller may
        not see; admins see every project and get the specific :class:`UnknownProject`.
    PermissionDenied
        The caller's role in the project does not allow ``action``.
    """
    try:
        with reading(engine) as conn:
            project_id = project_id_by_label(conn, label)
            group, _ = project_ref(conn, project_id)
        caller.check(group, label, allowed, action)
    except (UnknownProject, NotFound):
        if caller.roles is None:
            raise
        raise no_such_project() from None
    return project_id
